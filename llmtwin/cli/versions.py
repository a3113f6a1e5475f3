"""`llmtwin status`, `llmtwin promote`, `llmtwin rollback`: the twin's versions on this machine.

They read and write `<data-dir>/status.json` and the MLflow registry `llmtwin up` uses; a running
`llmtwin up` loads the new production adapter within a second, without a restart.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from llmtwin.cli.common import DataDir, TwinFile, err, exit_on_settings_error, load_local_twin, out


def _promotion(file: Path, data_dir: Path | None):
    from llmtwin.config import EmbeddedSettings, load
    from llmtwin.embedded.promotion import LocalPromotion
    from llmtwin.embedded.twin import local_settings, status_file

    twin, data_dir = load_local_twin(file, data_dir)
    with exit_on_settings_error():
        settings = local_settings(data_dir, load(EmbeddedSettings), twin)
    return LocalPromotion(twin, status_file(data_dir), settings.mlflow_tracking_uri)


def promote(
    version: str = typer.Argument(..., help="The MLflow model version to serve (see `llmtwin status`)."),
    file: Path = TwinFile,
    data_dir: Path | None = DataDir,
) -> None:
    """Serve VERSION as production now (a human override of the evaluation gate)."""
    from llmtwin.embedded.promotion import UnknownVersion

    try:
        _promotion(file, data_dir).promote(version, "promoted by hand (llmtwin promote)")
    except UnknownVersion as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    err.print(f"version {version} is production")


def rollback(file: Path = TwinFile, data_dir: Path | None = DataDir) -> None:
    """Serve the version production had before the current one (the base model if none); the current one is
    marked rejected and never promoted again by the gate."""
    from llmtwin.embedded.promotion import UnknownVersion

    try:
        previous = _promotion(file, data_dir).rollback()
    except UnknownVersion as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    err.print(f"{f'version {previous}' if previous else 'the base model'} is production")


def status(
    file: Path = TwinFile,
    data_dir: Path | None = DataDir,
    as_json: bool = typer.Option(False, "--json", help="Print the status file as JSON."),
) -> None:
    """The twin's versions (production, candidate, rejected), conditions, corpus and last retrain."""
    promotion = _promotion(file, data_dir)
    current = promotion.current()
    if as_json:
        out.print_json(json.dumps(promotion.status.read()))
        return
    twin = promotion.twin
    out.print(f"[bold]{twin.namespace}/{twin.name}[/]  base model {twin.spec.base_model.id}")
    out.print(f"production: {f'version {current.model_version}' if current.model_version else 'the base model'}")
    pending = current.promoting_version
    out.print(f"candidate:  {current.candidate_version or '-'}{' (waiting for promotion)' if pending else ''}")
    for rejected in current.rejected_versions:
        out.print(f"rejected:   version {rejected.version} at {rejected.rejected_at}: {rejected.reason}")
    out.print(f"corpus:     {current.documents or 0} documents, {current.chunks or 0} chunks")
    if training := current.last_training:
        version = f", version {training.version}" if training.version else ""
        out.print(f"retrain:    {training.decision} ({training.episode}, started {training.started_at}{version})")
    if current.conditions:
        table = Table("condition", "status", "reason", "message", title="conditions")
        for condition in current.conditions:
            table.add_row(condition.type, condition.status, condition.reason, condition.message)
        out.print(table)
