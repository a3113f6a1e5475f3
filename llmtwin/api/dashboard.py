"""The twins' Grafana dashboard, built from the metric names the code exports (one source of truth).

Templated by `namespace` and `twin` (values from the drift monitor's window gauge). `llmtwin dashboard`
writes it as a ConfigMap labelled `grafana_dashboard: "1"`, which Grafana's dashboard sidecar (the
kube-prometheus-stack default) loads; `--check` fails when the shipped file is stale. The end-to-end
drift test runs every panel's query against a real Prometheus and expects data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml

from llmtwin.api import names

UID = "llmtwin-twins"
CONFIG_MAP = "llmtwin-dashboard"
SIDECAR_LABEL = "grafana_dashboard"  # the label Grafana's sidecar watches for dashboards
# Front door series carry the target labels of their ServiceMonitor: namespace and service (<twin>-frontdoor).
FRONT_DOOR = f'namespace="$namespace",service="{names.front_door_name("$twin")}"'
TWIN = 'namespace="$namespace",twin="$twin"'


@dataclass(frozen=True)
class Panel:
    title: str
    queries: dict[str, str]  # legend -> PromQL
    unit: str = "short"
    description: str = ""


PANELS = [
    Panel(
        "Questions per second (front door)",
        {"{{outcome}}": f"sum by (outcome) (rate(llmtwin_frontdoor_questions_total{{{FRONT_DOOR}}}[5m]))"},
        "reqps",
    ),
    Panel(
        "Answer latency (front door)",
        {
            "p50": "histogram_quantile(0.5, sum by (le) "
            f"(rate(llmtwin_frontdoor_answer_seconds_bucket{{{FRONT_DOOR}}}[5m])))",
            "p95": "histogram_quantile(0.95, sum by (le) "
            f"(rate(llmtwin_frontdoor_answer_seconds_bucket{{{FRONT_DOOR}}}[5m])))",
        },
        "s",
    ),
    Panel(
        "Retrieval latency p95 (front door)",
        {
            "{{mode}}": "histogram_quantile(0.95, sum by (le, mode) "
            f"(rate(llmtwin_retrieve_seconds_bucket{{{FRONT_DOOR}}}[5m])))",
        },
        "s",
        description="Question embedding plus search, by spec.serving.gateway.retrieval (hybrid, dense, bm25).",
    ),
    Panel(
        "Query expansion failures (front door)",
        {"per second": f"sum(rate(llmtwin_query_expansion_failures_total{{{FRONT_DOOR}}}[5m]))"},
        description="Questions searched without paraphrases (spec.serving.gateway.queryExpansion) because the "
        "model server failed; answers still come.",
    ),
    Panel(
        "Drift score against its threshold",
        {
            "score ({{detector}})": f"max by (detector) ({names.DRIFT_METRIC}{{{TWIN}}})",
            "threshold": f"max({names.DRIFT_THRESHOLD_METRIC}{{{TWIN}}})",
        },
        description="The alert fires when the score stays above the threshold for spec.drift.for "
        "with at least spec.drift.minQuestions in the window.",
    ),
    Panel(
        "Questions in the drift window",
        {"questions": f"max({names.DRIFT_WINDOW_METRIC}{{{TWIN}}})"},
    ),
    Panel(
        "Drift alert firing",
        {
            "firing": f'max(ALERTS{{alertname="{names.DRIFT_ALERT}",{names.ALERT_NAMESPACE_LABEL}="$namespace",'
            f'{names.ALERT_TWIN_LABEL}="$twin",alertstate="firing"}})'
        },
    ),  # fmt: skip
    Panel(
        "Ingest and retrain submissions (all twins)",
        {"{{kind}} {{result}}": "sum by (kind, result) (rate(llmtwin_gateway_workflow_submissions_total[5m]))"},
        "ops",
    ),
    Panel(
        "Latest retrain and its gate decision",
        {"{{decision}}": f"max by (decision) ({names.RETRAIN_DECISION_METRIC}{{{TWIN}}})"},
        description="1 for the decision of the twin's latest retrain: running, failed, promoted (it passed "
        "the evaluation gate) or rejected (it scored worse and was not promoted). The operator exports it "
        "from status.lastTraining.",
    ),
    Panel(
        "Time since the latest retrain",
        {"since": f"time() - max({names.RETRAIN_TIMESTAMP_METRIC}{{{TWIN}}})"},
        "s",
        description="Since the latest retrain ended (or started, while it runs); a drift alert inside "
        "spec.training.cooldown of it starts nothing.",
    ),
    Panel(
        "What the dispatcher did with drift alerts (all twins)",
        {"{{outcome}}": "sum by (outcome) (increase(llmtwin_gateway_alerts_total[1h]))"},
        description="submitted: a retrain started; in-flight, cooldown, duplicate: held back (status.lastTraining).",
    ),
    Panel(
        "Dead letters by reason (all twins)",
        {"{{topic}} {{reason}}": "sum by (topic, reason) (increase(llmtwin_gateway_dead_lettered_total[1h]))"},
    ),
    Panel(
        "Canary (Argo Rollouts)",
        {"{{phase}}": f'max by (phase) (rollout_info{{namespace="$namespace",name="{names.server_name("$twin")}"}})'},
        description="The phase of the twin's model-server Rollout, from the Argo Rollouts controller's "
        "rollout_info (scraped through manifests/monitoring/argo-rollouts-servicemonitor.yaml).",
    ),
]


def panel_json(panel: Panel, index: int) -> dict[str, Any]:
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": panel.title,
        "description": panel.description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
            for i, (legend, expr) in enumerate(panel.queries.items())
        ],
    }


def dashboard() -> dict[str, Any]:
    variable = {"type": "prometheus", "uid": "${datasource}"}
    return {
        "uid": UID,
        "title": "LLM Twins",
        "tags": ["llmtwin"],
        "timezone": "browser",
        "schemaVersion": 39,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus"},
                {
                    "name": "namespace",
                    "type": "query",
                    "datasource": variable,
                    "query": f"label_values({names.DRIFT_WINDOW_METRIC}, namespace)",
                    "refresh": 2,
                },
                {
                    "name": "twin",
                    "type": "query",
                    "datasource": variable,
                    "query": f'label_values({names.DRIFT_WINDOW_METRIC}{{namespace="$namespace"}}, twin)',
                    "refresh": 2,
                },
            ]
        },
        "panels": [panel_json(panel, i) for i, panel in enumerate(PANELS)],
    }


def config_map_yaml(namespace: str = "llmtwin-system") -> str:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": CONFIG_MAP,
            "namespace": namespace,
            "labels": {SIDECAR_LABEL: "1", "app.kubernetes.io/part-of": "llmtwin"},
        },
        "data": {"llmtwin-twins.json": json.dumps(dashboard(), indent=2, sort_keys=True) + "\n"},
    }
    header = "# Generated by `llmtwin dashboard` from llmtwin/api/dashboard.py; do not edit.\n"
    return header + yaml.dump(config_map, Dumper=_BlockDumper, sort_keys=False, width=120)


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (the dashboard JSON) as literal blocks: readable, diffable."""


_BlockDumper.add_representer(
    str,
    lambda dumper, text: dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None),
)
