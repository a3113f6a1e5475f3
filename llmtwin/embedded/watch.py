"""Inbox changes as they happen: a watchdog observer calls back with each file's ObjectChange."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from llmtwin.embedded.inbox import change_for_path
from llmtwin.sources.changes import ObjectChange

IGNORED_EVENTS = ("opened", "closed_no_write")


class _Handler(FileSystemEventHandler):
    def __init__(self, inbox: Path, on_change: Callable[[ObjectChange], None]):
        self.inbox = inbox
        self.on_change = on_change

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type in IGNORED_EVENTS:
            return
        if event.event_type == "moved":  # a rename is a delete of the old key and a put of the new
            paths = [(str(event.src_path), True), (str(event.dest_path), False)]
        else:
            paths = [(str(event.src_path), event.event_type == "deleted")]
        for path, deleted in paths:
            if change := change_for_path(self.inbox, path, deleted):
                self.on_change(change)


def watch(inbox: Path, on_change: Callable[[ObjectChange], None]):
    """A started observer (stop and join it when done)."""
    observer = Observer()
    observer.schedule(_Handler(inbox, on_change), str(inbox), recursive=True)
    observer.start()
    return observer
