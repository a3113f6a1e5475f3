"""The MLflow side of a retrain: one experiment per twin, one run per retrain, one model version per run.

- Experiment `llmtwin/<namespace>/<name>`; the run logs the training and LoRA parameters, the loss
  curve and evaluation metrics, and as artifacts the adapter (`adapter/`), the dataset manifest
  (`dataset/`), the evaluation report (`evaluation/`) and the loss curve (`training/`).
- Registered model `llmtwin-<namespace>-<name>`: each run's adapter folder becomes a version with
  `create_model_version(source="runs:/<run>/adapter")` (MLflow 3's `register_model` wants a logged
  model; a plain adapter folder is what TGI and vLLM load). Tags: base_model, dataset_hash,
  code_version, twin_generation, promoted (passed the gate), reason (the gate's), event_id.
- A version that passed the gate gets the alias `candidate` (`llmtwin.models.versions`) and is handed
  to serving as the twin's `status.candidateVersion` (through the status reporter, as every step
  reports status); the operator's promotion takes it from there. A version the gate refused gets no
  alias: its `reason` tag says why.

The tracking URI comes from the settings (`MLFLOW_TRACKING_URI`), never from code.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llmtwin
from llmtwin.api import names
from llmtwin.api.timestamps import now
from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.models import versions
from llmtwin.workflows.retrain.workspace import RetrainWorkspace
from llmtwin.workflows.status import StatusReporter

METRICS_PER_CALL = 1000  # MLflow's log_batch limit


def experiment_name(twin: LLMTwin) -> str:
    return names.experiment_name(twin.namespace, twin.name)


def registered_model_name(twin: LLMTwin) -> str:
    return names.registered_model_name(twin.namespace, twin.name)


@functools.cache
def code_version() -> str:
    """The package version, plus the git commit when running from a checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(llmtwin.__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return llmtwin.__version__
    return f"{llmtwin.__version__}+g{commit}"


def client(tracking_uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def ensure_experiment(tracking_uri: str, twin: LLMTwin, artifact_location: str | None = None) -> str:
    """The twin's experiment id, created on first use (artifact_location only matters then)."""
    mlflow = client(tracking_uri)
    experiment = mlflow.get_experiment_by_name(experiment_name(twin))
    if experiment is not None:
        return experiment.experiment_id
    return mlflow.create_experiment(experiment_name(twin), artifact_location=artifact_location)


def _ensure_registered_model(mlflow: Any, name: str, twin: LLMTwin) -> None:
    from mlflow.exceptions import MlflowException

    try:
        mlflow.get_registered_model(name)
    except MlflowException:
        mlflow.create_registered_model(name, description=f"LoRA adapters of the LLM twin {twin.namespace}/{twin.name}")


def _params(twin: LLMTwin, manifest: dict[str, Any], event_id: str, reason: str) -> dict[str, str]:
    training = twin.spec.training
    lora = training.lora
    values: dict[str, Any] = {
        "base_model": twin.spec.base_model.id,
        "lora_r": lora.r,
        "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout,
        "lora_target_modules": ",".join(lora.target_modules),
        "learning_rate": training.learning_rate,
        "epochs": training.epochs,
        "max_steps": training.max_steps,
        "batch_size": training.batch_size,
        "gradient_accumulation_steps": training.gradient_accumulation_steps,
        "max_seq_length": training.max_seq_length,
        "seed": training.seed,
        "dataset_recipe": training.dataset.recipe,
        "dataset_hash": manifest["hash"],
        "dataset_train_examples": manifest["counts"]["train_examples"],
        "dataset_eval_examples": manifest["counts"]["eval_examples"],
        "gate_metric": training.gate.metric,
        "gate_min_improvement": training.gate.min_improvement,
        "event_id": event_id,
        "reason": reason,
    }
    return {k: str(v) for k, v in values.items()}


def _metrics(history: list[dict[str, float]], summary: dict[str, Any], report: dict[str, Any]) -> list[Any]:
    from mlflow.entities import Metric

    now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    metrics = [Metric("train_loss", h["loss"], now, int(h["step"])) for h in history]
    metrics += [Metric("learning_rate", h["lr"], now, int(h["step"])) for h in history]
    metrics.append(Metric("train_tokens_per_second", summary["tokens_per_second"], now, 0))
    for model, scores in report["models"].items():
        metrics += [Metric(f"{model}_{name}", value, now, 0) for name, value in scores.items() if math.isfinite(value)]
    if report["gate"]["improvement"] is not None:
        metrics.append(Metric("gate_improvement", report["gate"]["improvement"], now, 0))
    return metrics


@dataclass(frozen=True)
class Registration:
    version: str
    promoted: bool
    reason: str
    run_id: str

    def outputs(self) -> dict[str, str]:
        return {"version": self.version, "promoted": str(self.promoted).lower(), "reason": self.reason}


def _existing(mlflow: Any, name: str, event_id: str) -> Registration | None:
    """The version this event already registered (an Argo retry of the step must not add another)."""
    if not event_id or "'" in event_id:  # an id that cannot be quoted in a filter is not looked up
        return None
    from mlflow.exceptions import MlflowException

    try:
        found = mlflow.search_model_versions(f"name = '{name}' and tags.event_id = '{event_id}'")
    except MlflowException:
        return None
    if not found:
        return None
    version = max(found, key=lambda v: int(v.version))
    return Registration(
        version.version, version.tags.get("promoted") == "true", version.tags.get("reason", ""), version.run_id
    )


def log_run(
    mlflow: Any, twin: LLMTwin, workspace: RetrainWorkspace, tracking_uri: str, event_id: str, reason: str
) -> str:
    """One MLflow run with the retrain's parameters, metrics and artifacts; returns its id."""
    from mlflow.entities import Param

    manifest = json.loads(workspace.manifest.read_text())
    report = json.loads(workspace.report.read_text())
    summary = json.loads(workspace.train_summary.read_text())
    history = json.loads(workspace.loss_json.read_text())
    run = mlflow.create_run(
        ensure_experiment(tracking_uri, twin),
        run_name=f"retrain-{event_id or dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%SZ')}",
        tags={"llmtwin.twin": f"{twin.namespace}/{twin.name}", "llmtwin.event_id": event_id},
    )
    run_id = run.info.run_id
    mlflow.log_batch(run_id, params=[Param(k, v) for k, v in _params(twin, manifest, event_id, reason).items()])
    metrics = _metrics(history, summary, report)
    for start in range(0, len(metrics), METRICS_PER_CALL):
        mlflow.log_batch(run_id, metrics=metrics[start : start + METRICS_PER_CALL])
    mlflow.log_artifacts(run_id, str(workspace.adapter_dir), "adapter")
    mlflow.log_artifact(run_id, str(workspace.manifest), "dataset")
    mlflow.log_artifact(run_id, str(workspace.report), "evaluation")
    for artifact in (workspace.loss_json, workspace.loss_png, workspace.train_summary):
        mlflow.log_artifact(run_id, str(artifact), "training")
    mlflow.set_terminated(run_id)
    return run_id


def register(
    twin: LLMTwin,
    workspace: RetrainWorkspace,
    tracking_uri: str,
    status: StatusReporter,
    event_id: str = "",
    reason: str = "",
) -> Registration:
    """Log the run, create the model version, and hand a version that passed the gate to serving."""
    mlflow = client(tracking_uri)
    name = registered_model_name(twin)
    _ensure_registered_model(mlflow, name, twin)
    if existing := _existing(mlflow, name, event_id):
        return existing
    run_id = log_run(mlflow, twin, workspace, tracking_uri, event_id, reason)
    report = json.loads(workspace.report.read_text())
    promoted = bool(report["promoted"])
    version = mlflow.create_model_version(
        name,
        source=f"runs:/{run_id}/adapter",
        run_id=run_id,
        tags={
            "base_model": twin.spec.base_model.id,
            "dataset_hash": report["dataset_hash"],
            "code_version": code_version(),
            "twin_generation": str(twin.metadata.generation or ""),
            "promoted": str(promoted).lower(),
            "reason": report["reason"][:5000],
            "event_id": event_id,
        },
        description=report["reason"],
    )
    number = str(version.version)  # MLflow returns an int here; the twin's status fields are strings
    finished = {"finishedAt": now(), "result": "Succeeded", "version": number, "promoted": promoted}
    fields: dict[str, Any] = {"lastTraining": finished}
    if promoted:
        versions.mark_candidate(tracking_uri, name, number)
        fields["candidateVersion"] = number
    status.report(twin, fields)
    return Registration(number, promoted, report["reason"], run_id)
