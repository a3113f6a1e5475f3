"""Names the API promises: label and annotation keys, the names of a twin's children, the drift
alert's metric and labels. Defined once here; the operator renders them, the gateway and the steps
select by them, the tests read them (KAITO's `labels.go`, in Python).
"""

from __future__ import annotations

from typing import Literal

GROUP = "llmtwin.dev"

# ------------------------------------------------------------------------------ labels, annotations
TWIN_LABEL = f"{GROUP}/twin"  # on every child and Workflow: the owning twin's name
KIND_LABEL = f"{GROUP}/kind"  # on WorkflowTemplates and Workflows: ingest | retrain
COMPONENT_LABEL = "app.kubernetes.io/component"  # config | server | frontdoor | monitoring
MANAGED_BY_LABELS = {"app.kubernetes.io/managed-by": "llmtwin-operator", "app.kubernetes.io/part-of": "llmtwin"}
DEDUPE_KEY_ANNOTATION = f"{GROUP}/dedupe-key"  # on Workflows: the event that made them
# On ingest Workflows: the ids of the events they carry, comma-separated; the gateway's replay check reads them
# from a metadata-only list (no Workflow bodies, no statuses).
EVENT_IDS_ANNOTATION = f"{GROUP}/event-ids"
MODEL_VERSION_ANNOTATION = f"{GROUP}/model-version"  # on the server pod template: the adapter it serves
FINALIZER = f"{GROUP}/finalizer"
# Argo Rollouts labels each ReplicaSet's pods with their template's hash; the server's PodMonitor carries it
# into the metrics as ROLLOUT_HASH_METRIC_LABEL, which is how the canary analysis tells canary from stable.
ROLLOUT_HASH_LABEL = "rollouts-pod-template-hash"
ROLLOUT_HASH_METRIC_LABEL = "rollouts_pod_template_hash"

WorkflowKind = Literal["ingest", "retrain"]


def twin_labels(name: str, kind: str | None = None) -> dict[str, str]:
    labels = {**MANAGED_BY_LABELS, TWIN_LABEL: name}
    if kind:
        labels[KIND_LABEL] = kind
    return labels


def child_metadata(namespace: str, twin: str, name: str, component: str) -> dict:
    """metadata of an object the operator renders for a twin: its name, namespace and labels."""
    return {"name": name, "namespace": namespace, "labels": {**twin_labels(twin), COMPONENT_LABEL: component}}


# ------------------------------------------------------------------------------------ child names
def config_map_name(twin: str) -> str:
    return f"{twin}-config"


def workflow_template_name(twin: str, kind: WorkflowKind) -> str:
    return f"{twin}-{kind}"


def workflow_identity_name(twin: str) -> str:
    """The ServiceAccount the twin's Workflows run as, its Role and their RoleBinding (one name for all three)."""
    return f"{twin}-workflow"


def server_name(twin: str) -> str:
    """The Rollout of the model server."""
    return f"{twin}-server"


def service_name(twin: str, role: Literal["stable", "canary"]) -> str:
    return f"{twin}-{role}"


def front_door_name(twin: str) -> str:
    """The front door's Deployment, Service and ServiceMonitor."""
    return f"{twin}-frontdoor"


def analysis_template_name(twin: str) -> str:
    return f"{twin}-canary-analysis"


def prometheus_rule_name(twin: str) -> str:
    return f"{twin}-drift"


def registered_model_name(namespace: str, twin: str) -> str:
    """The twin's registered model in MLflow (one version per retrain)."""
    return f"llmtwin-{namespace}-{twin}"


def experiment_name(namespace: str, twin: str) -> str:
    return f"llmtwin/{namespace}/{twin}"


def default_collection(namespace: str, twin: str) -> str:
    return f"twin_{namespace}_{twin}".replace("-", "_").replace(".", "_")


# ------------------------------------------------------------------------------------- drift alert
# The PrometheusRule the operator renders fires DRIFT_ALERT on DRIFT_METRIC with these labels; the
# gateway's dispatcher starts a retrain for alerts that carry them.
DRIFT_METRIC = "llmtwin_drift_score"  # {namespace, twin, detector}
DRIFT_WINDOW_METRIC = "llmtwin_drift_window_questions"  # {namespace, twin}
DRIFT_THRESHOLD_METRIC = "llmtwin_drift_threshold"  # {namespace, twin, detector}: the dashboard draws it
DRIFT_ALERT = "LLMTwinDrift"
ALERT_TWIN_LABEL = "llmtwin_twin"
ALERT_NAMESPACE_LABEL = "llmtwin_namespace"
ALERT_ACTION_LABEL = "llmtwin_action"
RETRAIN_ACTION = "retrain"
# The operator exports each twin's latest retrain from status.lastTraining: 1 for its decision, 0 for the
# others (a state set, as kube-state-metrics does for pod phases); the dashboard's retrain panel reads it.
RETRAIN_DECISION_METRIC = "llmtwin_twin_last_retrain"  # {namespace, twin, decision}
RETRAIN_TIMESTAMP_METRIC = "llmtwin_twin_last_retrain_timestamp_seconds"  # {namespace, twin}: finished, else started


def drift_alert_labels(namespace: str, twin: str) -> dict[str, str]:
    """The labels the rendered rule (and `llmtwin up`'s rule) put on the drift alert; the dispatcher reads them."""
    return {
        "severity": "warning",
        ALERT_TWIN_LABEL: twin,
        ALERT_NAMESPACE_LABEL: namespace,
        ALERT_ACTION_LABEL: RETRAIN_ACTION,
    }


def drift_alert_summary(namespace: str, twin: str) -> str:
    return f"LLMTwin {namespace}/{twin}: questions drift from the corpus"
