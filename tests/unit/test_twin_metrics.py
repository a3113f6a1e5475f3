"""The operator's per-twin state metrics (llmtwin/operator/twin_metrics.py), from watch events."""

from __future__ import annotations

import pytest

from llmtwin.api import names
from llmtwin.api.v1alpha1 import TrainingRun
from llmtwin.operator import twin_metrics
from tests.harness.metrics import samples_of


def event_body(twin: str, last_training: dict | None) -> dict:
    status = {"lastTraining": last_training} if last_training else {}
    return {"metadata": {"namespace": "unit", "name": twin}, "status": status}


def decisions(twin: str) -> dict[str, float]:
    return {key[2]: value for key, value in samples_of(names.RETRAIN_DECISION_METRIC, twin=twin).items()}


@pytest.mark.parametrize(
    ("last_training", "decision"),
    [
        ({"result": "Running"}, "running"),
        ({"result": "Failed"}, "failed"),
        ({"result": "Succeeded", "version": "3", "promoted": True}, "promoted"),
        ({"result": "Succeeded", "version": "3", "promoted": False}, "rejected"),
    ],
)
def test_a_run_comes_to_one_decision(last_training, decision):
    assert TrainingRun.model_validate(last_training).decision == decision


class TestOnEvent:
    def test_the_latest_decision_is_one_and_the_others_zero(self):
        twin_metrics.on_event(None, event_body("a", {"startedAt": "2026-12-02T03:00:00Z"}))
        assert decisions("a") == {"running": 1, "failed": 0, "promoted": 0, "rejected": 0}
        finished = {"startedAt": "2026-12-02T03:00:00Z", "finishedAt": "2026-12-02T03:00:30Z", "result": "Failed"}
        twin_metrics.on_event("MODIFIED", event_body("a", finished))
        assert decisions("a") == {"running": 0, "failed": 1, "promoted": 0, "rejected": 0}
        assert samples_of(names.RETRAIN_TIMESTAMP_METRIC, twin="a") == {("unit", "a"): 1796180430.0}

    def test_a_twin_that_never_retrained_has_no_series(self):
        twin_metrics.on_event("ADDED", event_body("b", None))
        assert decisions("b") == {}
        assert samples_of(names.RETRAIN_TIMESTAMP_METRIC, twin="b") == {}

    def test_deletion_drops_the_series(self):
        twin_metrics.on_event("ADDED", event_body("c", {"result": "Succeeded", "promoted": True}))
        assert decisions("c")["promoted"] == 1
        twin_metrics.on_event("DELETED", event_body("c", {"result": "Succeeded", "promoted": True}))
        assert decisions("c") == {}
