"""`llmtwin up`: the whole twin on one machine, on the same code paths as the cluster.

The inbox folder stands in for the MinIO bucket (`<data-dir>/inbox/<bucket>/<key>`), watchdog for
bucket notifications, an in-process queue for Kafka, the local runner for Argo: every change becomes
the same `ingest` Workflow the gateway would submit, executed by the same `ingest-object` step.
On start the inbox is reconciled against the collection (changed while down → re-ingested, removed
while down → deleted), so stopping at any moment loses nothing.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.settings import load
from llmtwin.workflows.ingest.objects import FolderStore, UnsafeKey, store_for_source
from llmtwin.workflows.ingest.store import store_for
from llmtwin.workflows.runner import LocalRunner, WorkflowFailed
from llmtwin.workflows.status import FileStatusReporter
from llmtwin.workflows.templates import build_workflow

log = logging.getLogger(__name__)
COALESCE_SECONDS = 0.3  # editors write a file in several steps; wait for the burst to end


@dataclass(frozen=True)
class ObjectChange:
    bucket: str
    key: str
    event_type: str  # put | delete


class EmbeddedTwin:
    def __init__(self, twin: LLMTwin, data_dir: Path):
        self.twin = twin
        self.data_dir = Path(data_dir)
        self.inbox = self.data_dir / "inbox"
        self.status = FileStatusReporter(self.data_dir / "status.json")
        self.state_file = self.data_dir / "state.json"
        for source in twin.spec.sources:
            (self.inbox / source.bucket).mkdir(parents=True, exist_ok=True)
        # The ingest step finds the inbox and its status sink through the environment, as in a pod.
        os.environ["LLMTWIN_INBOX"] = str(self.inbox)
        os.environ["LLMTWIN_STATUS_SINK"] = f"file:{self.status.path}"
        self.folder = FolderStore(self.inbox)
        settings = load()
        # A source that names an endpoint is read from MinIO/S3, the others from the inbox folder.
        self.sources = [(source, store_for_source(source, settings, self.inbox)) for source in twin.spec.sources]
        self.runner = LocalRunner(twin, self.data_dir / "workspaces", settings)
        self.changes: queue.Queue[ObjectChange] = queue.Queue()

    # ------------------------------------------------------------------------------- events
    def pending_changes(self) -> list[ObjectChange]:
        """What differs between the inbox and the collection (the resume point after any stop)."""
        stored = store_for(self.twin).objects()
        changes = []
        present = set()
        for source, objects in self.sources:
            for info in objects.list(source.bucket, source.prefix):
                present.add((info.bucket, info.key))
                if stored.get((info.bucket, info.key)) != info.etag:
                    changes.append(ObjectChange(info.bucket, info.key, "put"))
        buckets = {s.bucket for s in self.twin.spec.sources}
        changes += [ObjectChange(b, k, "delete") for (b, k) in stored if b in buckets and (b, k) not in present]
        return changes

    def change_for_path(self, path: str, deleted: bool) -> ObjectChange | None:
        try:
            relative = Path(path).resolve().relative_to(self.inbox.resolve())
        except ValueError:
            return None
        parts = relative.parts
        if len(parts) < 2 or any(p.startswith(".") for p in parts):
            return None
        return ObjectChange(parts[0], "/".join(parts[1:]), "delete" if deleted else "put")

    # ----------------------------------------------------------------------------- ingestion
    def poll_remote(self) -> None:
        """Queue what changed in endpoint-backed sources (no bucket notifications without Kafka)."""
        remote = {s.bucket for s, objects in self.sources if not isinstance(objects, FolderStore)}
        for change in self.pending_changes():
            if change.bucket in remote:
                self.changes.put(change)

    def apply(self, change: ObjectChange) -> dict[str, Any]:
        etag = ""
        objects = next((o for s, o in self.sources if s.bucket == change.bucket), self.folder)
        if change.event_type == "put":
            try:
                etag = objects.stat(change.bucket, change.key).etag
            except (FileNotFoundError, UnsafeKey):
                change = ObjectChange(change.bucket, change.key, "delete")
        params = {"bucket": change.bucket, "key": change.key, "event_type": change.event_type, "etag": etag}
        workflow = build_workflow(
            self.twin, "ingest", params, f"{change.bucket}/{change.key}/{etag}/{change.event_type}"
        )
        try:
            return self.runner.run(workflow).outputs["ingest-object"]
        except WorkflowFailed as exc:
            log.error("%s/%s: %s", change.bucket, change.key, exc)
            self.status.report(self.twin, {"lastError": f"{change.bucket}/{change.key}: {exc.cause}"})
            return {"bucket": change.bucket, "key": change.key, "outcome": "failed", "reason": str(exc.cause)}

    def drain(self, on_result: Callable[[dict[str, Any]], None], stop: threading.Event) -> None:
        """Apply queued changes until `stop`, coalescing bursts on the same key (the last one wins)."""
        while not stop.is_set():
            try:
                first = self.changes.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = {(first.bucket, first.key): first}
            deadline = time.monotonic() + COALESCE_SECONDS
            while time.monotonic() < deadline:
                try:
                    change = self.changes.get(timeout=max(0.0, deadline - time.monotonic()))
                    batch[(change.bucket, change.key)] = change
                except queue.Empty:
                    break
            for change in batch.values():
                on_result(self.apply(change))
            if self.changes.empty():
                store_for(self.twin).flush()

    def watch(self):
        """Start a watchdog observer that turns inbox changes into queued ObjectChanges."""
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        twin = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.is_directory or event.event_type in ("opened", "closed_no_write"):
                    return
                if event.event_type == "moved":
                    for path, deleted in ((event.src_path, True), (event.dest_path, False)):
                        change = twin.change_for_path(str(path), deleted)
                        if change:
                            twin.changes.put(change)
                    return
                change = twin.change_for_path(str(event.src_path), event.event_type == "deleted")
                if change:
                    twin.changes.put(change)

        observer = Observer()
        observer.schedule(Handler(), str(self.inbox), recursive=True)
        observer.start()
        return observer

    # --------------------------------------------------------------------------------- state
    def write_state(self, port: int) -> None:
        self.state_file.write_text(json.dumps({"pid": os.getpid(), "port": port}))

    def clear_state(self) -> None:
        self.state_file.unlink(missing_ok=True)


def running_server(data_dir: Path) -> int | None:
    """The port of a live `llmtwin up` for this data dir (Milvus Lite allows one process per file)."""
    state_file = Path(data_dir) / "state.json"
    if not state_file.exists():
        return None
    state = json.loads(state_file.read_text())
    try:
        os.kill(state["pid"], 0)
    except (ProcessLookupError, PermissionError):
        return None
    return int(state["port"])


def default_data_dir(twin: LLMTwin) -> Path:
    return Path(".llmtwin") / twin.name
