"""`llmtwin`: one command line for the laptop and the cluster.

Each subcommand lives in its own module; this file assembles them and holds the small ones,
importing heavy modules (torch, Milvus) lazily so `llmtwin render` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
import yaml

from llmtwin.cli.common import TwinFile, err, exit_on_settings_error, load_twin_file

app = typer.Typer(
    name="llmtwin",
    help="Keep an LLM Twin alive: a LoRA-tuned model in one author's voice, answering from their documents.\n\n"
    "Laptop: `llmtwin up -f twin.yaml`. Cluster: `kubectl apply -f twin.yaml` with the operator installed.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def dump_yaml(objs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objs, sort_keys=False, width=120)


@app.command()
def validate(file: Path = TwinFile) -> None:
    """Check a twin manifest against the typed API and the checks the operator runs (errors name the field)."""
    from llmtwin.api.validation import spec_problems

    twin = load_twin_file(file)
    problems = spec_problems(twin)
    if problems:
        err.print("[red]" + "\n".join(map(str, problems)) + "[/]")
        raise typer.Exit(2)
    err.print(f"[green]{file}: LLMTwin {twin.namespace}/{twin.name} is valid[/]")


@app.command()
def render(
    file: Path = TwinFile,
    output: Path | None = typer.Option(None, "-o", "--output", help="Write one file per object here."),
) -> None:
    """Print every Kubernetes object the operator would create for this twin (no cluster needed).

    Platform endpoints come from the same LLMTWIN_* variables the operator reads."""
    from llmtwin.config import PlatformSettings, load
    from llmtwin.operator.builders import children

    twin = load_twin_file(file)
    with exit_on_settings_error():
        settings = load(PlatformSettings)
    objs = children(twin.with_default_milvus(settings.milvus_uri), settings)  # as the operator renders it
    if output is None:
        sys.stdout.write(dump_yaml(objs))
        return
    output.mkdir(parents=True, exist_ok=True)
    for obj in objs:
        target = output / f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        target.write_text(yaml.safe_dump(obj, sort_keys=False, width=120))
    err.print(f"wrote {len(objs)} objects to {output}/")


@app.command()
def crd(
    check: bool = typer.Option(False, "--check", help="Fail if the checked-in CRD differs from the models."),
    path: Path = typer.Option(Path("manifests/crds/llmtwin.dev_llmtwins.yaml"), help="CRD file."),
) -> None:
    """Generate the LLMTwin CRD from the typed models (llmtwin/api/v1alpha1.py)."""
    from llmtwin.api.crd import render_crd_yaml

    _write_generated(path, render_crd_yaml(), check, "llmtwin crd")


@app.command()
def dashboard(
    check: bool = typer.Option(False, "--check", help="Fail if the checked-in dashboard differs from the code."),
    path: Path = typer.Option(Path("manifests/grafana/dashboard.yaml"), help="ConfigMap file."),
) -> None:
    """Generate the Grafana dashboard ConfigMap (llmtwin/api/dashboard.py: panels on the metrics the code
    exports; Grafana's sidecar loads ConfigMaps labelled grafana_dashboard)."""
    from llmtwin.api.dashboard import config_map_yaml

    _write_generated(path, config_map_yaml(), check, "llmtwin dashboard")


def _write_generated(path: Path, generated: str, check: bool, command: str) -> None:
    if check:
        if not path.exists() or path.read_text() != generated:
            err.print(f"[red]{path} is out of date: run `{command}`[/]")
            raise typer.Exit(1)
        err.print(f"{path} matches the code")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(generated)
    err.print(f"wrote {path}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def step(ctx: typer.Context, name: str = typer.Argument(..., help="Registered step name.")) -> None:
    """Run one workflow step (the entrypoint of every Argo template container): NAME key=value ...

    Reads the LLMTWIN_TWIN_FILE, LLMTWIN_WORKSPACE, LLMTWIN_STATUS_SINK and LLMTWIN_SECRETS_DIR the
    rendered template sets."""
    from llmtwin.workflows.steps import main

    with exit_on_settings_error():
        code = main([name, *ctx.args])
    raise typer.Exit(code)


@app.command()
def operator(
    namespace: list[str] = typer.Option([], "-n", "--namespace", help="Watch only these namespaces."),
    liveness: str = typer.Option("http://0.0.0.0:8080/healthz", help="Liveness endpoint for kopf."),
) -> None:
    """Run the Kopf operator (what the operator Deployment runs); settings from LLMTWIN_* (llmtwin/config.py)."""
    import asyncio
    import logging

    import kopf

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with exit_on_settings_error():
        import llmtwin.operator.main  # noqa: F401  (reads the settings, registers the handlers)

    asyncio.run(
        kopf.operator(
            clusterwide=not namespace,
            namespaces=namespace,
            liveness_endpoint=liveness,
            standalone=True,
        )
    )


def _register() -> None:
    from llmtwin.cli.frontdoor import frontdoor
    from llmtwin.cli.gateway import gateway
    from llmtwin.cli.serve import serve
    from llmtwin.cli.train import train
    from llmtwin.cli.up import ask, up
    from llmtwin.cli.versions import promote, rollback, status

    app.command()(up)
    app.command()(ask)
    app.command()(status)
    app.command()(promote)
    app.command()(rollback)
    app.command()(serve)
    app.command()(train)
    app.command()(gateway)
    app.command()(frontdoor)


_register()
