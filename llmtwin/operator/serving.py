"""Pure builders of a twin's serving plane: the model server's Rollout (per engine), its stable and
canary Services, its PodMonitor, the canary's AnalysisTemplate, and the twin's front door (Deployment,
Service, ServiceMonitor) in front of the stable Service.

The analysis tells canary from stable by the pods' `rollouts-pod-template-hash`: the PodMonitor carries
it into every server metric, and the Rollout passes the canary's hash (`podTemplateHashValue: Latest`).

Engines (`spec.serving.engine`), each with its own image, flags, adapter wiring and metric names:
- `tgi`: TGI's image; the production adapter through `LORA_ADAPTERS`; `tgi_*` metrics;
- `vllm`: vLLM's OpenAI server; `--enable-lora --lora-modules`; `vllm:*` and `http_requests_total`;
- `llmtwin`: `llmtwin serve` from the workflow image (CPU nodes, no TGI); `--adapter`; TGI's metric names.
The adapter is served under the twin's name by every engine; the front door asks for it. Which version
the pod template carries is `LLMTwinStatus.serving_version`: production, or the candidate while its canary runs
(operator/promotion.py decides); changing it is what starts a canary.

Canary traffic: no traffic router is configured, so Argo Rollouts approximates each step's weight by pod
counts behind the stable Service. The Rollout surges by one pod and never takes a stable pod away during
the canary (`maxSurge: 1`, `maxUnavailable: 0`): with one replica the canary is one extra pod (a second GPU
while it runs) taking about half the requests at every weight below 100. `setCanaryScale`, which would keep
the canary at one pod with exact weights, needs a traffic router (Argo Rollouts refuses it otherwise).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from llmtwin.api import names
from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.config import PlatformSettings
from llmtwin.workflows import templates

SERVER_PORT = 8080
FRONT_DOOR_PORT = 8080
ADAPTER_DIR = "/adapters"
ADAPTER_PATH = f"{ADAPTER_DIR}/current"
MODEL_CACHE = "/var/cache/llmtwin/models"
TGI_IMAGE = "ghcr.io/huggingface/text-generation-inference:3.3.4"
VLLM_IMAGE = "vllm/vllm-openai:v0.11.0"
CANARY_HASH_ARG = "canary-hash"  # the AnalysisTemplate's argument: the canary pods' template hash


def _meta(twin: LLMTwin, name: str, component: str) -> dict[str, Any]:
    return names.child_metadata(twin.namespace, twin.name, name, component)


# ----------------------------------------------------------------------------------------- engines
Queries = Callable[[str, str], tuple[str, str]]  # (selector, window) -> (error ratio, p95 latency)


def _tgi_queries(selector: str, window: str) -> tuple[str, str]:
    # A server that never failed has no failure series yet: that is zero failures, not no data.
    failed = f"(sum(rate(tgi_request_failure{{{selector}}}[{window}])) or vector(0))"
    requests = f"sum(rate(tgi_request_count{{{selector}}}[{window}]))"
    latency = f"sum(rate(tgi_request_duration_bucket{{{selector}}}[{window}])) by (le)"
    return f"{failed} / {requests}", f"histogram_quantile(0.95, {latency})"


def _vllm_queries(selector: str, window: str) -> tuple[str, str]:
    # vLLM counts no failed requests itself; its OpenAI server's HTTP metrics do.
    failed = f'(sum(rate(http_requests_total{{{selector},status=~"5.."}}[{window}])) or vector(0))'
    requests = f"sum(rate(http_requests_total{{{selector}}}[{window}]))"
    latency = f"sum(rate(vllm:e2e_request_latency_seconds_bucket{{{selector}}}[{window}])) by (le)"
    return f"{failed} / {requests}", f"histogram_quantile(0.95, {latency})"


@dataclass(frozen=True)
class Engine:
    image: Callable[[PlatformSettings], str]
    args: Callable[[LLMTwin], list[str]]
    env: Callable[[LLMTwin, PlatformSettings], list[dict[str, str]]]
    queries: Queries
    # Requests waiting, per pod, as prometheus-adapter serves it to the HPA (README: Autoscaling).
    queue_metric: str = "tgi_queue_size"


def _tgi_args(twin: LLMTwin) -> list[str]:
    serving, base = twin.spec.serving, twin.spec.base_model
    args = ["--model-id", base.id.removeprefix("hf://"), "--port", str(SERVER_PORT)]
    args += ["--max-input-tokens", str(serving.max_input_tokens), "--max-total-tokens", str(serving.max_total_tokens)]
    return args + (["--revision", base.revision] if base.revision else [])


def _tgi_env(twin: LLMTwin, settings: PlatformSettings) -> list[dict[str, str]]:
    env = [{"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"}]
    if twin.status.serving_version:
        env.append({"name": "LORA_ADAPTERS", "value": f"{twin.name}={ADAPTER_PATH}"})
    return env


def _vllm_args(twin: LLMTwin) -> list[str]:
    serving, base = twin.spec.serving, twin.spec.base_model
    args = ["--model", base.id.removeprefix("hf://"), "--port", str(SERVER_PORT)]
    args += ["--max-model-len", str(serving.max_total_tokens), "--enable-lora"]
    if twin.status.serving_version:
        args += ["--lora-modules", f"{twin.name}={ADAPTER_PATH}"]
    return args + (["--revision", base.revision] if base.revision else [])


def _llmtwin_args(twin: LLMTwin) -> list[str]:
    serving = twin.spec.serving
    args = ["serve", "--model", twin.spec.base_model.id, "--port", str(SERVER_PORT)]
    args += ["--max-input-tokens", str(serving.max_input_tokens), "--max-total-tokens", str(serving.max_total_tokens)]
    args += ["--max-new-tokens", str(serving.max_new_tokens)]
    return args + (["--adapter", f"{twin.name}={ADAPTER_PATH}"] if twin.status.serving_version else [])


def _llmtwin_env(twin: LLMTwin, settings: PlatformSettings) -> list[dict[str, str]]:
    env = templates.step_env(settings)
    return [*env, {"name": "LLMTWIN_MODEL_CACHE", "value": MODEL_CACHE}]


ENGINES: dict[str, Engine] = {
    "tgi": Engine(lambda settings: TGI_IMAGE, _tgi_args, _tgi_env, _tgi_queries),
    # vLLM's gauge is vllm:num_requests_waiting; the adapter rule renames it (a colon is no API name).
    "vllm": Engine(
        lambda settings: VLLM_IMAGE, _vllm_args, lambda twin, settings: [], _vllm_queries, "vllm_num_requests_waiting"
    ),
    "llmtwin": Engine(lambda settings: settings.workflow_image, _llmtwin_args, _llmtwin_env, _tgi_queries),
}


# ------------------------------------------------------------------------------------ model server
def _server_selector(twin: LLMTwin) -> dict[str, str]:
    return {names.TWIN_LABEL: twin.name, names.COMPONENT_LABEL: "server"}


def _resources(twin: LLMTwin) -> dict[str, Any]:
    compute = twin.spec.serving.resources
    resources: dict[str, Any] = {
        "requests": {"cpu": compute.cpu, "memory": compute.memory},
        "limits": {"memory": compute.memory},
    }
    if compute.gpu:
        resources["requests"]["nvidia.com/gpu"] = str(compute.gpu)
        resources["limits"]["nvidia.com/gpu"] = str(compute.gpu)
    return resources


def _server_container(twin: LLMTwin, settings: PlatformSettings) -> dict[str, Any]:
    serving = twin.spec.serving
    engine = ENGINES[serving.engine]
    mounts = [{"name": "adapters", "mountPath": ADAPTER_DIR}]
    if serving.engine == "llmtwin":
        mounts.append({"name": "model-cache", "mountPath": MODEL_CACHE})
    return {
        "name": "server",
        "image": serving.image or engine.image(settings),
        "args": engine.args(twin),
        "env": engine.env(twin, settings),
        "ports": [{"name": "http", "containerPort": SERVER_PORT, "protocol": "TCP"}],
        "resources": _resources(twin),
        "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10},
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": "http"},
            "periodSeconds": 30,
            "failureThreshold": 10,
            # Model download and load take minutes on first start.
            "initialDelaySeconds": 300,
        },
        "volumeMounts": mounts,
    }


def _adapter_init_container(twin: LLMTwin, settings: PlatformSettings) -> dict[str, Any]:
    return {
        "name": "fetch-adapter",
        "image": settings.workflow_image,
        "command": ["llmtwin", "step", "fetch-adapter"],
        "args": [f"version={twin.status.serving_version}", f"dest={ADAPTER_PATH}"],
        # The step keeps its outputs in its workspace: put it on the writable adapters volume.
        "env": templates.step_env(settings, workspace=f"{ADAPTER_DIR}/.step"),
        "volumeMounts": [
            {"name": "adapters", "mountPath": ADAPTER_DIR},
            {"name": "twin-config", "mountPath": templates.CONFIG_MOUNT, "readOnly": True},
        ],
        "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
    }


def _canary_steps(twin: LLMTwin) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    for step in twin.spec.serving.canary.steps:
        steps.append({"setWeight": step.set_weight})
        if step.pause:  # `pause: {}` would wait for a human forever
            steps.append({"pause": {"duration": step.pause}})
    return steps


def rollout(twin: LLMTwin, settings: PlatformSettings) -> dict[str, Any]:
    serving = twin.spec.serving
    volumes = [
        {"name": "adapters", "emptyDir": {}},
        {"name": "twin-config", "configMap": {"name": names.config_map_name(twin.name)}},
    ]
    if serving.engine == "llmtwin":
        volumes.append({"name": "model-cache", "emptyDir": {}})
    # initContainers is always rendered, empty for the base model: the Rollout's pod template has no schema
    # (preserve-unknown-fields), so server-side apply does not prune a list the operator stops sending,
    # and a rejected candidate's init container would stay in the production template.
    fetch = [_adapter_init_container(twin, settings)] if twin.status.serving_version else []
    pod_spec: dict[str, Any] = {"containers": [_server_container(twin, settings)], "initContainers": fetch}
    pod_spec["volumes"] = volumes
    compute = serving.resources
    if compute.node_selector:
        pod_spec["nodeSelector"] = dict(compute.node_selector)
    if compute.tolerations:
        pod_spec["tolerations"] = [t.wire() for t in compute.tolerations]
    selector = _server_selector(twin)
    canary = names.service_name(twin.name, "canary")
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": _meta(twin, names.server_name(twin.name), "server"),
        "spec": {
            # With autoscaling this is only the count at creation (the HPA needs one to read the scale); after
            # that the live count, the HPA's, is kept (builders.kept_live_fields).
            "replicas": serving.autoscaling.min_replicas if serving.autoscaling.enabled else serving.replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {
                    "labels": selector,
                    "annotations": {names.MODEL_VERSION_ANNOTATION: twin.status.serving_version or "base"},
                },
                "spec": pod_spec,
            },
            "strategy": {
                "canary": {
                    "stableService": names.service_name(twin.name, "stable"),
                    "canaryService": canary,
                    "maxSurge": 1,
                    "maxUnavailable": 0,
                    "analysis": {
                        "templates": [{"templateName": names.analysis_template_name(twin.name)}],
                        "args": [{"name": CANARY_HASH_ARG, "valueFrom": {"podTemplateHashValue": "Latest"}}],
                    },
                    "steps": _canary_steps(twin),
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
    """Prometheus checks on the canary's pods, in the engine's own metric names."""
    analysis = twin.spec.serving.canary.analysis
    selector = f'namespace="{twin.namespace}",{names.ROLLOUT_HASH_METRIC_LABEL}="{{{{args.{CANARY_HASH_ARG}}}}}"'
    errors, latency = ENGINES[twin.spec.serving.engine].queries(selector, analysis.interval)

    def metric(name: str, query: str, bound: float) -> dict[str, Any]:
        return {
            "name": name,
            # The first measurement covers a whole interval of the canary's traffic, not its first seconds.
            "initialDelay": analysis.interval,
            "interval": analysis.interval,
            "failureLimit": analysis.failure_limit,
            # Only a number within the bound passes. No result (the canary was never scraped) and NaN (no
            # requests in the interval: 0/0, or no histogram samples) are failed measurements: a canary
            # nobody used has shown nothing and is not promoted.
            "successCondition": f"len(result) > 0 && !isNaN(result[0]) && result[0] <= {bound}",
            "provider": {"prometheus": {"address": analysis.prometheus_address, "query": query}},
        }

    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": _meta(twin, names.analysis_template_name(twin.name), "server"),
        "spec": {
            "args": [{"name": CANARY_HASH_ARG}],
            "metrics": [
                metric("error-ratio", errors, analysis.max_error_ratio),
                metric("p95-latency", latency, analysis.max_p95_latency_seconds),
            ],
        },
    }


# -------------------------------------------------------------------------------------- front door
def _front_door_selector(twin: LLMTwin) -> dict[str, str]:
    return {names.TWIN_LABEL: twin.name, names.COMPONENT_LABEL: "frontdoor"}


def model_server_url(twin: LLMTwin) -> str:
    """What the front door generates with: the spec's endpoint, else the Rollout's stable Service."""
    stable = names.service_name(twin.name, "stable")
    return twin.spec.serving.gateway.generation_endpoint or f"http://{stable}.{twin.namespace}.svc"


def front_door(twin: LLMTwin, settings: PlatformSettings) -> dict[str, Any]:
    selector = _front_door_selector(twin)
    secrets = twin.spec.vector_store.secret_names()  # Milvus' token and CA; it reads no source
    env = templates.step_env(settings) + [{"name": "LLMTWIN_MODEL_SERVER", "value": model_server_url(twin)}]
    container = {
        "name": "frontdoor",
        "image": settings.workflow_image,
        "args": ["frontdoor", "--port", str(FRONT_DOOR_PORT)],
        "env": env,
        "ports": [{"name": "http", "containerPort": FRONT_DOOR_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 30, "failureThreshold": 5},
        # The embedding model and the Milvus client, no generation: modest.
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
        "volumeMounts": [
            {"name": "twin-config", "mountPath": templates.CONFIG_MOUNT, "readOnly": True},
            *(
                {
                    "name": templates.secret_volume_name(s),
                    "mountPath": f"{templates.SECRETS_MOUNT}/{s}",
                    "readOnly": True,
                }
                for s in secrets
            ),
        ],
        "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(twin, names.front_door_name(twin.name), "frontdoor"),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": selector},
                "spec": {
                    "containers": [container],
                    "volumes": [
                        {"name": "twin-config", "configMap": {"name": names.config_map_name(twin.name)}},
                        *({"name": templates.secret_volume_name(s), "secret": {"secretName": s}} for s in secrets),
                    ],
                },
            },
        },
    }


def front_door_service(twin: LLMTwin) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(twin, names.front_door_name(twin.name), "frontdoor"),
        "spec": {
            "selector": _front_door_selector(twin),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def front_door_monitor(twin: LLMTwin) -> dict[str, Any]:
    """Prometheus (prometheus-operator) scrapes the front door's /metrics through its Service; the target
    labels `namespace` and `service` are what the dashboard selects on."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _meta(twin, names.front_door_name(twin.name), "frontdoor"),
        "spec": {
            "selector": {"matchLabels": {**names.twin_labels(twin.name), names.COMPONENT_LABEL: "frontdoor"}},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}],
        },
    }


