"""`llmtwin gateway`: the event gateway (what the gateway Deployment or Knative Service runs)."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import typer

from llmtwin.cli.common import exit_on_settings_error


def gateway(
    namespace: list[str] = typer.Option(
        [], "-n", "--namespace", help="Route events only to twins in these. [env LLMTWIN_GATEWAY_NAMESPACES]"
    ),
    port: int | None = typer.Option(None, help="HTTP port: webhook, CloudEvents, metrics. [env LLMTWIN_GATEWAY_PORT]"),
    group: str | None = typer.Option(None, help="Kafka consumer group. [env LLMTWIN_GATEWAY_GROUP]"),
    webhook_token_file: Path | None = typer.Option(
        None,
        help="File holding the Alertmanager webhook's bearer token (a mounted Secret). Without it /alertmanager "
        "answers 401 to everything. [env LLMTWIN_WEBHOOK_TOKEN_FILE]",
    ),
    coalesce_seconds: float | None = typer.Option(
        None,
        help="Events for one object within this window after a batch's first message become one ingest "
        "(default 0.3). [env LLMTWIN_GATEWAY_COALESCE_SECONDS]",
    ),
    max_body_bytes: int | None = typer.Option(
        None, min=1024, help="Larger HTTP bodies get 413. [env LLMTWIN_GATEWAY_MAX_BODY_BYTES]"
    ),
    submit_workers: int | None = typer.Option(
        None,
        min=1,
        help="Workflow creates in flight at once (default 16); the API server's create rate bounds throughput. "
        "[env LLMTWIN_GATEWAY_SUBMIT_WORKERS]",
    ),
    consumers: bool = typer.Option(
        True, help="Consume the Kafka topics. --no-consumers: HTTP only (Knative: a KafkaSource delivers)."
    ),
) -> None:
    """Run the event gateway: MinIO notifications -> ingest Workflows, drift alerts -> retrain Workflows.

    Kafka, topics and the object store come from the LLMTWIN_* environment (see docs/contracts.md);
    an option given here overrides its variable. Offsets are committed only after the Workflows are
    created; a malformed or unroutable message goes to the DLQ topic with its reason in the
    `llmtwin-dlq-reason` header."""
    from llmtwin.config import GatewaySettings, load
    from llmtwin.events.service import run_gateway

    with exit_on_settings_error():
        settings = load(GatewaySettings)
    given = {
        "namespaces": namespace or None,
        "port": port,
        "group": group,
        "webhook_token_file": webhook_token_file,
        "coalesce_seconds": coalesce_seconds,
        "max_body_bytes": max_body_bytes,
        "submit_workers": submit_workers,
    }
    settings = settings.model_copy(update={k: v for k, v in given.items() if v is not None})
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    run_gateway(settings, consumers, stop)
