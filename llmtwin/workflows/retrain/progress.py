"""Progress of long retrain phases, for whoever shows it (the `llmtwin train` progress bars).

Steps publish; nobody has to listen (in a pod the log lines are the progress). A listener is
process-wide because the local runner calls the steps in-process, behind the runner's own API.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger(__name__)
Listener = Callable[[str, int, int, dict[str, Any]], None]  # (phase, done, total, details)
_listeners: list[Listener] = []


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[None]:
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


def publish(phase: str, done: int, total: int, **details: Any) -> None:
    log.debug("%s %d/%d %s", phase, done, total, details)
    for listener in list(_listeners):
        listener(phase, done, total, details)
