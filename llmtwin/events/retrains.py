"""Retrain bookkeeping in the twin's status (`status.lastTraining`), durable and race-free.

Single-flight and cooldown read the twin itself, not Workflow objects that Argo's TTL deletes. A
dispatcher *claims* a run by writing `lastTraining` with the twin's resourceVersion as a
precondition before it creates the Workflow: of two gateway replicas handling alerts at once, one
wins, the other reads the twin again and sees the run in flight. One alert episode (fingerprint +
startsAt) maps to one deterministic Workflow name, so even a lost claim creates no second run.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Literal, Protocol

from llmtwin.api.timestamps import epoch_seconds, now
from llmtwin.api.v1alpha1 import LLMTwin, TrainingRun, duration_seconds
from llmtwin.workflows.status import FileStatusReporter

Decision = Literal["submit", "in-flight", "cooldown", "duplicate"]


def _seconds(stamp: str | None) -> float | None:
    if not stamp:
        return None
    return epoch_seconds(stamp)


def retrain_decision(twin: LLMTwin, episode: str, at: float, deadline_seconds: float) -> Decision:
    """Whether a firing alert episode may start a retrain of this twin now."""
    last = twin.status.last_training
    if last is None:
        return "submit"
    if last.episode == episode:
        return "duplicate"  # this episode already started its run (repeats, replays, other replicas)
    started = _seconds(last.started_at) or 0.0
    if last.result == "Running" and at - started < deadline_seconds:
        return "in-flight"
    ended = _seconds(last.finished_at) or started
    if at - ended < duration_seconds(twin.spec.training.cooldown):
        return "cooldown"
    return "submit"


def started(episode: str, workflow: str) -> TrainingRun:
    return TrainingRun(episode=episode, workflow=workflow, started_at=now(), result="Running")


class RetrainLedger(Protocol):
    def twin(self, namespace: str, name: str) -> LLMTwin | None:
        """The twin as it is now (fresh, not a cached listing)."""

    def claim(self, twin: LLMTwin, run: TrainingRun) -> bool:
        """Record `run` as the twin's lastTraining unless the twin changed since it was read."""

    def fail(self, twin: LLMTwin, run: TrainingRun, reason: str) -> None:
        """The claimed run could not start (its Workflow was refused)."""


class KubernetesRetrainLedger:
    """The status subresource: read with GET, claimed with a replace that carries the resourceVersion."""

    def __init__(self, api_client):
        from kubernetes.client import CustomObjectsApi

        self.api = CustomObjectsApi(api_client)

    def _get(self, namespace: str, name: str) -> dict | None:
        from kubernetes.client.exceptions import ApiException

        from llmtwin.api.names import GROUP
        from llmtwin.api.v1alpha1 import PLURAL, VERSION

        try:
            return self.api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def twin(self, namespace: str, name: str) -> LLMTwin | None:
        body = self._get(namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        return LLMTwin.model_validate(body)

    def claim(self, twin: LLMTwin, run: TrainingRun) -> bool:
        from kubernetes.client.exceptions import ApiException

        from llmtwin.api.names import GROUP
        from llmtwin.api.v1alpha1 import PLURAL, VERSION

        body = self._get(twin.namespace, twin.name)
        if body is None or body["metadata"]["resourceVersion"] != twin.metadata.resource_version:
            return False
        body.setdefault("status", {})["lastTraining"] = run.wire()
        try:
            self.api.replace_namespaced_custom_object_status(GROUP, VERSION, twin.namespace, PLURAL, twin.name, body)
        except ApiException as exc:
            if exc.status == 409:  # someone wrote the twin in between: re-read and decide again
                return False
            raise
        return True

    def fail(self, twin: LLMTwin, run: TrainingRun, reason: str) -> None:
        from llmtwin.api.names import GROUP
        from llmtwin.api.v1alpha1 import PLURAL, VERSION

        patch = {"status": {"lastTraining": {"finishedAt": now(), "result": "Failed"}, "lastError": reason[:2000]}}
        self.api.patch_namespaced_custom_object_status(GROUP, VERSION, twin.namespace, PLURAL, twin.name, patch)


class FileRetrainLedger:
    """The status file of `llmtwin up` (what the status subresource is on a cluster), with the same
    compare-and-set: a claim succeeds only if the file is unchanged since the twin was read."""

    def __init__(self, twin: LLMTwin, status: FileStatusReporter):
        self._twin = twin
        self.status = status
        self._lock = threading.Lock()

    @staticmethod
    def _version(status: dict) -> str:
        return hashlib.sha256(json.dumps(status, sort_keys=True).encode()).hexdigest()[:16]

    def twin(self, namespace: str, name: str) -> LLMTwin | None:
        if (namespace, name) != (self._twin.namespace, self._twin.name):
            return None
        status = self.status.read()
        twin = self._twin.model_copy(deep=True)
        last = status.get("lastTraining")
        twin.status.last_training = TrainingRun.model_validate(last) if isinstance(last, dict) else None
        twin.metadata.resource_version = self._version(status)
        return twin

    def claim(self, twin: LLMTwin, run: TrainingRun) -> bool:
        with self._lock:
            if self._version(self.status.read()) != twin.metadata.resource_version:
                return False
            self.status.report(twin, {"lastTraining": run.wire()})
            return True

    def fail(self, twin: LLMTwin, run: TrainingRun, reason: str) -> None:
        failed = {"lastTraining": {"finishedAt": now(), "result": "Failed"}, "lastError": reason[:2000]}
        self.status.report(twin, failed)
