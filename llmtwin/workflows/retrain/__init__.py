"""The retrain workflow steps: dataset → train → evaluate → register, and fetch-adapter for serving.

Each step is one function the Argo container (`llmtwin step NAME`) and the local runner
(`llmtwin train`) both call; they hand files to each other through the workspace
(`workspace.py`). Parameters arrive as strings, as on a command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmtwin.workflows.retrain.workspace import RetrainWorkspace
from llmtwin.workflows.steps import StepContext, step


@step("retrain-dataset")
def retrain_dataset(context: StepContext, *, twin: str = "", event_id: str = "", reason: str = "") -> dict[str, Any]:
    from llmtwin.models.load import load_tokenizer, quiet_transformers
    from llmtwin.workflows.retrain.base import check_training_config
    from llmtwin.workflows.retrain.dataset import build_dataset

    quiet_transformers()
    base = context.models.resolve(context.twin.spec.base_model)
    check_training_config(context.twin, base)  # a spec that cannot train fails here, before any work
    workspace = RetrainWorkspace(context.workspace)
    tokenizer = load_tokenizer(base)
    manifest = build_dataset(context.twin, context.store(), tokenizer, workspace.dataset_dir)
    return {"dataset_hash": manifest["hash"], **{k: manifest["counts"][k] for k in ("train_examples", "eval_examples")}}


@step("retrain-train")
def retrain_train(
    context: StepContext, *, twin: str = "", event_id: str = "", reason: str = "", checkpoint_steps: str = ""
) -> dict[str, Any]:
    from llmtwin.workflows.retrain.train import DEFAULT_CHECKPOINT_STEPS, train_adapter

    base = context.models.resolve(context.twin.spec.base_model)
    workspace = RetrainWorkspace(context.workspace)
    result = train_adapter(context.twin, base, workspace, int(checkpoint_steps or DEFAULT_CHECKPOINT_STEPS))
    return result.summary()


@step("retrain-evaluate")
def retrain_evaluate(
    context: StepContext,
    *,
    twin: str = "",
    event_id: str = "",
    reason: str = "",
    style_samples: str = "8",
    grounded_questions: str = "4",
) -> dict[str, Any]:
    from llmtwin.models.adapters import download_adapter
    from llmtwin.workflows.retrain.evaluate import evaluate_candidate
    from llmtwin.workflows.retrain.registry import registered_model_name

    workspace = RetrainWorkspace(context.workspace)
    production = context.twin.status.model_version
    adapter = (
        download_adapter(
            context.settings.mlflow_tracking_uri,
            registered_model_name(context.twin),
            production,
            workspace.evaluate_dir / "production",
        )
        if production
        else None
    )
    base = context.models.resolve(context.twin.spec.base_model)
    report = evaluate_candidate(
        context.twin, context.store(), base, workspace, adapter, production, int(style_samples), int(grounded_questions)
    )
    return {"promoted": str(report["promoted"]).lower(), "reason": report["reason"]}


@step("retrain-register")
def retrain_register(context: StepContext, *, twin: str = "", event_id: str = "", reason: str = "") -> dict[str, Any]:
    from llmtwin.workflows.retrain.registry import register

    registration = register(
        context.twin,
        RetrainWorkspace(context.workspace),
        context.settings.mlflow_tracking_uri,
        context.status,
        event_id,
        reason,
    )
    return registration.outputs()


@step("fetch-adapter")
def fetch_adapter(
    context: StepContext, *, version: str = "", dest: str = "", model: str = "", twin: str = ""
) -> dict[str, Any]:
    """The serving pod's init container: a registered adapter version into `dest` (default: the workspace)."""
    from llmtwin.models.adapters import download_adapter
    from llmtwin.workflows.retrain.registry import registered_model_name

    version = version or context.twin.status.model_version or ""
    if not version:
        raise ValueError("fetch-adapter: no version given and the twin has no status.modelVersion")
    name = model or registered_model_name(context.twin)
    target = Path(dest) if dest else context.workspace / "adapter"
    path = download_adapter(context.settings.mlflow_tracking_uri, name, version, target)
    return {"adapter": str(path), "model": name, "version": version}


@step("retrain-finished")
def retrain_finished(context: StepContext, *, workflow: str = "", status: str = "") -> dict[str, Any]:
    """The retrain's exit handler (Argo's onExit, and the local runner's): a run that did not succeed is
    recorded as Failed, so it never holds the twin's single-flight. A success was recorded by
    retrain-register, with the version it registered."""
    from llmtwin.api.timestamps import now

    if status == "Succeeded":
        return {"result": "Succeeded"}
    context.status.report(
        context.twin, {"lastTraining": {"workflow": workflow, "finishedAt": now(), "result": "Failed"}}
    )
    return {"result": "Failed"}
