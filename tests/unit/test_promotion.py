"""The promotion state machine (operator/promotion.py) on Rollout objects shaped as the Argo Rollouts
controller writes them; the same decisions are taken against the real controller in
tests/serving/test_promotion.py."""

from __future__ import annotations

from llmtwin.api import names
from llmtwin.api.conditions import ConditionType, Reason
from llmtwin.api.v1alpha1 import LLMTwinStatus
from llmtwin.operator import serving
from llmtwin.operator.promotion import decide, rollout_state
from llmtwin.operator.status import Observation
from llmtwin.operator.status import decide as decide_status
from tests.twins import example_twin


def rollout(version: str, generation: int = 2, observed: int = 2, **status) -> dict:
    return {
        "metadata": {"name": "ada-server", "generation": generation},
        "spec": {
            "replicas": 1,
            "template": {"metadata": {"annotations": {names.MODEL_VERSION_ANNOTATION: version}}},
            "strategy": {"canary": {"steps": [{"setWeight": 10}, {"pause": {"duration": "10s"}}]}},
        },
        "status": {"observedGeneration": str(observed), "availableReplicas": 1, **status},
    }


HEALTHY = {"phase": "Healthy", "stableRS": "abc", "currentPodHash": "abc"}
CANARY = {"phase": "Paused", "stableRS": "abc", "currentPodHash": "def", "currentStepIndex": 1}
ABORTED = {
    "phase": "Degraded",
    "abort": True,
    "stableRS": "abc",
    "currentPodHash": "def",
    "message": "RolloutAborted: Rollout aborted update to revision 2",
    "canary": {"currentBackgroundAnalysisRunStatus": {"name": "ada-server-def-2", "status": "Failed"}},
}
FAILED_RUN = {
    "metadata": {"name": "ada-server-def-2"},
    "status": {
        "phase": "Failed",
        "message": 'Metric "error-ratio" assessed Failed due to failed (1) > failureLimit (0)',
        "metricResults": [{"name": "error-ratio", "measurements": [{"phase": "Failed", "value": "[1]"}]}],
    },
}


def status(**fields) -> LLMTwinStatus:
    return LLMTwinStatus.model_validate(fields)


def conditions(promotion) -> dict[str, tuple[bool, str]]:
    return {c.type: (c.ok, c.reason) for c in promotion.conditions}


def test_no_candidate_leaves_production_and_says_what_serves():
    promotion = decide(status(modelVersion="3"), rollout_state(rollout("3", **HEALTHY)))
    assert promotion.action == "none" and promotion.fields == {}
    assert conditions(promotion)[ConditionType.PROMOTING] == (False, Reason.NO_CANDIDATE)
    assert conditions(promotion)[ConditionType.SERVING_READY] == (True, Reason.ROLLOUT_AVAILABLE)


def test_a_candidate_is_rendered_into_the_rollout_and_waits_for_the_controller():
    current = status(modelVersion="3", candidateVersion="4")
    assert current.serving_version == "4"
    twin = example_twin(serving={"engine": "llmtwin"})
    twin.status = current
    template = serving.rollout(twin, _settings())["spec"]["template"]
    assert template["metadata"]["annotations"][names.MODEL_VERSION_ANNOTATION] == "4"
    assert "version=4" in template["spec"]["initContainers"][0]["args"]
    # The Rollout still shows the old template as observed: the canary has not started.
    promotion = decide(current, rollout_state(rollout("4", generation=3, observed=2, **HEALTHY)))
    assert promotion.action == "progress" and conditions(promotion)[ConditionType.PROMOTING] == (
        True,
        Reason.CANARY_PROGRESSING,
    )


def test_a_healthy_rollout_on_the_candidate_promotes_it():
    current = status(modelVersion="3", candidateVersion="4")
    during = decide(current, rollout_state(rollout("4", **CANARY)))
    assert during.action == "progress" and "step 1/2" in during.conditions[1].message
    after = decide(current, rollout_state(rollout("4", **HEALTHY)))
    assert after.action == "promote" and after.fields == {"modelVersion": "4"}
    assert conditions(after)[ConditionType.PROMOTED] == (True, Reason.CANARY_SUCCEEDED)
    assert after.applied_to(current).promoting_version is None


def test_an_aborted_canary_rejects_the_candidate_with_the_analysis_message_and_never_retries_it():
    current = status(modelVersion="3", candidateVersion="4")
    promotion = decide(current, rollout_state(rollout("4", **ABORTED), FAILED_RUN), clock=lambda: "T")
    assert promotion.action == "reject"
    [rejected] = promotion.fields["rejectedVersions"]
    assert rejected["version"] == "4" and rejected["rejectedAt"] == "T"
    assert "failureLimit" in rejected["reason"] and "error-ratio=[1]" in rejected["reason"]
    assert conditions(promotion)[ConditionType.PROMOTED] == (False, Reason.CANARY_ABORTED)
    after = promotion.applied_to(current)
    # Production is rendered again, and the register step writing the same version again changes nothing.
    assert after.serving_version == "3" and after.promoting_version is None
    assert decide(after, rollout_state(rollout("3", **HEALTHY))).action == "none"


def test_an_abort_of_another_template_is_not_the_candidates():
    # Aborted while still on version 3's template (observed generation old): not a verdict on 4.
    current = status(modelVersion="2", candidateVersion="4")
    promotion = decide(current, rollout_state(rollout("3", **ABORTED), FAILED_RUN))
    assert promotion.action == "progress"


def test_the_twin_status_carries_the_decision_and_an_event_for_the_outcome():
    current = status(modelVersion="3", candidateVersion="4")
    promotion = decide(current, rollout_state(rollout("4", **HEALTHY)))
    update = decide_status(Observation(generation=1, storage=[], promotion=promotion), {"candidateVersion": "4"})
    assert update.status["modelVersion"] == "4"
    assert {(e.type, e.reason) for e in update.events} >= {("Normal", Reason.CANARY_SUCCEEDED)}
    again = decide_status(Observation(generation=1, storage=[], promotion=decide(
        status(**{"candidateVersion": "4", **update.status}), rollout_state(rollout("4", **HEALTHY))
    )), {"candidateVersion": "4", **update.status})  # fmt: skip
    assert again.status == {} and again.events == []  # settled: no write, no event


def _settings():
    from llmtwin.config import PlatformSettings

    return PlatformSettings()
