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
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from llmtwin.cli import TwinFile, load_twin_file

REMOTE_POLL_SECONDS = 10.0
out = Console()
err = Console(stderr=True)
DataDir = typer.Option(None, "--data-dir", help="Inbox, state and status live here. Default: .llmtwin/<twin name>.")


def up(
    file: Path = TwinFile,
    data_dir: Path | None = DataDir,
    seed: Path | None = typer.Option(None, help="Copy this folder's files into the first source's inbox first."),
    once: bool = typer.Option(False, "--once", help="Ingest what is in the inbox, then exit (no watching)."),
    port: int = typer.Option(8765, help="Port of the local /ask, /status and /metrics endpoint (127.0.0.1)."),
) -> None:
    """Run the twin on this machine: watch the inbox, ingest every change, answer on /ask.

    Files dropped into <data-dir>/inbox/<bucket>/ are ingested into Milvus Lite through the same
    ingest workflow a cluster runs; a restart resumes where it stopped. Ctrl-C stops cleanly."""
    from llmtwin.embedded import EmbeddedTwin, default_data_dir, running_server

    twin = load_twin_file(file)
    data_dir = data_dir or default_data_dir(twin)
    if running_server(data_dir):
        err.print(f"[red]llmtwin up is already running for {data_dir} (see {data_dir / 'state.json'})[/]")
        raise typer.Exit(1)
    embedded = EmbeddedTwin(twin, data_dir)
    if seed:
        target = embedded.inbox / twin.spec.sources[0].bucket / twin.spec.sources[0].prefix
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted(p for p in seed.rglob("*") if p.is_file()):
            dest = target / path.relative_to(seed)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists() or dest.read_bytes() != path.read_bytes():
                shutil.copyfile(path, dest)
    err.print(f"[bold]{twin.namespace}/{twin.name}[/] inbox: {embedded.inbox}  vectors: {twin.spec.vector_store.uri}")
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
    status = embedded.status.read()
    err.print(
        f"{dict(outcomes) or 'inbox already in sync'}; documents={status.get('documents', 0)} "
        f"chunks={status.get('chunks', 0)}"
    )
    if once:
        return
    _serve(embedded, port)


def _serve(embedded, port: int) -> None:
    import uvicorn

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
    embedded.write_state(port)
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
        embedded.clear_state()
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
    from llmtwin.embedded import default_data_dir, running_server

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
