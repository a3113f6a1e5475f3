"""`llmtwin up` and `llmtwin ask`: the twin on one machine."""

from __future__ import annotations

import json
import shutil
import signal
import threading
import urllib.request
from collections import Counter
from datetime import datetime
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from llmtwin.cli.common import (
    DataDir,
    TwinFile,
    err,
    exit_on_settings_error,
    free_port,
    load_local_twin,
    out,
)

REMOTE_POLL_SECONDS = 10.0
PROMOTION_POLL_SECONDS = 1.0
SecretsDir = typer.Option(
    None,
    "--secrets-dir",
    help="Credentials of sources that name an endpoint, one folder per Secret name and one file per key "
    "(<dir>/<secret>/accessKey), as the kubelet mounts Secrets. Default: <data-dir>/secrets.",
)


def up(
    file: Path = TwinFile,
    data_dir: Path | None = DataDir,
    secrets_dir: Path | None = SecretsDir,
    seed: Path | None = typer.Option(None, help="Copy this folder's files into the first source's inbox first."),
    once: bool = typer.Option(False, "--once", help="Ingest what is in the inbox, then exit (no watching)."),
    port: int = typer.Option(8765, help="Port of the twin's front door: /v1/chat/completions, /ask, /metrics."),
    model_port: int | None = typer.Option(None, help="Port of the model server (TGI's API). Default: a free one."),
) -> None:
    """Run the twin on this machine: watch the inbox, ingest every change, answer on /ask, retrain on drift.

    Files dropped into <data-dir>/inbox/<bucket>/ are ingested into Milvus Lite through the same
    ingest workflow a cluster runs; a restart resumes where it stopped. Every question answered is
    scored for drift (spec.drift); when the twin's rule fires, the retrain workflow runs here, and a
    version that passes the evaluation gate is served at once (no restart; `llmtwin status`,
    `promote`, `rollback`). Ctrl-C stops cleanly."""
    from llmtwin.config import EmbeddedSettings, load
    from llmtwin.embedded.state import running_server
    from llmtwin.embedded.twin import EmbeddedTwin, local_settings

    twin, data_dir = load_local_twin(file, data_dir)
    with exit_on_settings_error():
        settings = local_settings(data_dir, load(EmbeddedSettings), twin)
    if running_server(data_dir):
        err.print(f"[red]llmtwin up is already running for {data_dir} (see {data_dir / 'state.json'})[/]")
        raise typer.Exit(1)
    embedded = EmbeddedTwin(twin, data_dir, settings, secrets_dir)
    if seed:
        _seed_inbox(seed, embedded.inbox / twin.spec.sources[0].bucket / twin.spec.sources[0].prefix)
    err.print(f"[bold]{twin.namespace}/{twin.name}[/] inbox: {embedded.inbox}  vectors: {twin.spec.vector_store.uri}")
    outcomes = _catch_up(embedded)
    status = embedded.status.read()
    err.print(
        f"{dict(outcomes) or 'inbox already in sync'}; documents={status.get('documents', 0)} "
        f"chunks={status.get('chunks', 0)}"
    )
    if once:
        return
    _serve(embedded, settings, port, model_port)


