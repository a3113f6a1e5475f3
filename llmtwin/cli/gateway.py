"""`llmtwin gateway`: the event gateway (what the gateway Deployment or Knative Service runs)."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import typer


def gateway(
    namespace: list[str] = typer.Option([], "-n", "--namespace", help="Route events only to twins in these."),
    port: int = typer.Option(8080, envvar="LLMTWIN_GATEWAY_PORT", help="HTTP port: webhook, CloudEvents, metrics."),
    group: str = typer.Option("llmtwin-gateway", envvar="LLMTWIN_GATEWAY_GROUP", help="Kafka consumer group."),
    webhook_token_file: Path | None = typer.Option(
        None,
        envvar="LLMTWIN_WEBHOOK_TOKEN_FILE",
        help="File holding the Alertmanager webhook's bearer token (a mounted Secret). "
        "Without it /alertmanager answers 401 to everything.",
    ),
    coalesce_seconds: float = typer.Option(
        0.3,
        envvar="LLMTWIN_GATEWAY_COALESCE_SECONDS",
        help="Events for one object within this window after a batch's first message become one ingest.",
    ),
    max_body_bytes: int = typer.Option(
        1024 * 1024, envvar="LLMTWIN_GATEWAY_MAX_BODY_BYTES", min=1024, help="Larger HTTP bodies get 413."
    ),
    submit_workers: int = typer.Option(
        16,
        envvar="LLMTWIN_GATEWAY_SUBMIT_WORKERS",
        min=1,
        help="Workflow creates in flight at once; the API server's create rate bounds throughput.",
    ),
    consumers: bool = typer.Option(
        True, help="Consume the Kafka topics. --no-consumers: HTTP only (Knative: a KafkaSource delivers)."
    ),
    kubeconfig: str | None = typer.Option(None, envvar="KUBECONFIG", help="Default: in-cluster config."),
) -> None:
    """Run the event gateway: MinIO notifications -> ingest Workflows, drift alerts -> retrain Workflows.

    Kafka, topics and the object store come from the LLMTWIN_* environment (see docs/contracts.md).
    Offsets are committed only after the Workflows are created; a malformed or unroutable message
    goes to the DLQ topic with its reason in the `llmtwin-dlq-reason` header."""
    from llmtwin.events.service import GatewayConfig, run_gateway
    from llmtwin.settings import load

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    token = webhook_token_file.read_text().strip() if webhook_token_file else ""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    config = GatewayConfig(
        settings=load(),
        webhook_token=token,
        port=port,
        group=group,
        namespaces=namespace,
        kubeconfig=kubeconfig,
        coalesce_seconds=coalesce_seconds,
        consumers=consumers,
        max_body_bytes=max_body_bytes,
        submit_workers=submit_workers,
    )
    run_gateway(config, stop)
