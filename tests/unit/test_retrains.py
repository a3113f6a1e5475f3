"""Retrain bookkeeping: the decision from status.lastTraining, the status file's compare-and-set, and
the dispatcher on top (one run per episode, none in flight twice, none inside the cooldown)."""

from __future__ import annotations

import datetime as dt

import pytest

from llmtwin.api.v1alpha1 import TrainingRun
from llmtwin.drift.monitor import Evaluation
from llmtwin.drift.rule import DriftRule, webhook_payload
from llmtwin.events.alerts import WebhookPayload
from llmtwin.events.gateway import AlertDispatcher, DeadLetters
from llmtwin.events.http import publish_alerts
from llmtwin.events.queue import InProcessQueue
from llmtwin.events.retrains import FileRetrainLedger, retrain_decision, started
from llmtwin.events.submit import SubmissionRejected
from llmtwin.workflows.status import FileStatusReporter
from tests.twins import example_twin

T0 = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
HOUR = 3600.0


def stamp(seconds: float) -> str:
    return (T0 + dt.timedelta(seconds=seconds)).isoformat()


def twin_with(last: TrainingRun | None, cooldown: str = "1h"):
    twin = example_twin("harbour", "authors")
    twin.spec.training = twin.spec.training.model_copy(update={"cooldown": cooldown})
    twin.status.last_training = last
    return twin


AT = T0.timestamp()


@pytest.mark.parametrize(
    ("last", "now", "decision"),
    [
        (None, 0, "submit"),
        (TrainingRun(episode="e1", started_at=stamp(0), result="Running"), 60, "duplicate"),
        (TrainingRun(episode="e0", started_at=stamp(0), result="Running"), 60, "in-flight"),
        # a run whose exit handler never reported is not in flight forever: past the Workflow's deadline
        (TrainingRun(episode="e0", started_at=stamp(0), result="Running"), 5 * HOUR, "submit"),
        (TrainingRun(episode="e0", started_at=stamp(0), finished_at=stamp(600), result="Failed"), 900, "cooldown"),
        (TrainingRun(episode="e0", finished_at=stamp(600), result="Succeeded"), 2 * HOUR, "submit"),
    ],
    ids=["first", "same-episode", "in-flight", "stale", "cooldown", "after-cooldown"],
)
def test_retrain_decision(last, now, decision):
    assert retrain_decision(twin_with(last), "e1", AT + now, deadline_seconds=4 * HOUR) == decision


def test_a_claim_on_a_stale_read_loses(tmp_path):
    status = FileStatusReporter(tmp_path / "status.json")
    twin = example_twin("harbour", "authors")
    ledger = FileRetrainLedger(twin, status)
    seen_by_a, seen_by_b = ledger.twin("authors", "harbour"), ledger.twin("authors", "harbour")
    assert ledger.claim(seen_by_a, started("e1", "wf-a"))
    assert not ledger.claim(seen_by_b, started("e1", "wf-b"))  # b read before a wrote
    assert status.read()["lastTraining"]["workflow"] == "wf-a"
    assert ledger.twin("authors", "other") is None


class RecordingSubmitter:
    """Records Workflows instead of creating them (the cluster tests create them in a real API server)."""

    def __init__(self, refuse: bool = False):
        self.workflows: list[dict] = []
        self.refuse = refuse

    def submit(self, workflow: dict) -> str:
        if self.refuse:
            raise SubmissionRejected("403 Forbidden: workflows are frozen in this namespace")
        self.workflows.append(workflow)
        return workflow["metadata"]["name"]


def dispatch(tmp_path, submitter, alerts: list[tuple[str, float]], clock_at: float = AT):
    """Each (status, rule time) becomes the rule's alert, through the webhook's schema and the queue."""
    twin = example_twin("harbour", "authors")
    status = FileStatusReporter(tmp_path / "status.json")
    queue = InProcessQueue()
    dispatcher = AlertDispatcher(
        FileRetrainLedger(twin, status), submitter, DeadLetters(queue, "dlq"), clock=lambda: clock_at
    )
    rule = DriftRule(twin)
    consumer = queue.consumer("alerts", "test")
    for state, at in alerts:
        alert = rule._alert(state, at, Evaluation(50, 0.7))
        publish_alerts(queue, "alerts", WebhookPayload.model_validate(webhook_payload(alert)))
    dispatcher.handle(consumer.poll(0, 100))
    return status.read(), queue.messages("dlq")


def test_repeats_of_one_episode_start_one_run(tmp_path):
    submitter = RecordingSubmitter()
    status, letters = dispatch(tmp_path, submitter, [("firing", AT)] * 5)
    assert len(submitter.workflows) == 1 and letters == []
    assert status["lastTraining"]["workflow"] == submitter.workflows[0]["metadata"]["name"]
    assert status["lastTraining"]["result"] == "Running"


def test_a_new_episode_while_one_runs_starts_nothing(tmp_path):
    submitter = RecordingSubmitter()
    dispatch(tmp_path, submitter, [("firing", AT), ("firing", AT + 600)])
    assert len(submitter.workflows) == 1


def test_a_refused_workflow_is_dead_lettered_and_does_not_hold_the_twin(tmp_path):
    status, letters = dispatch(tmp_path, RecordingSubmitter(refuse=True), [("firing", AT)])
    assert [m.headers["llmtwin-dlq-reason"] for m in letters] == [b"rejected"]
    assert b"403" in letters[0].headers["llmtwin-dlq-detail"]
    assert status["lastTraining"]["result"] == "Failed" and "403" in status["lastError"]
