"""`llmtwin serve`: the model server (TGI's API on transformers + peft) for laptops, CPU clusters, tests."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from llmtwin.cli.common import err, exit_on_settings_error, load_twin_file


def _adapters(values: list[str]) -> dict[str, str]:
    adapters = {}
    for value in values:
        name, sep, source = value.partition("=")
        if not sep or not name or not source:
            raise typer.BadParameter(f"{value!r}: expected NAME=FOLDER or NAME=models:/<registered model>/<version>")
        adapters[name] = source
    return adapters


def serve(
    model: str | None = typer.Option(
        None, "--model", help="Base model: a folder, a .gguf file, s3://bucket/prefix or a hub id. Default: the twin's."
    ),
    file: Path | None = typer.Option(
        None, "-f", "--file", exists=True, dir_okay=False, help="An LLMTwin: its baseModel and serving limits."
    ),
    adapter: list[str] = typer.Option(
        [], "--adapter", help="NAME=FOLDER or NAME=models:/<model>/<version>; repeatable. More load at run time."
    ),
    host: str = typer.Option("0.0.0.0", help="Address to bind."),
    port: int = typer.Option(8080, help="Port (TGI's default in its container is 80; the Rollout uses 8080)."),
    max_input_tokens: int | None = typer.Option(None, help="Longest prompt (default: the twin's, else 2048)."),
    max_total_tokens: int | None = typer.Option(None, help="Prompt + generation (default: the twin's, else 4096)."),
    max_new_tokens: int | None = typer.Option(None, help="Generation length when a request sets none."),
    max_batch: int = typer.Option(8, min=1, help="Requests generated together in one batch."),
) -> None:
    """Serve a model with TGI's HTTP API (/generate, /generate_stream, /v1/chat/completions, /info, /metrics).

    LoRA adapters are chosen per request (`adapter_id`, or OpenAI `model`) and can be loaded at run time
    with POST /v1/load_lora_adapter {"lora_name", "lora_path"} (a folder or models:/<model>/<version>)."""
    from llmtwin.api.errors import SpecError
    from llmtwin.api.v1alpha1 import BaseModelSpec
    from llmtwin.config import ServeSettings, load
    from llmtwin.models.resolve import ModelResolver
    from llmtwin.secrets import SecretFiles
    from llmtwin.serving.api import ServerLimits
    from llmtwin.serving.server import EngineOptions, serve_forever, start_engine
    from llmtwin.sources.objects import ObjectStores

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with exit_on_settings_error():
        settings = load(ServeSettings)
    twin = load_twin_file(file) if file else None
    if twin is None and model is None:
        raise typer.BadParameter("give --model, or -f with a twin whose baseModel to serve")
    spec = twin.spec.base_model if twin else BaseModelSpec(id=model)
    if twin and model:
        spec = spec.model_copy(update={"id": model})
    serving = twin.spec.serving if twin else None
    limits = ServerLimits(
        model_id=spec.id,
        max_input_tokens=max_input_tokens or (serving.max_input_tokens if serving else 2048),
        max_total_tokens=max_total_tokens or (serving.max_total_tokens if serving else 4096),
        max_new_tokens=max_new_tokens or (serving.max_new_tokens if serving else 256),
    )
    objects = ObjectStores(settings.s3_endpoint, settings.s3_secret, SecretFiles(settings.secrets_dir))
    try:
        with err.status(f"loading {spec.id}"):
            resolved = ModelResolver(settings.model_cache, objects).resolve(spec)
            engine = start_engine(
                resolved,
                _adapters(adapter),
                settings.model_cache,
                settings.mlflow_tracking_uri,
                EngineOptions(max_batch),
            )
    except SpecError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    err.print(f"serving {spec.id} ({resolved.origin}: {resolved.folder}) on http://{host}:{port}")
    serve_forever(engine, limits, host, port)
