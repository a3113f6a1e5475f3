"""`llmtwin frontdoor`: a twin's front door on a cluster (what the operator's front door Deployment runs)."""

from __future__ import annotations

import logging

import typer

from llmtwin.cli.common import exit_on_settings_error


def frontdoor(
    port: int = typer.Option(8080, help="HTTP port: /v1/chat/completions, /ask, /metrics, /healthz."),
    host: str = typer.Option("0.0.0.0", help="Address to bind."),
) -> None:
    """Serve a twin's front door: retrieve from its collection, prompt in its author's voice, generate with
    its model server (LLMTWIN_MODEL_SERVER), answer with sources. The twin comes from LLMTWIN_TWIN_FILE.
    Every question (its embedding, latency, answer id) and every POST /feedback goes to the queries topic
    (LLMTWIN_QUERIES_TOPIC on LLMTWIN_KAFKA_BOOTSTRAP), where the gateway's drift monitor reads it."""
    import uvicorn

    from llmtwin.config import FrontDoorSettings, load
    from llmtwin.corpus.store import store_for
    from llmtwin.events.broker import KafkaMessageProducer
    from llmtwin.frontdoor.answer import FrontDoor, Recorder, record_failed
    from llmtwin.frontdoor.http import create_app
    from llmtwin.frontdoor.retrieve import Retriever
    from llmtwin.secrets import SecretFiles
    from llmtwin.workflows.steps import load_twin

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with exit_on_settings_error():
        settings = load(FrontDoorSettings)
    twin = load_twin(settings.twin_file)
    endpoint = settings.model_server or twin.spec.serving.gateway.generation_endpoint
    # Without Kafka the front door would answer while the drift loop starves unseen: fail, and say why.
    try:
        producer = KafkaMessageProducer(settings.kafka_bootstrap, "llmtwin-frontdoor", on_error=record_failed)
    except Exception as exc:
        raise SystemExit(f"cannot reach Kafka at LLMTWIN_KAFKA_BOOTSTRAP={settings.kafka_bootstrap}: {exc}") from exc
    recorder = Recorder(twin, producer, settings.queries_topic)
    door = FrontDoor(twin, Retriever(twin, store_for(twin, SecretFiles(settings.secrets_dir))), endpoint, recorder)
    uvicorn.run(create_app(door, lambda: twin.status.wire()), host=host, port=port, log_level="warning")
