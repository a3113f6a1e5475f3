"""The twin on one machine: the composition root of `llmtwin up`.

The inbox folder stands in for the MinIO bucket (`<data-dir>/inbox/<bucket>/<key>`), watchdog for
bucket notifications (it publishes MinIO-format records), an in-process queue for Kafka, the event
gateway's `ObjectGateway` (parse, route, coalesce, dead-letter: the same code the cluster runs) and
the local runner for Argo: changes become the same batched `ingest` Workflows, executed by the same
`ingest-objects` step, with a step context built here instead of from a pod's mounts.
On start the inbox is reconciled against the collection (changed while down → re-ingested, removed
while down → deleted), so stopping at any moment loses nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmtwin.api.names import KIND_LABEL
from llmtwin.api.v1alpha1 import LLMTwin, SourceSpec
from llmtwin.config import EmbeddedSettings
from llmtwin.corpus.store import existing_store
from llmtwin.embedded import inbox, watch
from llmtwin.embedded.drift import EmbeddedDrift
from llmtwin.events.gateway import DeadLetters, ObjectGateway, consume, handled
from llmtwin.events.queue import InProcessQueue, Message
from llmtwin.events.records import minio_message
from llmtwin.events.routing import StaticTwins
from llmtwin.events.submit import LocalSubmitter
from llmtwin.models.resolve import ModelResolver
from llmtwin.secrets import SecretFiles
from llmtwin.sources.changes import ObjectChange, decode_changes
from llmtwin.sources.objects import FolderStore, ObjectStore, ObjectStores, UnsafeKey
from llmtwin.workflows.runner import LocalRunner, WorkflowFailed
from llmtwin.workflows.status import FileStatusReporter
from llmtwin.workflows.steps import StepContext
from llmtwin.workflows.templates import INGEST_STEP, workflow_parameters

log = logging.getLogger(__name__)
COALESCE_SECONDS = 0.3  # editors write a file in several steps; wait for the burst to end
CONSUMER_GROUP = "embedded"
Result = dict[str, Any]


def local_settings(data_dir: Path, settings: EmbeddedSettings, twin: LLMTwin) -> EmbeddedSettings:
    """The settings with MLflow on SQLite in the data directory, unless MLFLOW_TRACKING_URI named one."""
    from llmtwin.workflows.retrain.registry import ensure_experiment

    if "mlflow_tracking_uri" in settings.model_fields_set:
        return settings
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    ensure_experiment(uri, twin, (data_dir / "mlartifacts").as_uri())  # artifacts beside it, not in the cwd
    return settings.model_copy(update={"mlflow_tracking_uri": uri})


def status_file(data_dir: Path) -> FileStatusReporter:
    """The twin's status on this machine (what the status subresource is on a cluster)."""
    return FileStatusReporter(Path(data_dir) / "status.json")


def step_context(
    twin: LLMTwin,
    data_dir: Path,
    settings: EmbeddedSettings,
    status: FileStatusReporter,
    secrets_dir: Path | None = None,
) -> StepContext:
    """What the workflow steps get on this machine: sources without an endpoint from the inbox, the
    others opened with Secrets from `secrets_dir` (default `<data-dir>/secrets`, laid out as the
    kubelet mounts them: `<secret>/<key>`)."""
    data_dir = Path(data_dir)
    secrets = SecretFiles(secrets_dir or data_dir / "secrets")
    objects = ObjectStores(settings.s3_endpoint, settings.s3_secret, secrets, inbox=data_dir / "inbox")
    return StepContext(
        twin=twin,
        workspace=data_dir / "workspaces",
        settings=settings,
        status=status,
        objects=objects,
        models=ModelResolver(settings.model_cache, objects),
        secrets=secrets,
    )


