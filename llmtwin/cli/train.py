"""`llmtwin train`: the twin's retrain workflow on this machine, with progress bars.

It submits the same `retrain` Workflow the event gateway submits on a drift alert and runs it with
the local runner, so the dataset, training, evaluation and registration are the very steps a
cluster runs. Status goes to `<data-dir>/status.json` (as under `llmtwin up`); MLflow is the one
`MLFLOW_TRACKING_URI` names, or a local store in the data directory when it is unset.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from llmtwin.cli.common import DataDir, TwinFile, err, exit_on_settings_error, load_local_twin
from llmtwin.config import EmbeddedSettings


def _describe(phase: str, details: dict[str, Any]) -> str:
    shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in details.items())
    return f"{phase}: {shown}"


@contextmanager
def progress_bars(total_steps: int) -> Iterator[tuple[Progress, Any]]:
    """A bar over the workflow's tasks, and one for the running task's phase (training steps, ...)."""
    from llmtwin.workflows.retrain.progress import listening

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=err) as progress:
        steps = progress.add_task("workflow", total=total_steps)
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
            yield progress, on_task


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
    from llmtwin.api.errors import SpecError
    from llmtwin.config import load
    from llmtwin.embedded.state import running_server
    from llmtwin.embedded.twin import local_settings, status_file, step_context
    from llmtwin.events.retrains import started
    from llmtwin.workflows.retrain.workspace import RetrainWorkspace
    from llmtwin.workflows.runner import LocalRunner, WorkflowFailed
    from llmtwin.workflows.templates import RETRAIN_STEPS, build_workflow

    twin, data_dir = load_local_twin(file, data_dir)
    if max_steps:
        twin.spec.training = twin.spec.training.model_copy(update={"max_steps": max_steps})
    if running_server(data_dir) and "://" not in twin.spec.vector_store.uri:
        err.print(
            f"[red]llmtwin up is running for {data_dir}: stop it first (Milvus Lite allows one process per file)[/]"
        )
        raise typer.Exit(1)
    data_dir.mkdir(parents=True, exist_ok=True)
    status = status_file(data_dir)
    twin.status.model_version = status.read().get("modelVersion") or twin.status.model_version
    with exit_on_settings_error():
        settings = local_settings(data_dir, load(EmbeddedSettings), twin)
    event_id = event_id or "manual-" + dt.datetime.now(dt.UTC).strftime("%Y%m%dt%H%M%S")
    workflow = build_workflow(twin, "retrain", {"event_id": event_id, "reason": reason}, f"train/{event_id}")
    workspace = RetrainWorkspace(data_dir / "workspaces" / workflow["metadata"]["name"])
    err.print(
        f"[bold]{twin.namespace}/{twin.name}[/] retrain {event_id} (rerun with --event-id {event_id} to resume)\n"
        f"workspace {workspace.root}  MLflow {settings.mlflow_tracking_uri}"
    )
    # Recorded as a dispatcher records a drift-started run; the exit handler or register ends it.
    status.report(twin, {"lastTraining": started(f"manual/{event_id}", workflow["metadata"]["name"]).wire()})
    context = step_context(twin, data_dir, settings, status)
    with progress_bars(len(RETRAIN_STEPS) + 1) as (progress, on_task):
        try:
            result = LocalRunner(context, data_dir / "workspaces", on_task=on_task).run(workflow)
        except WorkflowFailed as exc:
            progress.stop()
            err.print(f"[red]{exc.task} failed: {exc.cause}[/]")
            raise typer.Exit(2 if isinstance(exc.cause, SpecError) else 1) from exc

    registered = result.outputs["retrain-register"]
    promoted = registered["promoted"] == "true"
    colour = "green" if promoted else "yellow"
    err.print(
        f"[{colour}]version {registered['version']} {'promoted' if promoted else 'not promoted'}[/]: "
        f"{registered['reason']}\nreport: {workspace.report}"
    )
