"""What every benchmark shares: the table it prints (metric | value | note), and how it fails.

A benchmark measures; it asserts no figure. It does fail (exit status non-zero) when it cannot
measure: an exception, a timeout, a background thread that died. `--smoke` runs rely on that.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any


def print_table(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(name) for name, _, _ in rows)
    value_width = max(10, *(len(value) for _, value, _ in rows))
    print(f"\n{'metric'.ljust(width)} | {'value'.ljust(value_width)} | note")
    print(f"{'-' * width}-|-{'-' * value_width}-|-----")
    for name, value, note in rows:
        print(f"{name.ljust(width)} | {value.ljust(value_width)} | {note}")
    print(f"\nmachine: {os.cpu_count()} cores")


def exit_on_sigterm() -> None:
    """SIGTERM (a CI timeout) unwinds like an exception, so the `finally` blocks stop the servers started."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


class Worker(threading.Thread):
    """A daemon thread that keeps its exception: `check()` re-raises it in the benchmark's own thread,
    so a failure in the background fails the run with its cause instead of a later timeout."""

    def __init__(self, target: Callable[..., Any], *args: Any, name: str | None = None, **kwargs: Any):
        super().__init__(name=name or getattr(target, "__qualname__", None), daemon=True)
        self._call = lambda: target(*args, **kwargs)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._call()
        except BaseException as exc:
            self.error = exc  # handed to the benchmark thread by check()

    def check(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"background thread {self.name} failed: {self.error!r}") from self.error
