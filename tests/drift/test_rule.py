"""The drift alerting rule the operator renders, under real `promtool test rules`, and the in-process
rule `llmtwin up` evaluates (`drift/rule.py`), held to the same scenarios."""

from __future__ import annotations

import pytest

from llmtwin.api import names
from llmtwin.drift.monitor import Evaluation
from llmtwin.drift.rule import DriftRule
from llmtwin.operator.builders import prometheus_rule
from tests.twins import example_twin

# threshold 0.4 (embedding-centroid), 2 minutes of drift, 20 questions at least
TWIN = example_twin(
    "harbour",
    "authors",
    drift={"detector": "embedding-centroid", "window": "1h", "for": "2m", "minQuestions": 20},
)
SCORE = f'{names.DRIFT_METRIC}{{namespace="authors",twin="harbour",detector="embedding-centroid"}}'
WINDOW = f'{names.DRIFT_WINDOW_METRIC}{{namespace="authors",twin="harbour"}}'
FIRING_LABELS = {
    "namespace": "authors",
    "twin": "harbour",
    "detector": "embedding-centroid",
    "severity": "warning",
    names.ALERT_TWIN_LABEL: "harbour",
    names.ALERT_NAMESPACE_LABEL: "authors",
    names.ALERT_ACTION_LABEL: names.RETRAIN_ACTION,
}

# (name, score series, window series, expected alerts at 1m, 3m, 9m) -- 15 s samples, 10 minutes
SCENARIOS = [
    ("drifted with enough questions", "0.6x40", "30x40", [False, True, True]),
    ("on topic", "0.2x40", "30x40", [False, False, False]),
    ("drifted, too few questions", "0.6x40", "5x40", [False, False, False]),
    ("drifted, no window series at all", "0.6x40", None, [False, False, False]),
    ("drift that ends", "0.6x12 0.1x28", "30x40", [False, True, False]),
    ("questions arrive late", "0.6x40", "5x16 30x24", [False, False, True]),
]
EVAL_TIMES = ["1m", "3m", "9m"]


def firing_alert(value: str) -> dict:
    """The alert as Prometheus sends it: the rule's labels and annotations, `$value` filled in."""
    rule = prometheus_rule(TWIN)["spec"]["groups"][0]["rules"][0]
    annotations = {k: v.replace("{{ $value }}", value) for k, v in rule["annotations"].items()}
    return {"exp_labels": FIRING_LABELS, "exp_annotations": annotations}


def promtool_case(score: str, window: str | None, expected: list[bool]) -> dict:
    series = [{"series": SCORE, "values": score}]
    if window is not None:
        series.append({"series": WINDOW, "values": window})
    return {
        "interval": "15s",
        "input_series": series,
        "alert_rule_test": [
            {
                "eval_time": at,
                "alertname": names.DRIFT_ALERT,
                "exp_alerts": [firing_alert("0.6")] if firing else [],
            }
            for at, firing in zip(EVAL_TIMES, expected, strict=True)
        ],
    }


def test_rendered_rule_passes_promtool(promtool, tmp_path):
    rules = prometheus_rule(TWIN)["spec"]
    cases = [promtool_case(score, window, expected) for _, score, window, expected in SCENARIOS]
    result = promtool.test_rules(rules, cases, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_catches_a_wrong_expectation(promtool, tmp_path):
    """The harness can fail: on-topic traffic expected to fire is reported as a failure."""
    rules = prometheus_rule(TWIN)["spec"]
    result = promtool.test_rules(rules, [promtool_case("0.2x40", "30x40", [False, True, True])], tmp_path)
    assert result.returncode != 0
    assert names.DRIFT_ALERT in result.stdout + result.stderr


def _values(series: str | None, samples: int) -> list[float | None]:
    """promtool's `aXn bXm` notation (a repeated n+1 times) unrolled into `samples` values."""
    if series is None:
        return [None] * samples
    values: list[float | None] = []
    for part in series.split():
        value, _, repeat = part.partition("x")
        values += [float(value)] * (int(repeat) + 1)
    return (values + [None] * samples)[:samples]


@pytest.mark.parametrize(("name", "score", "window", "expected"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_embedded_rule_agrees_with_promtool(name, score, window, expected):
    """`llmtwin up` evaluates the same condition: firing at the same evaluation times as Prometheus."""
    samples = 41
    rule = DriftRule(TWIN)
    firing_at: dict[int, bool] = {}
    for i, (s, w) in enumerate(zip(_values(score, samples), _values(window, samples), strict=True)):
        rule.observe(Evaluation(int(w or 0), s), at=i * 15.0)
        firing_at[i * 15] = rule.firing_since is not None
    assert [firing_at[seconds] for seconds in (60, 180, 540)] == expected


def test_embedded_rule_alert_has_the_dispatchers_labels():
    rule = DriftRule(TWIN)
    assert rule.observe(Evaluation(30, 0.6), at=0.0) is None  # pending
    alert = rule.observe(Evaluation(30, 0.6), at=120.0)
    assert alert is not None and alert["status"] == "firing"
    assert {k: alert["labels"][k] for k in (names.ALERT_TWIN_LABEL, names.ALERT_NAMESPACE_LABEL)} == {
        names.ALERT_TWIN_LABEL: "harbour",
        names.ALERT_NAMESPACE_LABEL: "authors",
    }
    assert alert["labels"][names.ALERT_ACTION_LABEL] == names.RETRAIN_ACTION
    resolved = rule.observe(Evaluation(30, 0.1), at=135.0)
    assert resolved is not None and resolved["status"] == "resolved" and resolved["startsAt"] == alert["startsAt"]
