"""`llmtwin up` and `llmtwin ask`: the twin on one machine."""

from __future__ import annotations

import json
import shutil
import signal
import threading
import urllib.request
from collections import Counter
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from llmtwin.cli.common import DataDir, TwinFile, err, exit_on_settings_error, load_twin_file, out

REMOTE_POLL_SECONDS = 10.0
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
    port: int = typer.Option(8765, help="Port of the local /ask, /status and /metrics endpoint (127.0.0.1)."),
) -> None:
    """Run the twin on this machine: watch the inbox, ingest every change, answer on /ask.

    Files dropped into <data-dir>/inbox/<bucket>/ are ingested into Milvus Lite through the same
    ingest workflow a cluster runs; a restart resumes where it stopped. Ctrl-C stops cleanly."""
    from llmtwin.config import PlatformSettings, load
    from llmtwin.embedded.state import default_data_dir, running_server
    from llmtwin.embedded.twin import EmbeddedTwin

    twin = load_twin_file(file)
    with exit_on_settings_error():
        settings = load(PlatformSettings)
    data_dir = data_dir or default_data_dir(twin)
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
    _serve(embedded, port)


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


def _serve(embedded, port: int) -> None:
    import uvicorn

    from llmtwin.embedded.state import clear_state, write_state
    from llmtwin.retrieval import Retriever
    from llmtwin.retrieval.http import create_app

    app = create_app(Retriever(embedded.twin), embedded.status.read)
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
    while not server.started and http.is_alive():
        stop.wait(0.1)
    write_state(embedded.data_dir, port)
    err.print(f"watching {embedded.inbox}; ask at http://127.0.0.1:{port}/ask; metrics at /metrics; Ctrl-C to stop")
    try:
        while not stop.wait(REMOTE_POLL_SECONDS):
            embedded.poll_remote()
    finally:
        observer.stop()
        observer.join(timeout=5)
        worker.join(timeout=60)  # finish the change in hand; queued ones are found again on restart
        server.should_exit = True
        http.join(timeout=10)
        clear_state(embedded.data_dir)
        err.print("stopped")


def ask(
    question: str = typer.Argument(..., help="The question."),
    file: Path = TwinFile,
    data_dir: Path | None = DataDir,
    top_k: int | None = typer.Option(None, "--top-k", help="Chunks to retrieve (default: spec.serving.gateway.topK)."),
    bucket: str | None = typer.Option(None, help="Only this source bucket."),
    key_prefix: str | None = typer.Option(None, help="Only objects whose key starts with this."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Ask the twin: the answer context with sources and scores (and an answer if a TGI endpoint is set)."""
    from llmtwin.embedded.state import default_data_dir, running_server

    twin = load_twin_file(file)
    port = running_server(data_dir or default_data_dir(twin))
    request = {"question": question, "top_k": top_k, "bucket": bucket, "key_prefix": key_prefix}
    if port:
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/ask",
            data=json.dumps(request).encode(),
            headers={"Content-Type": "application/json"},
        )
        result = json.loads(urllib.request.urlopen(req, timeout=120).read())
    else:
        from llmtwin.retrieval import Retriever, source_filter

        result = Retriever(twin).ask(question, top_k, source_filter(bucket, key_prefix)).wire()
    if as_json:
        out.print_json(json.dumps(result))
        return
    table = Table(title=f"{twin.spec.author.name}'s twin: {question}", show_lines=True)
    for column in ("#", "score", "source", "passage"):
        table.add_column(column, overflow="fold")
    for i, hit in enumerate(result["sources"], 1):
        text = hit["text"] if len(hit["text"]) < 400 else hit["text"][:400] + "…"
        table.add_row(str(i), f"{hit['score']:.3f}", f"{hit['source']}\n{hit['title']}", text)
    out.print(table)
    if result.get("answer"):
        out.print(f"[bold]Answer:[/] {result['answer']}")
