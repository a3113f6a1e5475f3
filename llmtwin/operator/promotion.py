"""Promotion: a candidate version reaches production through the model server's canary, or is rejected.

The state lives in the twin's status; `decide` is pure (unit-tested), the reconcile applies it:

    candidateVersion set by the register step, neither production nor rejected  -> the candidate is promoting
      the Rollout's template is rendered with it (serving.py: status.serving_version), which starts
      Argo Rollouts' canary; Promoting=True CanaryProgressing (the step it is at), Promoted=False
    the controller reports the Rollout Healthy on the candidate's template (stable == current hash)
      -> modelVersion := candidate, MLflow alias `production` moves; Promoted=True CanarySucceeded
    the controller reports the Rollout aborted on it (its AnalysisRun failed: errors, latency, no data)
      -> rejectedVersions += candidate with the AnalysisRun's message, MLflow tag `rejected`; the template
         goes back to production (the Rollout returns to its stable pods); never tried again;
         Promoted=False CanaryAborted
    no candidate                                                      -> Promoting=False NoCandidate

ServingReady follows the Rollout's available replicas. Nothing here is remembered in the process: an
operator restarted mid-canary reads the same status and Rollout and reaches the same decision. Reads
are a `get` of the Rollout and, only when it aborted, of its AnalysisRun.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from llmtwin.api import names
from llmtwin.api.conditions import ConditionType, Reason, find_condition
from llmtwin.api.timestamps import now
from llmtwin.api.v1alpha1 import MAX_REJECTED_VERSIONS, LLMTwin, LLMTwinStatus, RejectedVersion
from llmtwin.models import versions
from llmtwin.operator.apply import Applier

ROLLOUTS_API = "argoproj.io/v1alpha1"


@dataclass(frozen=True)
class RolloutState:
    """What the Argo Rollouts controller last reported about the model server's Rollout."""

    exists: bool = False
    version: str | None = None  # the model version on the Rollout's pod template ("base": none)
    observed: bool = False  # the controller has seen this template (status.observedGeneration)
    healthy: bool = False  # every step done, stable pods on this template, all available
    aborted: bool = False
    step: str = ""  # where the canary is, for a human
    available: int = 0
    replicas: int = 0
    abort_message: str = ""  # the AnalysisRun's message (or the Rollout's) when aborted


def _analysis_message(run: dict[str, Any] | None) -> str:
    if not run:
        return ""
    status = run.get("status") or {}
    measured = []
    for result in status.get("metricResults") or []:
        values = [m.get("value", "") for m in result.get("measurements") or [] if m.get("phase") != "Successful"]
        if values:
            measured.append(f"{result['name']}={','.join(values[-3:])}")
    message = f"AnalysisRun {run['metadata']['name']}: {status.get('message') or status.get('phase', '')}"
    return f"{message} (measured {'; '.join(measured)})" if measured else message


def rollout_state(rollout: dict[str, Any] | None, analysis_run: dict[str, Any] | None = None) -> RolloutState:
    """The state of a Rollout object as the controller reported it (None: not created yet)."""
    if rollout is None:
        return RolloutState()
    status = rollout.get("status") or {}
    annotations = rollout["spec"]["template"].get("metadata", {}).get("annotations") or {}
    version = annotations.get(names.MODEL_VERSION_ANNOTATION)
    observed = str(status.get("observedGeneration", "")) == str(rollout["metadata"].get("generation"))
    steps = len(rollout["spec"].get("strategy", {}).get("canary", {}).get("steps") or [])
    index = status.get("currentStepIndex")
    weight = (status.get("canary") or {}).get("weights", {}).get("canary", {}).get("weight")
    step = f"{status.get('phase', 'no phase yet')}, step {index if index is not None else 0}/{steps}"
    if weight is not None:
        step += f", canary weight {weight}%"
    aborted = bool(status.get("abort"))
    return RolloutState(
        exists=True,
        version=None if version in (None, "base") else version,
        observed=observed,
        healthy=observed
        and status.get("phase") == "Healthy"
        and bool(status.get("stableRS"))
        and status.get("stableRS") == status.get("currentPodHash"),
        aborted=observed and aborted,
        step=step,
        available=int(status.get("availableReplicas") or 0),
        replicas=int(rollout["spec"].get("replicas") or 0),
        abort_message=(_analysis_message(analysis_run) or status.get("message", "")) if aborted else "",
    )


def read_rollout(applier: Applier, twin: LLMTwin) -> RolloutState:
    rollout = applier.get(ROLLOUTS_API, "Rollout", names.server_name(twin.name), twin.namespace)
    run = None
    if rollout and (rollout.get("status") or {}).get("abort"):
        analysis = ((rollout["status"].get("canary") or {}).get("currentBackgroundAnalysisRunStatus")) or {}
        if analysis.get("name"):
            run = applier.get(ROLLOUTS_API, "AnalysisRun", analysis["name"], twin.namespace)
    return rollout_state(rollout, run)


