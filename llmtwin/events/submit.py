"""Where Workflows go: the Kubernetes API (Argo runs them) or the local runner (`llmtwin up`).

Submissions are idempotent: a Workflow's name is derived from the event's dedupe key, so a replayed
event gets AlreadyExists, which counts as success. Transient API errors retry with capped
exponential backoff until the gateway is told to stop; an object the API rejects as invalid is a
permanent failure (`SubmissionRejected`) that the gateway dead-letters.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from prometheus_client import Counter

from llmtwin.api.names import KIND_LABEL, TWIN_LABEL

log = logging.getLogger(__name__)
T = TypeVar("T")

ARGO = ("argoproj.io", "v1alpha1", "workflows")
# Argo's terminal phases; a Workflow without a phase has not been picked up yet: it counts as running.
COMPLETED_PHASES = frozenset({"Succeeded", "Failed", "Error"})

SUBMISSIONS = Counter(
    "llmtwin_gateway_workflow_submissions_total", "Workflow submissions by result", ["kind", "result"]
)
API_RETRIES = Counter("llmtwin_gateway_api_retries_total", "Transient API errors retried", ["operation"])


class SubmissionRejected(RuntimeError):
    """The API refused the Workflow itself (invalid object): retrying cannot help."""


class Stopped(RuntimeError):
    """The gateway is stopping while an operation was still retrying."""


@dataclass(frozen=True)
class WorkflowRecord:
    name: str
    phase: str  # "" until the workflow controller picks it up
    created: float  # unix seconds

    @property
    def completed(self) -> bool:
        return self.phase in COMPLETED_PHASES


class Submitter(Protocol):
    def submit(self, workflow: dict[str, Any]) -> str:
        """Create the Workflow (or find it already created); returns its name once it is durable."""

    def history(self, namespace: str, twin: str, kind: str) -> list[WorkflowRecord]:
        """The twin's Workflows of one kind (for single-flight and cooldown)."""


@dataclass
class Backoff:
    initial: float = 0.2
    maximum: float = 10.0

    def delays(self):
        delay = self.initial
        while True:
            yield delay
            delay = min(self.maximum, delay * 2)


def retry(
    operation: str,
    fn: Callable[[], T],
    transient: Callable[[BaseException], bool],
    stop: threading.Event,
    backoff: Backoff,
) -> T:
    """Call `fn` until it succeeds or fails permanently; sleep with backoff between transient errors."""
    for delay in backoff.delays():
        try:
            return fn()
        except Exception as exc:
            if not transient(exc):
                raise
            API_RETRIES.labels(operation).inc()
            log.warning("%s: %s; retrying in %.1fs", operation, str(exc).splitlines()[0][:200], delay)
            if stop.wait(delay):
                raise Stopped(operation) from exc
    raise AssertionError("unreachable")


def transient_api_error(exc: BaseException) -> bool:
    import urllib3
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        return exc.status not in (400, 422)
    return isinstance(exc, (urllib3.exceptions.HTTPError, OSError))


def _created(workflow: dict[str, Any]) -> float:
    stamp = workflow["metadata"].get("creationTimestamp")
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() if stamp else time.time()


class KubernetesSubmitter:
    def __init__(self, api_client, stop: threading.Event | None = None, backoff: Backoff | None = None):
        from kubernetes.client import CustomObjectsApi

        self.api = CustomObjectsApi(api_client)
        self.stop = stop or threading.Event()
        self.backoff = backoff or Backoff()

    def submit(self, workflow: dict[str, Any]) -> str:
        from kubernetes.client.exceptions import ApiException

        meta = workflow["metadata"]
        kind = meta.get("labels", {}).get(KIND_LABEL, "")

        def create() -> str:
            try:
                # The created object is not needed: skipping its deserialisation saves CPU per event.
                # The body must still be read off the socket before the connection goes back to the
                # pool, or the next request on it reads the leftover bytes as its status line.
                response = self.api.create_namespaced_custom_object(
                    *ARGO[:2], meta["namespace"], ARGO[2], workflow, _preload_content=False
                )
                response.drain_conn()
                response.release_conn()
                SUBMISSIONS.labels(kind, "created").inc()
            except ApiException as exc:
                if exc.status == 409:
                    SUBMISSIONS.labels(kind, "exists").inc()
                elif exc.status in (400, 422):
                    SUBMISSIONS.labels(kind, "rejected").inc()
                    raise SubmissionRejected(f"{exc.status} {exc.reason}: {(exc.body or '')[:500]}") from exc
                else:
                    raise
            return meta["name"]

        return retry("create workflow", create, transient_api_error, self.stop, self.backoff)

    def history(self, namespace: str, twin: str, kind: str) -> list[WorkflowRecord]:
        def list_workflows() -> list[WorkflowRecord]:
            items = self.api.list_namespaced_custom_object(
                *ARGO[:2], namespace, ARGO[2], label_selector=f"{TWIN_LABEL}={twin},{KIND_LABEL}={kind}"
            )["items"]
            return [
                WorkflowRecord(w["metadata"]["name"], w.get("status", {}).get("phase", ""), _created(w)) for w in items
            ]

        return retry("list workflows", list_workflows, transient_api_error, self.stop, self.backoff)


class LocalSubmitter:
    """Hands each Workflow to the twin's `LocalRunner` and runs it to completion (embedded mode).

    `on_result(workflow, outcome)` sees every run: `outcome` is the `WorkflowResult`, or the
    exception the run failed with (a failed run is the workflow's outcome, as in Argo).
    """

    def __init__(
        self,
        runners: dict[tuple[str, str], Any],
        on_result: Callable[[dict[str, Any], Any], None] | None = None,
    ):
        self.runners = runners  # (namespace, twin) -> llmtwin.workflows.runner.LocalRunner
        self.on_result = on_result
        # (namespace, twin, kind) -> {workflow name: record}
        self.records: dict[tuple[str, str, str], dict[str, WorkflowRecord]] = {}
        self._lock = threading.Lock()

    def submit(self, workflow: dict[str, Any]) -> str:
        meta = workflow["metadata"]
        name, labels = meta["name"], meta.get("labels", {})
        owner = (meta["namespace"], labels[TWIN_LABEL], labels.get(KIND_LABEL, ""))
        with self._lock:
            records = self.records.setdefault(owner, {})
            if name in records:
                SUBMISSIONS.labels(owner[2], "exists").inc()
                return name
            created = time.time()
            records[name] = WorkflowRecord(name, "Running", created)
        SUBMISSIONS.labels(owner[2], "created").inc()
        try:
            outcome = self.runners[owner[:2]].run(workflow)
            phase = "Succeeded"
        except Exception as exc:
            log.error("workflow %s failed: %s", name, exc)
            outcome, phase = exc, "Failed"
        with self._lock:
            records[name] = WorkflowRecord(name, phase, created)
        if self.on_result:
            self.on_result(workflow, outcome)
        return name

    def history(self, namespace: str, twin: str, kind: str) -> list[WorkflowRecord]:
        with self._lock:
            return list(self.records.get((namespace, twin, kind), {}).values())