def _seed_inbox(seed: Path, target: Path) -> None:
    """Copy the seed folder's files into the inbox (unchanged files are left alone: no re-ingest)."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in seed.rglob("*") if p.is_file()):
        dest = target / path.relative_to(seed)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists() or dest.read_bytes() != path.read_bytes():
            shutil.copyfile(path, dest)


def _catch_up(embedded) -> Counter[str]:
    """Ingest what changed while the twin was down, with a progress bar; the outcomes by kind."""
    with err.status("loading the embedding model and the vector store"):
        changes = embedded.pending_changes()
    outcomes: Counter[str] = Counter()
    with Progress(
        TextColumn("ingesting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=err,
    ) as progress:
        task = progress.add_task("", total=len(changes))

        def count(result: dict) -> None:
            outcomes[result["outcome"]] += 1
            if result["outcome"] in ("rejected", "failed", "dead-lettered"):
                where = f"{result.get('bucket', '')}/{result.get('key', '')}"
                progress.console.print(f"[yellow]{where}: {result['outcome']}: {result.get('reason')}")
            progress.update(task, advance=1, description=result.get("key", ""))

        embedded.on_result = count
        for change in changes:
            embedded.publish(change)
        embedded.sync()
    return outcomes


def _serve(embedded, settings, port: int, model_port: int | None) -> None:
    import uvicorn

    from llmtwin.embedded.serving import start_model_server
    from llmtwin.embedded.state import clear_state, write_state
    from llmtwin.frontdoor.answer import FrontDoor, Recorder
    from llmtwin.frontdoor.http import create_app
    from llmtwin.frontdoor.retrieve import Retriever

    twin = embedded.twin_with_status()
    with err.status(f"loading {twin.spec.base_model.id}"):
        model = start_model_server(twin, embedded.context.models, settings, model_port or free_port())
    # Every question onto the in-process queries topic, where the drift chain reads it.
    recorder = Recorder(twin, embedded.queue, settings.queries_topic)
    app = create_app(
        FrontDoor(twin, Retriever(twin, embedded.context.store()), model.endpoint, recorder), embedded.status.read
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    server.install_signal_handlers = lambda: None  # we own SIGINT/SIGTERM below
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    http = threading.Thread(target=server.run, daemon=True)
    http.start()
    observer = embedded.watch()

    def report(result: dict) -> None:
        err.print(
            f"{result['outcome']:>13} {result.get('bucket', '')}/{result.get('key', '')} "
            f"{result.get('chunks', '')} {result.get('reason', '')}"
        )

    embedded.on_result = report
    worker = threading.Thread(target=embedded.drain, args=(stop,), daemon=True)
    worker.start()
    drift = embedded.drift().run(settings.drift_evaluate_seconds, stop)
    promotions = threading.Thread(
        target=_follow_promotions, args=(embedded, settings, model, [embedded.twin, twin], stop), daemon=True
    )
    promotions.start()
    while not server.started and http.is_alive():
        stop.wait(0.1)
    write_state(embedded.data_dir, port)
    err.print(
        f"watching {embedded.inbox}\n"
        f"ask: `llmtwin ask -f ... QUESTION`, or any OpenAI client at http://127.0.0.1:{port}/v1 "
        f"(model server {model.endpoint}); metrics at /metrics; Ctrl-C to stop"
    )
    try:
        while not stop.wait(REMOTE_POLL_SECONDS):
            embedded.poll_remote()
    finally:
        observer.stop()
        observer.join(timeout=5)
        worker.join(timeout=60)  # finish the change in hand; queued ones are found again on restart
        for loop in drift:
            loop.join(timeout=5)  # a retrain in hand is resumed by its workspace on the next run
        server.should_exit = True
        http.join(timeout=10)
        model.stop()
        clear_state(embedded.data_dir)
        err.print("stopped")


def _follow_promotions(embedded, settings, model, twins: list, stop: threading.Event) -> None:
    """Promote what the gate passed, and serve production's adapter as soon as it changes (a promotion,
    `llmtwin promote`, `llmtwin rollback`): the retrain steps, the front door and the model server all
    follow status.modelVersion."""
    from mlflow.exceptions import MlflowException

    from llmtwin.embedded.promotion import LocalPromotion

    promotion = LocalPromotion(embedded.twin, embedded.status, settings.mlflow_tracking_uri)
    failure = ""
    while not stop.wait(PROMOTION_POLL_SECONDS):
        try:
            version = promotion.settle()
            if model.serve_version(twins[0], version):
                err.print(f"{'serving':>13} {f'version {version}' if version else 'the base model'}")
        except (MlflowException, OSError, ValueError) as exc:  # retried next second; the twin keeps serving
            if str(exc) != failure:
                err.print(f"[yellow]promotion: {exc}[/]")
            failure = str(exc)
            continue
        failure = ""
        for twin in twins:  # after the adapter is loaded: the front door never asks for one that is not
            twin.status.model_version = version


def _remote_answer(port: int, request: dict, on_text) -> dict:
    """Ask the running `llmtwin up`: text streamed to `on_text`, the whole answer returned."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/ask",
        data=json.dumps({**request, "stream": True}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=600) as response:
        for line in response:
            if not line.startswith(b"data:"):
                continue
            event = json.loads(line[5:])
            if "delta" in event:
                on_text(event["delta"])
            else:
                return event
    raise RuntimeError("the answer stream ended without the answer")


