"""Each twin's state as metrics, read from the status the workflow steps and the gateway write.

The operator watches every twin already, so it exports what the dashboard needs from their status: the
latest retrain's gate decision (`names.RETRAIN_DECISION_METRIC`, a state set) and when it happened. Only
the status is read, so the series survive operator restarts and never count a run twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import Gauge

from llmtwin.api import names
from llmtwin.api.timestamps import epoch_seconds
from llmtwin.api.v1alpha1 import RETRAIN_DECISIONS, TrainingRun

RETRAIN_DECISION = Gauge(
    names.RETRAIN_DECISION_METRIC,
    "The twin's latest retrain: 1 for its decision (running, failed, promoted, rejected), 0 for the others",
    ["namespace", "twin", "decision"],
)
RETRAIN_TIMESTAMP = Gauge(
    names.RETRAIN_TIMESTAMP_METRIC,
    "When the twin's latest retrain finished (or started, while it runs)",
    ["namespace", "twin"],
)


def on_event(event_type: str | None, body: Mapping[str, Any]) -> None:
    """A watch event on a twin: export its status, or drop its series once it is deleted."""
    namespace, twin = body["metadata"]["namespace"], body["metadata"]["name"]
    if event_type == "DELETED":
        forget(namespace, twin)
    else:
        observe(namespace, twin, (body.get("status") or {}).get("lastTraining"))


def observe(namespace: str, twin: str, last_training: dict | None) -> None:
    """Export the twin's `status.lastTraining`; a twin that never retrained has no series."""
    if not last_training:
        forget(namespace, twin)
        return
    run = TrainingRun.model_validate(last_training)
    for decision in RETRAIN_DECISIONS:
        RETRAIN_DECISION.labels(namespace, twin, decision).set(1 if decision == run.decision else 0)
    if stamp := run.finished_at or run.started_at:
        RETRAIN_TIMESTAMP.labels(namespace, twin).set(epoch_seconds(stamp))


def forget(namespace: str, twin: str) -> None:
    """The twin is gone (or never retrained): drop its series."""
    for decision in RETRAIN_DECISIONS:
        _remove(RETRAIN_DECISION, namespace, twin, decision)
    _remove(RETRAIN_TIMESTAMP, namespace, twin)


def _remove(gauge: Gauge, *labels: str) -> None:
    try:
        gauge.remove(*labels)
    except KeyError:  # never set
        pass
