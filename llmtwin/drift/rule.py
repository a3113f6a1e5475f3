"""The twin's drift alerting rule evaluated in-process, for `llmtwin up` (no Prometheus on a laptop).

The same condition the operator renders as a PrometheusRule (`operator/builders.py: drift_rule`):
the score above the threshold while the window holds at least `minQuestions`, continuously for `for`.
When it starts firing (and when it stops) it yields an alert in Alertmanager's webhook shape, so the
gateway's own webhook schema and dispatcher take it from there.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from llmtwin.api import names
from llmtwin.api.v1alpha1 import LLMTwin, duration_seconds
from llmtwin.drift.monitor import Evaluation


def alert_labels(twin: LLMTwin) -> dict[str, str]:
    return {"alertname": names.DRIFT_ALERT, **names.drift_alert_labels(twin.namespace, twin.name)}


class DriftRule:
    def __init__(self, twin: LLMTwin):
        self.twin = twin
        self.pending_since: float | None = None
        self.firing_since: float | None = None

    def active(self, evaluation: Evaluation) -> bool:
        drift = self.twin.spec.drift
        return (
            evaluation.score is not None
            and evaluation.score > drift.effective_threshold
            and evaluation.questions >= drift.min_questions
        )

    def observe(self, evaluation: Evaluation, at: float) -> dict[str, Any] | None:
        """An alert (webhook shape) when the rule starts or stops firing; None when nothing changed."""
        if not self.active(evaluation):
            self.pending_since = None
            if self.firing_since is None:
                return None
            started, self.firing_since = self.firing_since, None
            return self._alert("resolved", started, evaluation, ended=at)
        if self.pending_since is None:
            self.pending_since = at
        if self.firing_since is None and at - self.pending_since >= duration_seconds(self.twin.spec.drift.for_):
            self.firing_since = at
            return self._alert("firing", at, evaluation)
        return None

    def _alert(self, status: str, started: float, evaluation: Evaluation, ended: float | None = None) -> dict[str, Any]:
        labels = alert_labels(self.twin)
        fingerprint = hashlib.sha256(repr(sorted(labels.items())).encode()).hexdigest()[:16]
        drift = self.twin.spec.drift
        return {
            "status": status,
            "labels": labels,
            "annotations": {
                "summary": names.drift_alert_summary(self.twin.namespace, self.twin.name),
                "description": f"Drift score {evaluation.score} ({drift.detector}, threshold"
                f" {drift.effective_threshold}) over {evaluation.questions} questions.",
            },
            "startsAt": _iso(started),
            "endsAt": _iso(ended) if ended else "0001-01-01T00:00:00Z",
            "fingerprint": fingerprint,
        }


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat()


def webhook_payload(alert: dict[str, Any]) -> dict[str, Any]:
    """Alertmanager's webhook body (version 4) around one alert."""
    return {"version": "4", "status": alert["status"], "receiver": "llmtwin-embedded", "alerts": [alert]}