# ------------------------------------------------------------------------------------------ decision
@dataclass(frozen=True)
class ConditionUpdate:
    type: ConditionType
    ok: bool
    reason: str
    message: str


@dataclass
class Promotion:
    """One reconcile's decision: the status fields it changes, the conditions it sets, and the MLflow
    change that goes with it (made before the status is written, so a failed write is simply redone)."""

    action: Literal["none", "progress", "promote", "reject"]
    version: str | None = None
    reason: str = ""
    fields: dict[str, Any] = field(default_factory=dict)
    conditions: list[ConditionUpdate] = field(default_factory=list)

    def applied_to(self, status: LLMTwinStatus) -> LLMTwinStatus:
        """The status after this decision: what the Rollout is rendered from in the same reconcile."""
        if self.action == "promote":
            return status.model_copy(update={"model_version": self.version})
        if self.action == "reject":
            rejected = [*status.rejected_versions, RejectedVersion(version=self.version or "", reason=self.reason)]
            return status.model_copy(update={"rejected_versions": rejected})
        return status


def _serving_ready(rollout: RolloutState) -> ConditionUpdate:
    if not rollout.exists:
        return ConditionUpdate(ConditionType.SERVING_READY, False, Reason.ROLLOUT_UNAVAILABLE, "no Rollout yet")
    message = f"{rollout.available}/{rollout.replicas} replicas available; {rollout.step}"
    ok = rollout.available > 0
    return ConditionUpdate(
        ConditionType.SERVING_READY, ok, Reason.ROLLOUT_AVAILABLE if ok else Reason.ROLLOUT_UNAVAILABLE, message
    )


def decide(status: LLMTwinStatus, rollout: RolloutState, clock: Callable[[], str] = now) -> Promotion:
    serving = _serving_ready(rollout)
    production = f"version {status.model_version}" if status.model_version else "the base model"
    candidate = status.promoting_version
    if candidate is None:
        # Keep the reason of the last outcome (CanarySucceeded, CanaryAborted) rather than rewrite it.
        promoting = find_condition([c.wire() for c in status.conditions], ConditionType.PROMOTING)
        reason = promoting["reason"] if promoting and promoting["status"] == "False" else Reason.NO_CANDIDATE
        message = promoting["message"] if reason != Reason.NO_CANDIDATE else f"{production} serves"
        return Promotion("none", conditions=[serving, ConditionUpdate(ConditionType.PROMOTING, False, reason, message)])

    on_candidate = rollout.observed and rollout.version == candidate
    if on_candidate and rollout.aborted:
        why = rollout.abort_message or "the canary was aborted"
        rejected = [
            *status.rejected_versions,
            RejectedVersion(version=candidate, reason=why[:4096], rejected_at=clock()),
        ]
        message = f"version {candidate} rejected: {why}; {production} keeps serving"
        return Promotion(
            "reject",
            candidate,
            why,
            fields={"rejectedVersions": [r.wire() for r in rejected[-MAX_REJECTED_VERSIONS:]]},
            conditions=[
                serving,
                ConditionUpdate(ConditionType.PROMOTING, False, Reason.CANARY_ABORTED, message),
                ConditionUpdate(ConditionType.PROMOTED, False, Reason.CANARY_ABORTED, message),
            ],
        )
    if on_candidate and rollout.healthy:
        message = f"version {candidate} serves production (was {production})"
        return Promotion(
            "promote",
            candidate,
            fields={"modelVersion": candidate},
            conditions=[
                serving,
                ConditionUpdate(ConditionType.PROMOTING, False, Reason.CANARY_SUCCEEDED, message),
                ConditionUpdate(ConditionType.PROMOTED, True, Reason.CANARY_SUCCEEDED, message),
            ],
        )
    where = rollout.step if on_candidate else "waiting for the Argo Rollouts controller to start the canary"
    message = f"version {candidate} in canary: {where}; {production} serves the rest"
    return Promotion(
        "progress",
        candidate,
        conditions=[
            serving,
            ConditionUpdate(ConditionType.PROMOTING, True, Reason.CANARY_PROGRESSING, message),
            ConditionUpdate(ConditionType.PROMOTED, False, Reason.CANARY_PROGRESSING, message),
        ],
    )


def record(promotion: Promotion, twin: LLMTwin, tracking_uri: str) -> None:
    """The registry's side of the decision: alias `production` moves, or the version is tagged rejected."""
    model = names.registered_model_name(twin.namespace, twin.name)
    if promotion.action == "promote" and promotion.version:
        versions.promote(tracking_uri, model, promotion.version)
    elif promotion.action == "reject" and promotion.version:
        versions.reject(tracking_uri, model, promotion.version, promotion.reason)
