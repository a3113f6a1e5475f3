"""Real servers for tests, started from session fixtures and stopped by PID, plus small helpers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def free_port() -> int:
    """A free TCP port on loopback (every server here binds 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], T], timeout: float = 60, interval: float = 0.5, what: str = "condition") -> T:
    """Poll until `predicate` returns something truthy; fail with what was awaited and the last value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def stop_process_group(proc: subprocess.Popen | None, timeout: float = 15) -> None:
    """SIGTERM the process's whole session (servers fork helpers), SIGKILL it if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


def spawn(argv: list, log: Path) -> subprocess.Popen:
    """A server in a session of its own (so `stop_process_group` reaches its helpers), output to `log`."""
    out = open(log, "wb")
    return subprocess.Popen([str(a) for a in argv], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def log_tail(log: Path, lines: int = 30) -> str:
    """The end of a server's log, for failure messages."""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""
