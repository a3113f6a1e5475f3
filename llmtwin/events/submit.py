"""Where Workflows go: the Kubernetes API (Argo runs them) or the local runner (`llmtwin up`).

Submissions are idempotent: a Workflow's name is derived from the event's dedupe key, so a replayed
event gets AlreadyExists, which counts as success. Transient API errors (connection, 429, 5xx) retry
with capped exponential backoff until the gateway is told to stop; any other refusal (an invalid
object, no permission, a namespace that is gone) is a permanent failure (`SubmissionRejected`) that
the gateway dead-letters with the status and reason, and the consumer moves on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from prometheus_client import Counter

from llmtwin.api.names import KIND_LABEL, TWIN_LABEL

log = logging.getLogger(__name__)
T = TypeVar("T")

ARGO = ("argoproj.io", "v1alpha1", "workflows")
METADATA_ONLY = {"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"}

SUBMISSIONS = Counter(
    "llmtwin_gateway_workflow_submissions_total", "Workflow submissions by result", ["kind", "result"]
)
API_RETRIES = Counter("llmtwin_gateway_api_retries_total", "Transient API errors retried", ["operation"])


class SubmissionRejected(RuntimeError):
    """The API refused the Workflow (invalid, forbidden, its namespace gone): retrying cannot help."""


class Stopped(RuntimeError):
    """The gateway is stopping while an operation was still retrying."""


class Submitter(Protocol):
    def submit(self, workflow: dict[str, Any]) -> str:
        """Create the Workflow (or find it already created); returns its name once it is durable."""

    def existing_metadata(self, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        """The metadata of the Workflows with these labels, as of now (every create that has returned, by
        any gateway, included): what an earlier run of the gateway may already have created."""


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
    """Worth retrying: the connection failed, the API server is busy (429) or failing (5xx). Anything
    else (400/422 invalid, 401/403 no permission, 404 no namespace or CRD) will fail the same way again."""
    import urllib3
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        return exc.status == 429 or exc.status >= 500 or exc.status == 0
    return isinstance(exc, (urllib3.exceptions.HTTPError, OSError))


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
                elif not transient_api_error(exc):
                    SUBMISSIONS.labels(kind, "rejected").inc()
                    raise SubmissionRejected(f"{exc.status} {exc.reason}: {(exc.body or '')[:500]}") from exc
                else:
                    raise
            return meta["name"]

        return retry("create workflow", create, transient_api_error, self.stop, self.backoff)

    def existing_metadata(self, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        """A metadata-only list (no Workflow bodies, no statuses: a fraction of the bytes to read, encode and
        decode), at the current revision: served from the API server's watch cache where etcd can confirm the
        cache is current (Kubernetes 1.31+, etcd 3.5.13+), from etcd otherwise."""
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))

        def workflows() -> list[dict[str, Any]]:
            found = self.api.list_namespaced_custom_object(
                *ARGO[:2], namespace, ARGO[2], label_selector=selector, _headers=METADATA_ONLY
            )
            return [item["metadata"] for item in found.get("items") or []]  # an empty metadata list has null items

        return retry("list workflows", workflows, transient_api_error, self.stop, self.backoff)


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
        self.submitted: dict[str, dict[str, Any]] = {}  # name -> Workflow: a replay of one is "exists", as in the API
        self._lock = threading.Lock()

    def submit(self, workflow: dict[str, Any]) -> str:
        meta = workflow["metadata"]
        name, labels = meta["name"], meta.get("labels", {})
        owner = (meta["namespace"], labels[TWIN_LABEL])
        kind = labels.get(KIND_LABEL, "")
        with self._lock:
            if name in self.submitted:
                SUBMISSIONS.labels(kind, "exists").inc()
                return name
            self.submitted[name] = workflow
        SUBMISSIONS.labels(kind, "created").inc()
        try:
            outcome = self.runners[owner].run(workflow)
        except Exception as exc:
            log.error("workflow %s failed: %s", name, exc)
            outcome = exc
        if self.on_result:
            self.on_result(workflow, outcome)
        return name

    def existing_metadata(self, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        with self._lock:
            runs = list(self.submitted.values())
        return [
            w["metadata"]
            for w in runs
            if w["metadata"]["namespace"] == namespace and labels.items() <= w["metadata"].get("labels", {}).items()
        ]
