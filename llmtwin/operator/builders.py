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


def prometheus_rule(twin: LLMTwin) -> dict[str, Any]:
    drift = twin.spec.drift
    labels = f'twin="{twin.name}",namespace="{twin.namespace}"'
    for_seconds = int(duration_seconds(drift.for_))
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": _meta(twin, names.prometheus_rule_name(twin.name), "monitoring"),
        "spec": {
            "groups": [
                {
                    "name": f"llmtwin-{twin.namespace}-{twin.name}",
                    "rules": [
                        {
                            "alert": names.DRIFT_ALERT,
                            "expr": f"{names.DRIFT_METRIC}{{{labels}}} > {drift.threshold}",
                            "for": f"{for_seconds}s",
                            "labels": {
                                "severity": "warning",
                                names.ALERT_TWIN_LABEL: twin.name,
                                names.ALERT_NAMESPACE_LABEL: twin.namespace,
                                names.ALERT_ACTION_LABEL: names.RETRAIN_ACTION,
                            },
                            "annotations": {
                                "summary": f"LLMTwin {twin.namespace}/{twin.name}: questions drift from the corpus",
                                "description": "Drift score {{ $value }} above "
                                f"{drift.threshold} (detector {drift.detector}, window {drift.window}).",
                            },
                        }
                    ],
                }
            ]
        },
    }


def children(twin: LLMTwin, settings: PlatformSettings) -> list[dict[str, Any]]:
    """Everything the operator creates and owns for one twin, in apply order."""
    return [
        config_map(twin),
        *templates.workflow_templates(twin, settings),
        *serving.serving_children(twin, settings),
        prometheus_rule(twin),
    ]
