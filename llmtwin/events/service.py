"""The gateway process: two Kafka consumer loops and the HTTP side, sharing one producer.

- objects topic -> `ObjectGateway` (ingest Workflows), alerts topic -> `AlertDispatcher` (retrain),
  queries topic -> `QueryGateway` -> the drift monitor (scores exported on /metrics, every few seconds);
- HTTP: the Alertmanager webhook (publishes to the alerts topic), CloudEvents delivery for the
  Knative variant (the same handlers), `/metrics`, `/healthz`.

With `consumers=False` only the HTTP side runs: the Knative deployment, where a KafkaSource does
the consuming and delivers each record as a CloudEvent.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid

from kubernetes.client import CoreV1Api

from llmtwin.config import GatewaySettings
from llmtwin.corpus.store import existing_store
from llmtwin.drift.monitor import DriftMonitor
from llmtwin.events.broker import KafkaMessageConsumer, KafkaMessageProducer
from llmtwin.events.gateway import AlertDispatcher, DeadLetters, ObjectGateway, consume, handled
from llmtwin.events.http import HttpConfig, create_app
from llmtwin.events.queries import QueryGateway, evaluate_every
from llmtwin.events.retrains import KubernetesRetrainLedger
from llmtwin.events.routing import KubernetesTwins, find_twin
from llmtwin.events.submit import Backoff, KubernetesSubmitter
from llmtwin.kube import api_client
from llmtwin.secrets import KubernetesSecrets

log = logging.getLogger(__name__)
HOST = "0.0.0.0"


def run_gateway(settings: GatewaySettings, consumers: bool, stop: threading.Event) -> None:
    """Run until `stop` is set; consumer loops commit only what they fully handled.

    `consumers=False`: HTTP only (Knative, where a KafkaSource does the consuming)."""
    import uvicorn

    token = settings.webhook_token_file.read_text().strip() if settings.webhook_token_file else ""
    api = api_client(settings.kubeconfig, pool_size=settings.submit_workers)
    twins = KubernetesTwins(api, settings.milvus_uri, settings.namespaces, stop=stop)
    submitter = KubernetesSubmitter(api, stop)
    producer = KafkaMessageProducer(settings.kafka_bootstrap)
    dead_letters = DeadLetters(producer, settings.dlq_topic)
    objects = ObjectGateway(
        twins, submitter, dead_letters, workers=settings.submit_workers, default_endpoint=settings.s3_endpoint
    )
    alerts = AlertDispatcher(KubernetesRetrainLedger(api), submitter, dead_letters)

    def twin(namespace: str, name: str):
        return find_twin(twins.twins(), namespace, name) or find_twin(twins.twins(refresh=True), namespace, name)

    core = CoreV1Api(api)
    # The reference sample comes from the twin's collection, opened with the token its spec names (read by name).
    monitor = DriftMonitor(twin, lambda t: existing_store(t, KubernetesSecrets(core, t.namespace)))
    queries = QueryGateway(monitor, dead_letters)
    handlers = {
        settings.objects_topic: objects.handle,
        settings.alerts_topic: alerts.handle,
        settings.queries_topic: queries.handle,
    }
    # The object gateway is consumed in stages: the next batch is polled and prepared while the API server
    # creates the last one's Workflows. HTTP deliveries (one CloudEvent each) are handled whole.
    stages = {topic: handled(handle) for topic, handle in handlers.items()} | {settings.objects_topic: objects.prepare}
    # The drift state is rebuilt from the queries topic itself: a group of this process's own reads it
    # from the start, so a restarted gateway has its windows and reference questions back.
    groups = {topic: settings.group for topic in handlers} | {
        settings.queries_topic: f"{settings.group}-drift-{uuid.uuid4().hex[:8]}"
    }

    loops = []
    if consumers:
        for topic, prepare in stages.items():
            loop = threading.Thread(
                target=_consume_until_stopped,
                args=(settings.kafka_bootstrap, topic, groups[topic], prepare, stop, settings),
                name=f"consume-{topic}",
                daemon=True,
            )
            loop.start()
            loops.append(loop)
    evaluate_every(monitor, settings.drift_evaluate_seconds, stop)

    http = HttpConfig(token, settings.alerts_topic, settings.objects_topic, settings.max_body_bytes)
    server = uvicorn.Server(
        uvicorn.Config(create_app(http, producer, handlers), host=HOST, port=settings.port, log_level="warning")
    )
    server.install_signal_handlers = lambda: None  # the caller owns SIGTERM/SIGINT and sets `stop`
    serving = threading.Thread(target=server.run, name="http", daemon=True)
    serving.start()
    log.info(
        "gateway up: kafka %s, topics %s, http :%d%s",
        settings.kafka_bootstrap,
        list(handlers),
        settings.port,
        "" if token else " (no webhook token: /alertmanager refuses everything)",
    )
    while not stop.wait(1.0):
        dead = [t.name for t in loops if not t.is_alive()] + ([] if serving.is_alive() else ["http"])
        if dead:
            stop.set()
            raise RuntimeError(f"gateway threads died: {dead}")
    server.should_exit = True
    for thread in (*loops, serving):
        thread.join(timeout=30)
    objects.close()
    producer.close()


def _consume_until_stopped(
    bootstrap: str, topic: str, group: str, prepare, stop: threading.Event, settings: GatewaySettings
) -> None:
    """Consume; after any failure (broker gone, DLQ unwritable) start over from the committed offsets.

    A fresh consumer rejoins the group and resumes at the last commit, so the failed batch is
    replayed (replays are idempotent) rather than skipped by a consumer whose position moved on.
    """
    delays = Backoff(initial=1.0, maximum=30.0).delays()
    while not stop.is_set():
        consumer = None
        try:
            consumer = KafkaMessageConsumer(bootstrap, topic, group)
            consume(
                consumer,
                topic,
                prepare,
                stop,
                max_records=settings.max_batch_messages,
                window=settings.coalesce_seconds,
            )
        except Exception as exc:
            delay = next(delays)
            log.error(
                "consumer for %s failed (%s); restarting from committed offsets in %.0fs",
                topic,
                exc,
                delay,
                exc_info=True,
            )
            stop.wait(delay)
        finally:
            if consumer is not None:
                with contextlib.suppress(Exception):  # closing may fail while the broker is away
                    consumer.close()
