"""Promotion on one machine. There is one model server and no second pod to compare a canary with, so the
evaluation gate decides: a candidate that passed it (status.candidateVersion, written by the register
step) becomes production at once, and the running model server loads it under the twin's name without
a restart. `llmtwin promote VERSION` and `llmtwin rollback` are the human override.

All of them write the same status fields (the status file) and move the same MLflow aliases (the local
SQLite registry) as the operator does on a cluster (llmtwin/operator/promotion.py).
"""

from __future__ import annotations

import logging
from typing import Any

from llmtwin.api import names
from llmtwin.api.conditions import ConditionType, Reason, set_condition
from llmtwin.api.timestamps import now
from llmtwin.api.v1alpha1 import MAX_REJECTED_VERSIONS, LLMTwin, LLMTwinStatus, RejectedVersion
from llmtwin.models import versions
from llmtwin.workflows.status import FileStatusReporter

log = logging.getLogger(__name__)
GATE_PASSED = "passed the evaluation gate (one model server on this machine: no canary)"
ROLLED_BACK = "rolled back by hand (llmtwin rollback)"


class UnknownVersion(ValueError):
    pass


class LocalPromotion:
    def __init__(self, twin: LLMTwin, status: FileStatusReporter, tracking_uri: str):
        self.twin = twin
        self.status = status
        self.tracking_uri = tracking_uri
        self.model_name = names.registered_model_name(twin.namespace, twin.name)

    def current(self) -> LLMTwinStatus:
        return LLMTwinStatus.model_validate(self.status.read())

    def settle(self) -> str | None:
        """Promote the candidate waiting (if any); the production version afterwards (None: the base model)."""
        current = self.current()
        if candidate := current.promoting_version:
            self.promote(candidate, GATE_PASSED, Reason.CANARY_SUCCEEDED)
            return candidate
        return current.model_version

    def promote(self, version: str, why: str, reason: str = Reason.PROMOTED_BY_HAND) -> None:
        """`version` serves production from now on."""
        self._check_registered(version)
        versions.promote(self.tracking_uri, self.model_name, version)
        current = self.current()
        message = f"version {version} serves production: {why}"
        # The candidate becomes this version too: a later candidate waits for the next retrain, an earlier
        # one is not promoted again over a human's choice.
        self._write(current, {"modelVersion": version, "candidateVersion": version}, True, reason, message)
        log.info("%s", message)

    def rollback(self) -> str | None:
        """Production goes back to the version before it (the base model if none); the current one is rejected.
        Returns the version now serving."""
        current = self.current()
        leaving = current.model_version
        if not leaving:
            raise UnknownVersion("nothing to roll back: the base model serves (no version was promoted)")
        previous = versions.previous_production(self.tracking_uri, self.model_name, leaving)
        versions.reject(self.tracking_uri, self.model_name, leaving, ROLLED_BACK)
        if previous:
            versions.promote(self.tracking_uri, self.model_name, previous)
        else:
            versions.demote(self.tracking_uri, self.model_name)
        rejected = [*current.rejected_versions, RejectedVersion(version=leaving, reason=ROLLED_BACK, rejected_at=now())]
        fields = {"modelVersion": previous, "rejectedVersions": [r.wire() for r in rejected[-MAX_REJECTED_VERSIONS:]]}
        message = f"version {leaving} {ROLLED_BACK}; {f'version {previous}' if previous else 'the base model'} serves"
        self._write(current, fields, False, Reason.PROMOTED_BY_HAND, message)
        return previous

    def _check_registered(self, version: str) -> None:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        try:
            MlflowClient(self.tracking_uri).get_model_version(self.model_name, version)
        except MlflowException as exc:
            raise UnknownVersion(f"{self.model_name} has no version {version!r} in {self.tracking_uri}") from exc

    def _write(self, current: LLMTwinStatus, fields: dict[str, Any], ok: bool, reason: str, message: str) -> None:
        conditions = [c.wire() for c in current.conditions]
        conditions = set_condition(conditions, ConditionType.PROMOTED, "True" if ok else "False", reason, message)
        self.status.report(self.twin, {**fields, "conditions": conditions})
