"""Pure builders: an LLMTwin in, the Kubernetes objects it needs out.

No API calls here: the handlers apply what these return, so everything a twin creates can be
unit-tested, rendered offline (`llmtwin render`) and diffed. Ownership (ownerReferences) is added
by the handler, which knows the live object's uid.
"""

from __future__ import annotations

import json
from typing import Any

from llmtwin.api import names
from llmtwin.api.v1alpha1 import LLMTwin, duration_seconds
from llmtwin.config import PlatformSettings
from llmtwin.operator import serving
from llmtwin.workflows import templates


def _meta(twin: LLMTwin, name: str, component: str) -> dict[str, Any]:
    return names.child_metadata(twin.namespace, twin.name, name, component)


def resolved_twin(twin: LLMTwin) -> dict[str, Any]:
    """The twin as the workflows see it: spec with every default filled in, its generation, and the
    production adapter version (the retrain evaluation compares against it; serving fetches it)."""
    metadata: dict[str, Any] = {"name": twin.name, "namespace": twin.namespace}
    if twin.metadata.generation is not None:
        metadata["generation"] = twin.metadata.generation
    doc = {"apiVersion": twin.api_version, "kind": twin.kind, "metadata": metadata, "spec": twin.spec.wire()}
    if twin.status.model_version:
        doc["status"] = {"modelVersion": twin.status.model_version}
    return doc


def config_map(twin: LLMTwin) -> dict[str, Any]:
    """The resolved twin, mounted by every workflow step and the server's fetch-adapter init container."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(twin, names.config_map_name(twin.name), "config"),
        "data": {"twin.json": json.dumps(resolved_twin(twin), indent=2, sort_keys=True)},
    }


# ------------------------------------------------------------------------------------- monitoring


def drift_rule(twin: LLMTwin) -> dict[str, Any]:
    """The alerting rule on the drift monitor's score: above the threshold, with enough questions."""
    drift = twin.spec.drift
    selector = f'namespace="{twin.namespace}",twin="{twin.name}"'
    score = f'{names.DRIFT_METRIC}{{{selector},detector="{drift.detector}"}}'
    questions = f"{names.DRIFT_WINDOW_METRIC}{{{selector}}}"
    return {
        "alert": names.DRIFT_ALERT,
        # `and on(...)`: the score counts only while the window holds enough questions to mean something.
        "expr": f"{score} > {drift.effective_threshold} and on(namespace, twin) {questions} >= {drift.min_questions}",
        "for": f"{int(duration_seconds(drift.for_))}s",
        "labels": names.drift_alert_labels(twin.namespace, twin.name),
        "annotations": {
            "summary": names.drift_alert_summary(twin.namespace, twin.name),
            "description": "Drift score {{ $value }} above "
            f"{drift.effective_threshold} (detector {drift.detector}, window {drift.window}).",
        },
    }


def prometheus_rule(twin: LLMTwin) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": _meta(twin, names.prometheus_rule_name(twin.name), "monitoring"),
        "spec": {"groups": [{"name": f"llmtwin-{twin.namespace}-{twin.name}", "rules": [drift_rule(twin)]}]},
    }


RBAC_API = "rbac.authorization.k8s.io/v1"


def workflow_identity(twin: LLMTwin) -> list[dict[str, Any]]:
    """Who the twin's Workflows run as: a ServiceAccount of the twin's own, a Role with exactly what its
    steps do (read this twin, patch this twin's status, let Argo's executor record task results) and the
    binding. Scoped by resourceNames, so a step cannot read or write another twin, even in its namespace.
    Owned by the twin like every child: its deletion removes them. Annotations a platform adds to the
    ServiceAccount (cloud workload identity) are not ours and stay."""
    name = names.workflow_identity_name(twin.name)
    meta = _meta(twin, name, "workflow")
    this_twin = {"apiGroups": [names.GROUP], "resourceNames": [twin.name]}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": RBAC_API,
            "kind": "Role",
            "metadata": meta,
            "rules": [
                {**this_twin, "resources": ["llmtwins"], "verbs": ["get"]},
                {**this_twin, "resources": ["llmtwins/status"], "verbs": ["get", "patch"]},
                {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]},
            ],
        },
        {
            "apiVersion": RBAC_API,
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": twin.namespace}],
        },
    ]


# Children that come and go with the spec (the rest are always rendered): kind -> apiVersion, for deleting
# one that a previous reconcile rendered (status.children) and this one does not.
OPTIONAL_CHILDREN = {"HorizontalPodAutoscaler": "autoscaling/v2"}


def kept_live_fields(twin: LLMTwin, child: dict[str, Any]) -> list[tuple[str, ...]]:
    """Fields rendered for creation only, then left to another controller: the Rollout's replica count once
    an HPA scales it (re-applying ours would undo each of its decisions)."""
    if child["kind"] == "Rollout" and twin.spec.serving.autoscaling.enabled:
        return [("spec", "replicas")]
    return []


def children(twin: LLMTwin, settings: PlatformSettings) -> list[dict[str, Any]]:
    """Everything the operator creates and owns for one twin, in apply order."""
    return [
        *workflow_identity(twin),
        config_map(twin),
        *templates.workflow_templates(twin, settings),
        *serving.serving_children(twin, settings),
        prometheus_rule(twin),
    ]