def server_monitor(twin: LLMTwin) -> dict[str, Any]:
    """Prometheus scrapes every model-server pod, stable and canary alike, each series labelled with its
    pod's template hash (what the AnalysisTemplate selects the canary by)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": _meta(twin, names.server_name(twin.name), "server"),
        "spec": {
            "selector": {"matchLabels": _server_selector(twin)},
            "podTargetLabels": [names.ROLLOUT_HASH_LABEL],
            "podMetricsEndpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}],
        },
    }


def autoscaler(twin: LLMTwin) -> dict[str, Any]:
    """The server's HPA: replicas between the bounds, added when more requests wait per pod than the target."""
    scaling = twin.spec.serving.autoscaling
    metric = ENGINES[twin.spec.serving.engine].queue_metric
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(twin, names.server_name(twin.name), "server"),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Rollout",
                "name": names.server_name(twin.name),
            },
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": metric},
                        "target": {"type": "AverageValue", "averageValue": f"{scaling.target_queue_size:g}"},
                    },
                }
            ],
        },
    }


def serving_children(twin: LLMTwin, settings: PlatformSettings) -> list[dict[str, Any]]:
    return [
        service(twin, "stable"),
        service(twin, "canary"),
        analysis_template(twin),
        rollout(twin, settings),
        *([autoscaler(twin)] if twin.spec.serving.autoscaling.enabled else []),
        front_door(twin, settings),
        front_door_service(twin),
        front_door_monitor(twin),
        server_monitor(twin),
    ]