class EmbeddedTwin:
    def __init__(self, twin: LLMTwin, data_dir: Path, settings: EmbeddedSettings, secrets_dir: Path | None = None):
        self.twin = twin
        self.data_dir = Path(data_dir)
        self.inbox = self.data_dir / "inbox"
        self.settings = settings
        self.status = status_file(self.data_dir)
        self.context = step_context(twin, self.data_dir, settings, self.status, secrets_dir)
        for source in twin.spec.sources:
            (self.inbox / source.bucket).mkdir(parents=True, exist_ok=True)
        self.on_result: Callable[[Result], None] = lambda result: None
        # The event plane in one process: queue (Kafka), gateway, local runner (Argo).
        self.queue = InProcessQueue()
        runner = LocalRunner(self.context, self.data_dir / "workspaces")
        self.submitter = LocalSubmitter({(twin.namespace, twin.name): runner}, on_result=self._workflow_done)
        self.dead_letters = ReportedDeadLetters(self.queue, settings.dlq_topic, lambda result: self.on_result(result))
        # One worker: ingests run one at a time, as Milvus Lite wants.
        self.gateway = ObjectGateway(StaticTwins([twin]), self.submitter, self.dead_letters, workers=1)
        self.consumer = self.queue.consumer(settings.objects_topic, CONSUMER_GROUP)

    def drift(self, clock: Callable[[], float] = time.time) -> EmbeddedDrift:
        """The drift chain on this twin's queue: questions in, the local retrain out (see `drift.py`)."""
        s = self.settings
        return EmbeddedDrift(
            self.twin,
            self.queue,
            s.queries_topic,
            s.alerts_topic,
            self.status,
            self.submitter,
            self.dead_letters,
            lambda twin: existing_store(twin, self.context.secrets),
            clock,
        )

    def twin_with_status(self) -> LLMTwin:
        """The twin with the production version recorded in the status file (what serving serves)."""
        twin = self.twin.model_copy(deep=True)
        twin.status.model_version = self.status.read().get("modelVersion") or twin.status.model_version
        return twin

    def sources(self) -> list[tuple[SourceSpec, ObjectStore]]:
        return [(source, self.context.objects.for_source(source)) for source in self.twin.spec.sources]

    # ------------------------------------------------------------------------------- events
    def pending_changes(self) -> list[ObjectChange]:
        """What differs between the sources and the collection (the resume point after any stop)."""
        return inbox.pending_changes(self.sources(), self.context.store().objects())

    def publish(self, change: ObjectChange) -> None:
        """The bucket notification MinIO would send for this change, onto the objects queue."""
        etag = ""
        if change.event_type == "put":
            source = next((s for s in self.twin.spec.sources if s.bucket == change.bucket), None)
            objects = self.context.objects.for_source(source) if source else FolderStore(self.inbox)
            try:
                etag = objects.stat(change.bucket, change.key).etag
            except (FileNotFoundError, UnsafeKey):
                change = ObjectChange(change.bucket, change.key, "delete")  # gone again before we looked
        message = minio_message(change.bucket, change.key, change.event_type, etag)
        self.queue.send(self.settings.objects_topic, message, key=f"{change.bucket}/{change.key}".encode())

    def poll_remote(self) -> None:
        """Queue what changed in endpoint-backed sources (no bucket notifications without Kafka)."""
        remote = {s.bucket for s in self.twin.spec.sources if s.endpoint}
        for change in self.pending_changes():
            if change.bucket in remote:
                self.publish(change)

    def watch(self):
        """A started observer publishing every inbox change."""
        return watch.watch(self.inbox, self.publish)

    # ----------------------------------------------------------------------------- ingestion
    def handle(self, messages: list[Message]) -> None:
        self.gateway.handle(messages)
        if not self.consumer.lag().get(0):
            self.context.store().flush()  # a burst is over: seal it so searches are fast

    def sync(self) -> None:
        """Handle everything queued so far, then return (`llmtwin up --once`)."""
        while messages := self.consumer.poll(0, self.twin.spec.ingest.batch_size):  # one Workflow per batch
            self.handle(messages)
            self.consumer.commit()

    def drain(self, stop: threading.Event) -> None:
        """Handle queued changes until `stop`; bursts on one key within the window coalesce (the last wins)."""
        consume(self.consumer, self.settings.objects_topic, handled(self.handle), stop, window=COALESCE_SECONDS)

    def _workflow_done(self, workflow: dict[str, Any], outcome: Any) -> None:
        params = workflow_parameters(workflow)
        if workflow["metadata"]["labels"].get(KIND_LABEL) == "retrain":
            self.on_result(retrain_result(params, outcome))
            return
        if isinstance(outcome, WorkflowFailed):
            changes = decode_changes(params["objects"])
            log.error("ingest of %d objects failed: %s", len(changes), outcome)
            first = f"{changes[0].bucket}/{changes[0].key}" if changes else "ingest"
            self.status.report(self.twin, {"lastError": f"{first}: {outcome.cause}"})
            for change in changes:
                failed = {"bucket": change.bucket, "key": change.key, "outcome": "failed", "reason": str(outcome.cause)}
                self.on_result(failed)
        elif isinstance(outcome, Exception):
            raise outcome  # not a step failure: a bug in the runner; let it surface
        else:
            for result in outcome.outputs[INGEST_STEP]["objects"]:
                self.on_result(result)


def retrain_result(params: dict[str, str], outcome: Any) -> Result:
    """What the person at the terminal sees of a retrain the drift alert started."""
    if isinstance(outcome, Exception):
        log.error("retrain %s failed: %s", params.get("event_id"), outcome)
        return {"outcome": "retrain-failed", "key": params.get("event_id", ""), "reason": str(outcome)[:300]}
    registered = outcome.outputs["retrain-register"]
    promoted = registered["promoted"] == "true"
    return {
        "outcome": "retrain-promoted" if promoted else "retrain-rejected",
        "key": f"version {registered['version']}",
        "reason": registered["reason"],
    }


class ReportedDeadLetters(DeadLetters):
    """Dead letters that the person at the terminal also sees (there is no DLQ consumer on a laptop)."""

    def __init__(self, producer: InProcessQueue, topic: str, report: Callable[[Result], None]):
        super().__init__(producer, topic)
        self.report = report

    def send(self, message: Message, reason: str, detail: str) -> None:
        super().send(message, reason, detail)
        self.report({"outcome": "dead-lettered", "reason": f"{reason}: {detail}"})
