"""Pure builders: an LLMTwin in, the Kubernetes objects it needs out.

No API calls here: the handlers apply what these return, so everything a twin creates can be
unit-tested, rendered offline (`llmtwin render`) and diffed. Ownership (ownerReferences) is added
by the handler, which knows the live object's uid.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

from llmtwin.api import names
from llmtwin.api.v1alpha1 import LLMTwin, duration_seconds
from llmtwin.config import PlatformSettings
from llmtwin.workflows import templates

SERVER_PORT = 8080
ADAPTER_DIR = "/adapters"
ADAPTER_PATH = f"{ADAPTER_DIR}/current"


def _meta(twin: LLMTwin, name: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": twin.namespace,
        "labels": {**names.twin_labels(twin.name), names.COMPONENT_LABEL: component},
    }


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


# ---------------------------------------------------------------------------------------- serving


def _server_selector(twin: LLMTwin) -> dict[str, str]:
    return {names.TWIN_LABEL: twin.name, names.COMPONENT_LABEL: "server"}


Engine = Callable[[LLMTwin], tuple[list[str], list[dict[str, str]]]]


def _tgi(twin: LLMTwin) -> tuple[list[str], list[dict[str, str]]]:
    serving, base = twin.spec.serving, twin.spec.base_model
    args = ["--model-id", base.id.removeprefix("hf://"), "--port", str(SERVER_PORT)]
    args += ["--max-input-tokens", str(serving.max_input_tokens), "--max-total-tokens", str(serving.max_total_tokens)]
    env = []
    if twin.status.model_version:  # the production adapter, fetched by the init container
        env.append({"name": "LORA_ADAPTERS", "value": f"{twin.name}={ADAPTER_PATH}"})
    return args, env


def _vllm(twin: LLMTwin) -> tuple[list[str], list[dict[str, str]]]:
    serving, base = twin.spec.serving, twin.spec.base_model
    args = ["--model", base.id.removeprefix("hf://"), "--port", str(SERVER_PORT)]
    args += ["--max-model-len", str(serving.max_total_tokens), "--enable-lora"]
    if twin.status.model_version:
        args += ["--lora-modules", f"{twin.name}={ADAPTER_PATH}"]
    return args, []


ENGINES: dict[str, Engine] = {"tgi": _tgi, "vllm": _vllm}


def _server_container(twin: LLMTwin) -> dict[str, Any]:
    serving = twin.spec.serving
    args, env = ENGINES[serving.engine](twin)
    if twin.spec.base_model.revision:
        args += ["--revision", twin.spec.base_model.revision]
    compute = serving.resources
    resources: dict[str, Any] = {
        "requests": {"cpu": compute.cpu, "memory": compute.memory},
        "limits": {"memory": compute.memory},
    }
    if compute.gpu:
        resources["requests"]["nvidia.com/gpu"] = str(compute.gpu)
        resources["limits"]["nvidia.com/gpu"] = str(compute.gpu)
    return {
        "name": "server",
        "image": serving.resolved_image,
        "args": args,
        "env": [{"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"}, *env],
        "ports": [{"name": "http", "containerPort": SERVER_PORT, "protocol": "TCP"}],
        "resources": resources,
        "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10},
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": "http"},
            "periodSeconds": 30,
            "failureThreshold": 10,
            # Model download and load take minutes on first start.
            "initialDelaySeconds": 300,
        },
        "volumeMounts": [{"name": "adapters", "mountPath": ADAPTER_DIR}],
    }


def _adapter_init_container(twin: LLMTwin, settings: PlatformSettings) -> dict[str, Any]:
    return {
        "name": "fetch-adapter",
        "image": settings.workflow_image,
        "command": ["llmtwin", "step", "fetch-adapter"],
        "args": [f"version={twin.status.model_version}", f"dest={ADAPTER_PATH}"],
        # The step keeps its outputs in its workspace: put it on the writable adapters volume.
        "env": templates.step_env(settings, workspace=f"{ADAPTER_DIR}/.step"),
        "volumeMounts": [
            {"name": "adapters", "mountPath": ADAPTER_DIR},
            {"name": "twin-config", "mountPath": templates.CONFIG_MOUNT, "readOnly": True},
        ],
        "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
    }


def rollout(twin: LLMTwin, settings: PlatformSettings) -> dict[str, Any]:
    serving = twin.spec.serving
    steps: list[dict[str, Any]] = []
    for step in serving.canary.steps:
        steps.append({"setWeight": step.set_weight})
        steps.append({"pause": {"duration": step.pause}} if step.pause else {"pause": {}})
    pod_spec: dict[str, Any] = {
        "containers": [_server_container(twin)],
        "volumes": [
            {"name": "adapters", "emptyDir": {}},
            {"name": "twin-config", "configMap": {"name": names.config_map_name(twin.name)}},
        ],
    }
    if twin.status.model_version:
        pod_spec["initContainers"] = [_adapter_init_container(twin, settings)]
    compute = serving.resources
    if compute.node_selector:
        pod_spec["nodeSelector"] = dict(compute.node_selector)
    if compute.tolerations:
        pod_spec["tolerations"] = [t.wire() for t in compute.tolerations]
    selector = _server_selector(twin)
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": _meta(twin, names.server_name(twin.name), "server"),
        "spec": {
            "replicas": serving.replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {
                    "labels": selector,
                    "annotations": {names.MODEL_VERSION_ANNOTATION: twin.status.model_version or "base"},
                },
                "spec": pod_spec,
            },
            "strategy": {
                "canary": {
                    "stableService": names.service_name(twin.name, "stable"),
                    "canaryService": names.service_name(twin.name, "canary"),
                    "analysis": {
                        "templates": [{"templateName": names.analysis_template_name(twin.name)}],
                        "args": [{"name": "service", "value": names.service_name(twin.name, "canary")}],
                    },
                    "steps": steps,
                }
            },
        },
    }


def service(twin: LLMTwin, role: Literal["stable", "canary"]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(twin, names.service_name(twin.name, role), "server"),
        "spec": {
            "selector": _server_selector(twin),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def analysis_template(twin: LLMTwin) -> dict[str, Any]:
    analysis = twin.spec.serving.canary.analysis
    selector = f'namespace="{twin.namespace}",service="{{{{args.service}}}}"'
    window = analysis.interval

    def metric(name: str, query: str, bound: float) -> dict[str, Any]:
        return {
            "name": name,
            "interval": analysis.interval,
            "failureLimit": analysis.failure_limit,
            # No traffic yet is not a failure: NaN/empty results count as success.
            "successCondition": f"len(result) == 0 || isNaN(result[0]) || result[0] <= {bound}",
            "provider": {"prometheus": {"address": analysis.prometheus_address, "query": query}},
        }

    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": _meta(twin, names.analysis_template_name(twin.name), "server"),
        "spec": {
            "args": [{"name": "service"}],
            "metrics": [
                metric(
                    "error-ratio",
                    f"sum(rate(tgi_request_failure{{{selector}}}[{window}]))"
                    f" / sum(rate(tgi_request_count{{{selector}}}[{window}]))",
                    analysis.max_error_ratio,
                ),
                metric(
                    "p95-latency",
                    f"histogram_quantile(0.95, sum(rate(tgi_request_duration_bucket{{{selector}}}[{window}])) by (le))",
                    analysis.max_p95_latency_seconds,
                ),
            ],
        },
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
        service(twin, "stable"),
        service(twin, "canary"),
        analysis_template(twin),
        rollout(twin, settings),
        prometheus_rule(twin),
    ]
