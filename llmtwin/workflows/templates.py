"""Argo WorkflowTemplates for a twin, defined once with Hera.

The operator applies these templates; the event gateway submits `Workflow`s that reference them
(`build_workflow`); the local runner executes the very same rendered DAG in-process. Every container
runs `llmtwin step <name> key=value ...` (see `llmtwin.workflows.steps`), so the logic of a step
exists once.
"""

from __future__ import annotations

import hashlib
from typing import Any

from hera.workflows import DAG, Container, Env, Parameter, Resources, Workflow, WorkflowTemplate, models

from llmtwin.api.names import (
    DEDUPE_KEY_ANNOTATION,
    WorkflowKind,
    config_map_name,
    twin_labels,
    workflow_identity_name,
    workflow_template_name,
)
from llmtwin.api.v1alpha1 import ComputeSpec, LLMTwin
from llmtwin.config import PlatformSettings, StepSettings
from llmtwin.sources.credentials import secret_ref

CONFIG_MOUNT = "/etc/llmtwin"
TWIN_FILE = f"{CONFIG_MOUNT}/twin.json"
WORKSPACE_MOUNT = "/workspace"
SECRETS_MOUNT = "/var/run/secrets/llmtwin"

# `objects`: a JSON list of object changes ({bucket, key, event_type, etag, version_id, event_id}).
INGEST_PARAMS = ("twin", "objects")
INGEST_STEP = "ingest-objects"
RETRAIN_PARAMS = ("twin", "event_id", "reason")
# Retrain DAG: each step reads what the previous one left in the shared workspace volume.
RETRAIN_STEPS = ("retrain-dataset", "retrain-train", "retrain-evaluate", "retrain-register")
# Runs however the retrain ends (Argo's onExit): records a failure in status.lastTraining, so a crashed
# run never holds the twin's single-flight.
RETRAIN_EXIT = "retrain-finished"
RETRAIN_DEADLINE_SECONDS = 12 * 3600  # Argo stops a retrain this old; the dispatcher then counts it as ended
GPU_STEPS = {"retrain-train", "retrain-evaluate"}
REGISTER_OUTPUTS = ("version", "promoted", "reason")