def _local_answer(twin, data_dir: Path, request: dict, on_text) -> dict:
    """No `llmtwin up` running: the same front door and model server, in this process, for one question."""
    from llmtwin.config import EmbeddedSettings, load
    from llmtwin.embedded.serving import start_model_server
    from llmtwin.embedded.twin import local_settings, status_file, step_context
    from llmtwin.frontdoor.answer import Answer, FrontDoor
    from llmtwin.frontdoor.http import AskRequest
    from llmtwin.frontdoor.retrieve import Retriever, source_filter

    with exit_on_settings_error():
        settings = local_settings(data_dir, load(EmbeddedSettings), twin)
    status = status_file(data_dir)
    twin.status.model_version = status.read().get("modelVersion") or twin.status.model_version
    context = step_context(twin, data_dir, settings, status)
    with err.status(f"loading {twin.spec.base_model.id}"):
        model = start_model_server(twin, context.models, settings, free_port())
    try:
        door = FrontDoor(twin, Retriever(twin, context.store()), model.endpoint)
        asked = AskRequest.model_validate(request)  # the same reading of the request as a running front door's
        flt = source_filter(asked.bucket, asked.key_prefix, asked.since, asked.until)
        for item in door.stream(asked.question, asked.top_k, flt):
            if isinstance(item, Answer):
                return item.wire()
            on_text(item)
    finally:
        model.stop()
    raise RuntimeError("no answer")


def ask(
    question: str = typer.Argument(..., help="The question."),
    file: Path = TwinFile,
    data_dir: Path | None = DataDir,
    top_k: int | None = typer.Option(None, "--top-k", help="Chunks to retrieve (default: spec.serving.gateway.topK)."),
    bucket: str | None = typer.Option(None, help="Only this source bucket."),
    key_prefix: str | None = typer.Option(None, help="Only objects whose key starts with this."),
    since: datetime | None = typer.Option(
        None, help="Only documents dated on or after this (a post's or front matter's date, else the file's)."
    ),
    until: datetime | None = typer.Option(None, help="Only documents dated before this."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole answer as JSON (nothing streamed)."),
) -> None:
    """Ask the twin: the answer in the author's voice, streamed as it is written, then its sources.

    Talks to a running `llmtwin up` for this twin; without one, loads the model in this process."""
    from llmtwin.embedded.state import running_server

    twin, data_dir = load_local_twin(file, data_dir)
    dates = {"since": since.isoformat() if since else None, "until": until.isoformat() if until else None}
    request = {"question": question, "top_k": top_k, "bucket": bucket, "key_prefix": key_prefix, **dates}
    port = running_server(data_dir)
    on_text = (lambda text: None) if as_json else (lambda text: out.print(text, end="", soft_wrap=True))
    if not as_json:
        out.print(f"[bold]{twin.spec.author.name}'s twin:[/] ", end="")
    result = _remote_answer(port, request, on_text) if port else _local_answer(twin, data_dir, request, on_text)
    if as_json:
        out.print_json(json.dumps(result))
        return
    out.print()
    table = Table(title=f"sources for: {question}", show_lines=True)
    for column in ("#", "score", "source", "passage"):
        table.add_column(column, overflow="fold")
    for i, hit in enumerate(result["sources"], 1):
        text = hit["text"] if len(hit["text"]) < 300 else hit["text"][:300] + "…"
        table.add_row(str(i), f"{hit['score']:.3f}", f"{hit['source']}\n{hit['title']}", text)
    out.print(table)
