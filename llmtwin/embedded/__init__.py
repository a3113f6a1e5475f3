"""`llmtwin up`: the whole twin on one machine, on the same code paths as the cluster.

The inbox folder stands in for the MinIO bucket (`<data-dir>/inbox/<bucket>/<key>`), watchdog for
bucket notifications (it publishes MinIO-format records), an in-process queue for Kafka, the event
gateway's `ObjectGateway` (parse, route, coalesce, dead-letter: the same code the cluster runs) and
the local runner for Argo: every change becomes the same `ingest` Workflow, executed by the same
`ingest-object` step.
On start the inbox is reconciled against the collection (changed while down → re-ingested, removed
while down → deleted), so stopping at any moment loses nothing.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.events.gateway import DeadLetters, ObjectGateway, consume
from llmtwin.events.queue import InProcessQueue, Message
from llmtwin.events.records import minio_message
from llmtwin.events.routing import StaticTwins
from llmtwin.events.submit import LocalSubmitter
from llmtwin.settings import load
from llmtwin.workflows.ingest.objects import FolderStore, UnsafeKey, store_for_source
from llmtwin.workflows.ingest.store import store_for
from llmtwin.workflows.runner import LocalRunner, WorkflowFailed
from llmtwin.workflows.status import FileStatusReporter

log = logging.getLogger(__name__)
COALESCE_SECONDS = 0.3  # editors write a file in several steps; wait for the burst to end
CONSUMER_GROUP = "embedded"
Result = dict[str, Any]


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
        self.settings = load()
        # A source that names an endpoint is read from MinIO/S3, the others from the inbox folder.
        self.sources = [(source, store_for_source(source, self.settings, self.inbox)) for source in twin.spec.sources]
        self.on_result: Callable[[Result], None] = lambda result: None
        # The event plane in one process: queue (Kafka), gateway, local runner (Argo).
        self.queue = InProcessQueue()
        runner = LocalRunner(twin, self.data_dir / "workspaces", self.settings)
        submitter = LocalSubmitter({(twin.namespace, twin.name): runner}, on_result=self._workflow_done)
        dead_letters = ReportedDeadLetters(self.queue, self.settings.dlq_topic, lambda result: self.on_result(result))
        # One worker: ingests run one at a time, as Milvus Lite wants.
        self.gateway = ObjectGateway(StaticTwins([twin]), submitter, dead_letters, workers=1)
        self.consumer = self.queue.consumer(self.settings.objects_topic, CONSUMER_GROUP)

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
    def publish(self, change: ObjectChange) -> None:
        """The bucket notification MinIO would send for this change, onto the objects queue."""
        etag = ""
        if change.event_type == "put":
            objects = next((o for s, o in self.sources if s.bucket == change.bucket), self.folder)
            try:
                etag = objects.stat(change.bucket, change.key).etag
            except (FileNotFoundError, UnsafeKey):
                change = ObjectChange(change.bucket, change.key, "delete")  # gone again before we looked
        message = minio_message(change.bucket, change.key, change.event_type, etag)
        self.queue.send(self.settings.objects_topic, message, key=f"{change.bucket}/{change.key}".encode())

    def poll_remote(self) -> None:
        """Queue what changed in endpoint-backed sources (no bucket notifications without Kafka)."""
        remote = {s.bucket for s, objects in self.sources if not isinstance(objects, FolderStore)}
        for change in self.pending_changes():
            if change.bucket in remote:
                self.publish(change)

    def handle(self, messages: list[Message]) -> None:
        self.gateway.handle(messages)
        if not self.consumer.lag().get(0):
            store_for(self.twin).flush()  # a burst is over: seal it so searches are fast

    def sync(self) -> None:
        """Handle everything queued so far, then return (`llmtwin up --once`)."""
        while messages := self.consumer.poll(0, 50):
            self.handle(messages)
            self.consumer.commit()

    def drain(self, stop: threading.Event) -> None:
        """Handle queued changes until `stop`; bursts on one key within the window coalesce (the last wins)."""
        consume(self.consumer, self.settings.objects_topic, self.handle, stop, window=COALESCE_SECONDS)

    def _workflow_done(self, workflow: dict[str, Any], outcome: Any) -> None:
        params = {p["name"]: p.get("value", "") for p in workflow["spec"]["arguments"]["parameters"]}
        bucket, key = params["bucket"], params["key"]
        if isinstance(outcome, WorkflowFailed):
            log.error("%s/%s: %s", bucket, key, outcome)
            self.status.report(self.twin, {"lastError": f"{bucket}/{key}: {outcome.cause}"})
            self.on_result({"bucket": bucket, "key": key, "outcome": "failed", "reason": str(outcome.cause)})
        elif isinstance(outcome, Exception):
            raise outcome  # not a step failure: a bug in the runner; let it surface
        else:
            self.on_result(outcome.outputs["ingest-object"])

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
                            twin.publish(change)
                    return
                change = twin.change_for_path(str(event.src_path), event.event_type == "deleted")
                if change:
                    twin.publish(change)

        observer = Observer()
        observer.schedule(Handler(), str(self.inbox), recursive=True)
        observer.start()
        return observer

    # --------------------------------------------------------------------------------- state
    def write_state(self, port: int) -> None:
        self.state_file.write_text(json.dumps({"pid": os.getpid(), "port": port}))

    def clear_state(self) -> None:
        self.state_file.unlink(missing_ok=True)


class ReportedDeadLetters(DeadLetters):
    """Dead letters that the person at the terminal also sees (there is no DLQ consumer on a laptop)."""

    def __init__(self, producer: InProcessQueue, topic: str, report: Callable[[Result], None]):
        super().__init__(producer, topic)
        self.report = report

    def send(self, message: Message, reason: str, detail: str) -> None:
        super().send(message, reason, detail)
        self.report({"outcome": "dead-lettered", "reason": f"{reason}: {detail}"})


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
