"""What every subcommand shares: the twin file option and loader, consoles, clean exits on bad config."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console

from llmtwin.api.v1alpha1 import LLMTwin

err = Console(stderr=True)
out = Console()
TwinFile = typer.Option(..., "-f", "--file", help="An LLMTwin manifest (YAML).", exists=True, dir_okay=False)
DataDir = typer.Option(None, "--data-dir", help="Inbox, state and status live here. Default: .llmtwin/<twin name>.")


def format_validation_error(exc: ValidationError) -> str:
    return "\n".join(f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())


def load_twin_file(path: Path) -> LLMTwin:
    """Read and validate a twin manifest; exit with field-named errors when it is invalid."""
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    except yaml.YAMLError as exc:
        err.print(f"[red]{path}: not valid YAML:[/] {exc}")
        raise typer.Exit(2) from exc
    twins = [d for d in docs if isinstance(d, dict) and d.get("kind") == "LLMTwin"]
    if len(twins) != 1:
        err.print(f"[red]{path}: expected exactly one LLMTwin document, found {len(twins)}[/]")
        raise typer.Exit(2)
    try:
        return LLMTwin.model_validate(twins[0])
    except ValidationError as exc:
        err.print(f"[red]{path}: invalid LLMTwin[/]\n{format_validation_error(exc)}")
        raise typer.Exit(2) from exc


def load_local_twin(path: Path, data_dir: Path | None) -> tuple[LLMTwin, Path]:
    """A twin file run on this machine (`up`, `ask`, `train`, `status`, ...) and its data directory (default
    .llmtwin/<name>). An empty vectorStore.uri is the server LLMTWIN_MILVUS_URI names when it is set, else
    Milvus Lite in `<data dir>/milvus.db`."""
    from llmtwin.config import EmbeddedSettings, load
    from llmtwin.embedded.state import default_data_dir

    with exit_on_settings_error():
        settings = load(EmbeddedSettings)
    twin = load_twin_file(path)
    data_dir = Path(data_dir or default_data_dir(twin)).resolve()
    named = "milvus_uri" in settings.model_fields_set
    try:
        return twin.with_default_milvus(settings.milvus_uri if named else str(data_dir / "milvus.db")), data_dir
    except ValidationError as exc:
        err.print(f"[red]{path}: invalid LLMTwin[/]\n{format_validation_error(exc)}")
        raise typer.Exit(2) from exc


@contextlib.contextmanager
def exit_on_settings_error() -> Iterator[None]:
    """A bad environment variable ends the command with its name and problem, not a traceback."""
    from llmtwin.config import SettingsError

    try:
        yield
    except SettingsError as exc:
        err.print(f"[red]invalid setting: {exc}[/]")
        raise typer.Exit(2) from exc


def free_port() -> int:
    """A free TCP port on loopback, for a server this command starts beside another."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