def step_env(settings: PlatformSettings, workspace: str = WORKSPACE_MOUNT) -> list[dict[str, str]]:
    """What `llmtwin step` reads (`StepSettings`): the platform, then where the pod mounts its files."""
    values = {
        **settings.as_env(),
        StepSettings.env_name("twin_file"): TWIN_FILE,
        StepSettings.env_name("workspace"): workspace,
        StepSettings.env_name("status_sink"): "kubernetes",
        StepSettings.env_name("secrets_dir"): SECRETS_MOUNT,
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    return [{"name": k, "value": v} for k, v in values.items()]


def step_secrets(twin: LLMTwin, settings: PlatformSettings) -> list[str]:
    """Every Secret a step reads: each source's (else the platform's), and the Milvus token's and CA's."""
    sources = {secret_ref(s, settings.s3_secret).name for s in twin.spec.sources}
    return sorted(sources | set(twin.spec.vector_store.secret_names()))


def secret_volume_name(secret: str) -> str:
    # Secret names may be 253 characters; a volume name is a 63-character DNS label.
    return f"secret-{hashlib.sha1(secret.encode()).hexdigest()[:12]}"


def _env(settings: PlatformSettings) -> list[Env]:
    return [Env(name=e["name"], value=e["value"]) for e in step_env(settings)]


def _resources(compute: ComputeSpec, gpu: bool) -> Resources:
    return Resources(
        cpu_request=compute.cpu,
        memory_request=compute.memory,
        memory_limit=compute.memory,
        gpus=compute.gpu if gpu and compute.gpu else None,
    )


def _tolerations(compute: ComputeSpec) -> list[models.Toleration] | None:
    return [models.Toleration(**t.model_dump(exclude_none=True)) for t in compute.tolerations] or None


def _step(
    name: str,
    params: tuple[str, ...],
    twin: LLMTwin,
    settings: PlatformSettings,
    compute: ComputeSpec,
    *,
    gpu: bool = False,
    outputs: tuple[str, ...] = (),
    args: list[str] | None = None,
) -> Container:
    return Container(
        name=name,
        image=settings.workflow_image,
        command=["llmtwin", "step", name],
        args=args if args is not None else [f"{p}={{{{inputs.parameters.{p}}}}}" for p in params],
        inputs=[Parameter(name=p) for p in params],
        outputs=[
            Parameter(name=o, value_from=models.ValueFrom(path=f"{WORKSPACE_MOUNT}/outputs/{name}.{o}"))
            for o in outputs
        ]
        or None,
        env=_env(settings),
        resources=_resources(compute, gpu),
        node_selector=compute.node_selector or None,
        tolerations=_tolerations(compute),
        volume_mounts=[
            models.VolumeMount(name="twin-config", mount_path=CONFIG_MOUNT, read_only=True),
            models.VolumeMount(name="workspace", mount_path=WORKSPACE_MOUNT),
            *(
                models.VolumeMount(
                    name=secret_volume_name(secret), mount_path=f"{SECRETS_MOUNT}/{secret}", read_only=True
                )
                for secret in step_secrets(twin, settings)
            ),
        ],
        security_context=models.SecurityContext(
            run_as_non_root=True,
            allow_privilege_escalation=False,
            capabilities=models.Capabilities(drop=["ALL"]),
        ),
    )


def _template(
    twin: LLMTwin, settings: PlatformSettings, kind: WorkflowKind, params: tuple[str, ...]
) -> WorkflowTemplate:
    volumes = [
        models.Volume(name="twin-config", config_map=models.ConfigMapVolumeSource(name=config_map_name(twin.name))),
        # Each source is read with its own Secret (one mount per Secret), never another source's.
        *(
            models.Volume(name=secret_volume_name(secret), secret=models.SecretVolumeSource(secret_name=secret))
            for secret in step_secrets(twin, settings)
        ),
    ]
    return WorkflowTemplate(
        name=workflow_template_name(twin.name, kind),
        namespace=twin.namespace,
        labels=twin_labels(twin.name, kind),
        entrypoint=kind,
        service_account_name=workflow_identity_name(twin.name),
        arguments=[Parameter(name=p, value="") for p in params],
        volumes=volumes,
        pod_gc=models.PodGC(strategy="OnWorkflowSuccess"),
        ttl_strategy=models.TTLStrategy(seconds_after_success=3600, seconds_after_failure=86400),
    )


def _pass_through(params: tuple[str, ...]) -> dict[str, str]:
    return {p: f"{{{{workflow.parameters.{p}}}}}" for p in params}


def ingest_template(twin: LLMTwin, settings: PlatformSettings) -> dict[str, Any]:
    """A batch of object changes -> fetch, parse, clean, chunk, embed (across files), upsert/delete, in one pod."""
    with _template(twin, settings, "ingest", INGEST_PARAMS) as wt:
        wt.volumes.append(models.Volume(name="workspace", empty_dir=models.EmptyDirVolumeSource()))
        ingest = _step(INGEST_STEP, INGEST_PARAMS, twin, settings, ComputeSpec(cpu="1", memory="2Gi"))
        with DAG(name="ingest"):
            ingest(name=INGEST_STEP, arguments=_pass_through(INGEST_PARAMS))
    return wt.to_dict()


def retrain_template(twin: LLMTwin, settings: PlatformSettings) -> dict[str, Any]:
    """Dataset -> LoRA train -> evaluate vs production -> register; GPU only where it pays."""
    compute = twin.spec.training.resources
    with _template(twin, settings, "retrain", RETRAIN_PARAMS) as wt:
        # One volume shared by all steps; steps share the node placement so a RWO claim works.
        wt.volume_claim_templates = [
            models.PersistentVolumeClaim(
                metadata=models.ObjectMeta(name="workspace"),
                spec=models.PersistentVolumeClaimSpec(
                    access_modes=["ReadWriteOnce"],
                    resources=models.VolumeResourceRequirements(requests={"storage": "20Gi"}),
                ),
            )
        ]
        containers = [
            _step(
                name,
                RETRAIN_PARAMS,
                twin,
                settings,
                compute,
                gpu=name in GPU_STEPS,
                outputs=REGISTER_OUTPUTS if name == "retrain-register" else (),
            )
            for name in RETRAIN_STEPS
        ]
        _step(
            RETRAIN_EXIT,
            (),
            twin,
            settings,
            ComputeSpec(cpu="100m", memory="256Mi"),
            args=["workflow={{workflow.name}}", "status={{workflow.status}}"],
        )
        wt.on_exit = RETRAIN_EXIT
        wt.active_deadline_seconds = RETRAIN_DEADLINE_SECONDS
        with DAG(name="retrain"):
            previous = None
            for container in containers:
                task = container(name=container.name, arguments=_pass_through(RETRAIN_PARAMS))
                if previous is not None:
                    previous >> task
                previous = task
    return wt.to_dict()


def workflow_templates(twin: LLMTwin, settings: PlatformSettings) -> list[dict[str, Any]]:
    return [ingest_template(twin, settings), retrain_template(twin, settings)]


def workflow_name(twin: LLMTwin, kind: WorkflowKind, dedupe_key: str) -> str:
    """Deterministic name: a replayed event maps to the same Workflow (create -> AlreadyExists)."""
    digest = hashlib.sha1(dedupe_key.encode()).hexdigest()[:12]
    return f"{twin.name[:40].rstrip('-')}-{kind}-{digest}"


def build_workflow(
    twin: LLMTwin,
    kind: WorkflowKind,
    params: dict[str, str],
    dedupe_key: str,
    mutex: str | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A `Workflow` submission that runs the twin's template with these parameters (and `annotations`).

    `mutex`: Workflows holding the same mutex run one at a time, in creation order (Argo
    synchronization); a twin's ingests share one, so two ingests of an object never run at once.
    """
    expected = INGEST_PARAMS if kind == "ingest" else RETRAIN_PARAMS
    unknown = set(params) - set(expected)
    if unknown:
        raise ValueError(f"unknown {kind} workflow parameters: {sorted(unknown)}")
    values = {"twin": twin.name, **params}
    workflow = Workflow(
        name=workflow_name(twin, kind, dedupe_key),
        namespace=twin.namespace,
        labels=twin_labels(twin.name, kind),
        annotations={DEDUPE_KEY_ANNOTATION: dedupe_key[:1024], **(annotations or {})},
        workflow_template_ref=models.WorkflowTemplateRef(name=workflow_template_name(twin.name, kind)),
        arguments=[Parameter(name=p, value=values.get(p, "")) for p in expected],
        synchronization=models.Synchronization(mutexes=[models.Mutex(name=mutex)]) if mutex else None,
    )
    return workflow.to_dict()


def workflow_parameters(workflow: dict[str, Any]) -> dict[str, str]:
    """A Workflow's arguments, name -> value."""
    return {p["name"]: str(p.get("value", "")) for p in workflow["spec"].get("arguments", {}).get("parameters", [])}
