"""`llmtwin train`: the twin's retrain workflow on this machine, with progress bars.

It submits the same `retrain` Workflow the event gateway submits on a drift alert and runs it with
the local runner, so the dataset, training, evaluation and registration are the very steps a
cluster runs. Status goes to `<data-dir>/status.json` (as under `llmtwin up`); MLflow is the one
`MLFLOW_TRACKING_URI` names, or a local store in the data directory when it is unset.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from llmtwin.cli import TwinFile, load_twin_file
from llmtwin.cli.up import DataDir

err = Console(stderr=True)


def _describe(phase: str, details: dict[str, Any]) -> str:
    shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in details.items())
    return f"{phase}: {shown}"


def train(
    file: Path = TwinFile,
    data_dir: Path | None = DataDir,
    max_steps: int | None = typer.Option(
        None, "--max-steps", min=1, help="Override spec.training.maxSteps (a short trial run)."
    ),
    event_id: str | None = typer.Option(
        None, "--event-id", help="Names the run and its workspace: the same id again resumes it. Default: new."
    ),
    reason: str = typer.Option("manual", help="Why this retrain runs (logged with the MLflow run)."),
) -> None:
    """Retrain the twin's LoRA adapter locally: dataset, fine-tune, evaluate against production, register."""
    from llmtwin.embedded import default_data_dir, running_server
    from llmtwin.settings import load
    from llmtwin.workflows.retrain.base import ConfigError
    from llmtwin.workflows.retrain.progress import listening
    from llmtwin.workflows.retrain.registry import ensure_experiment
    from llmtwin.workflows.retrain.workspace import RetrainWorkspace
    from llmtwin.workflows.runner import LocalRunner, WorkflowFailed
    from llmtwin.workflows.status import FileStatusReporter
    from llmtwin.workflows.templates import RETRAIN_STEPS, build_workflow

    twin = load_twin_file(file)
    if max_steps:
        twin.spec.training = twin.spec.training.model_copy(update={"max_steps": max_steps})
    data_dir = (data_dir or default_data_dir(twin)).resolve()
    if running_server(data_dir) and "://" not in twin.spec.vector_store.uri:
        err.print(
            f"[red]llmtwin up is running for {data_dir}: stop it first (Milvus Lite allows one process per file)[/]"
        )
        raise typer.Exit(1)
    data_dir.mkdir(parents=True, exist_ok=True)
    status = FileStatusReporter(data_dir / "status.json")
    # The steps find their status sink and MLflow through the environment, as in a pod.
    os.environ["LLMTWIN_STATUS_SINK"] = f"file:{status.path}"
    twin.status.model_version = status.read().get("modelVersion") or twin.status.model_version
    if "MLFLOW_TRACKING_URI" not in os.environ:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{data_dir / 'mlflow.db'}"
        ensure_experiment(os.environ["MLFLOW_TRACKING_URI"], twin, (data_dir / "mlartifacts").as_uri())
    settings = load()
    event_id = event_id or "manual-" + dt.datetime.now(dt.UTC).strftime("%Y%m%dt%H%M%S")
    workflow = build_workflow(twin, "retrain", {"event_id": event_id, "reason": reason}, f"train/{event_id}")
    workspace = RetrainWorkspace(data_dir / "workspaces" / workflow["metadata"]["name"])
    err.print(
        f"[bold]{twin.namespace}/{twin.name}[/] retrain {event_id} (rerun with --event-id {event_id} to resume)\n"
        f"workspace {workspace.root}  MLflow {settings.mlflow_tracking_uri}"
    )

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
    ) as progress:
        steps = progress.add_task("workflow", total=len(RETRAIN_STEPS))
        phase = progress.add_task("", total=None, visible=False)

        def on_task(task: str, event: str) -> None:
            if event == "started":
                progress.update(steps, description=task)
                progress.reset(phase, total=None, visible=False)
            elif event == "succeeded":
                progress.advance(steps)

        def on_phase(name: str, done: int, total: int, details: dict[str, Any]) -> None:
            progress.update(phase, description=_describe(name, details), completed=done, total=total, visible=True)

        with listening(on_phase):
            try:
                result = LocalRunner(twin, data_dir / "workspaces", settings, on_task=on_task).run(workflow)
            except WorkflowFailed as exc:
                progress.stop()
                err.print(f"[red]{exc.task} failed: {exc.cause}[/]")
                raise typer.Exit(2 if isinstance(exc.cause, ConfigError) else 1) from exc

    registered = result.outputs["retrain-register"]
    colour = "green" if registered["promoted"] == "true" else "yellow"
    err.print(
        f"[{colour}]version {registered['version']} "
        f"{'promoted' if registered['promoted'] == 'true' else 'not promoted'}[/]: {registered['reason']}\n"
        f"report: {workspace.report}"
    )
