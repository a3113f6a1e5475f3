"""The event gateway: object events -> ingest Workflows, drift alerts -> retrain Workflows.

Both handlers take a batch of `Message`s (from Kafka, the in-process queue, or one HTTP CloudEvent)
and return only when every resulting submission and dead letter is durable; `consume` commits the
batch's offsets after that. A crash anywhere before the commit replays the batch, and replays create
nothing new because Workflow names are derived from the events (at-least-once delivery, exactly-once
in effect).

Coalescing: within one batch, only the newest event (MinIO's sequencer) per bucket/key is submitted.
A batch is what arrives within the coalescing window (`LLMTWIN_GATEWAY_COALESCE_SECONDS`, default
0.3 s) after its first message, up to 500 messages: a burst of writes to one key inside the window
becomes one ingest of the final state; a longer burst becomes one ingest per window, the last one
carrying the final etag. Ingests of one object hold an Argo mutex, so they never run concurrently.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from llmtwin.api.names import ALERT_ACTION_LABEL, RETRAIN_ACTION
from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.events.alerts import AlertEvent, parse_alert_record
from llmtwin.events.queue import Consumer, Message, Producer
from llmtwin.events.records import MalformedEvent, ObjectEvent, parse_minio_message
from llmtwin.events.retrains import RetrainLedger, retrain_decision, started
from llmtwin.events.routing import TwinDirectory, route
from llmtwin.events.submit import Stopped, SubmissionRejected, Submitter
from llmtwin.workflows.templates import RETRAIN_DEADLINE_SECONDS, build_workflow

log = logging.getLogger(__name__)

REASON_HEADER = "llmtwin-dlq-reason"
DETAIL_HEADER = "llmtwin-dlq-detail"
ORIGIN_HEADER = "llmtwin-dlq-origin"

CONSUMED = Counter("llmtwin_gateway_messages_consumed_total", "Messages handled by the gateway", ["topic"])
COALESCED = Counter("llmtwin_gateway_events_coalesced_total", "Object events superseded within a batch")
DEAD_LETTERED = Counter("llmtwin_gateway_dead_lettered_total", "Messages sent to the DLQ", ["topic", "reason"])
LAG = Gauge("llmtwin_gateway_consumer_lag", "Messages behind the end of the partition", ["topic", "partition"])
LATENCY = Histogram(
    "llmtwin_gateway_event_to_submission_seconds",
    "From the event (upload time or alert) to its durable Workflow submission",
    ["kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
ALERTS = Counter("llmtwin_gateway_alerts_total", "Alerts by what the dispatcher did", ["outcome"])
CLAIM_ATTEMPTS = 3


class DeadLetters:
    """Copies a message to the DLQ topic with why, and where it came from, in headers."""

    def __init__(self, producer: Producer, topic: str):
        self.producer = producer
        self.topic = topic

    def send(self, message: Message, reason: str, detail: str) -> None:
        DEAD_LETTERED.labels(message.topic, reason).inc()
        origin = f"{message.topic}/{message.partition}/{message.offset}"
        log.warning("dead-lettering %s: %s: %s", origin, reason, detail)
        headers = {
            **message.headers,
            REASON_HEADER: reason.encode(),
            DETAIL_HEADER: detail[:1000].encode(),
            ORIGIN_HEADER: origin.encode(),
        }
        self.producer.send(self.topic, message.value or b"", key=message.key, headers=headers)

    def flush(self) -> None:
        self.producer.flush()


def coalesce(events: list[tuple[ObjectEvent, Message]]) -> list[tuple[ObjectEvent, Message]]:
    """The newest event per (bucket, key): highest sequencer, then latest arrival."""
    newest: dict[tuple[str, str], tuple[tuple[int, int], ObjectEvent, Message]] = {}
    for arrival, (event, message) in enumerate(events):
        rank = (event.order, arrival)
        current = newest.get((event.bucket, event.key))
        if current is None or rank > current[0]:
            newest[(event.bucket, event.key)] = (rank, event, message)
    return [(event, message) for _, event, message in newest.values()]


def ingest_workflow(twin: LLMTwin, event: ObjectEvent) -> dict[str, Any]:
    params = {
        "bucket": event.bucket,
        "key": event.key,
        "event_type": event.event_type,
        "etag": event.etag,
        "version_id": event.version_id,
        "event_id": event.event_id,
    }
    ns, name = twin.namespace, twin.name
    return build_workflow(twin, "ingest", params, event.dedupe_key(ns, name), mutex=event.mutex(ns, name))


def retrain_workflow(twin: LLMTwin, alert: AlertEvent) -> dict[str, Any]:
    """One alert episode, one Workflow name: replicas and replays converge on the same run."""
    params = {"event_id": alert.fingerprint, "reason": f"drift alert: {alert.summary}"}
    return build_workflow(twin, "retrain", params, alert.dedupe_key())


class ObjectGateway:
    """MinIO notifications -> ingest Workflows for every twin whose source holds the object."""

    def __init__(
        self,
        twins: TwinDirectory,
        submitter: Submitter,
        dead_letters: DeadLetters,
        workers: int = 16,
        clock: Callable[[], float] = time.time,
    ):
        self.twins = twins
        self.submitter = submitter
        self.dead_letters = dead_letters
        self.clock = clock
        # Submissions of one batch go out in parallel: the API round trip dominates.
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="submit")

    def handle(self, messages: list[Message]) -> None:
        events: list[tuple[ObjectEvent, Message]] = []
        for message in messages:
            CONSUMED.labels(message.topic).inc()
            try:
                events += [(event, message) for event in parse_minio_message(message.value)]
            except MalformedEvent as exc:
                self.dead_letters.send(message, exc.reason, exc.detail)
        latest = coalesce(events)
        COALESCED.inc(len(events) - len(latest))
        jobs = []
        for event, message in latest:
            twins = route(self.twins.twins(), event) or route(self.twins.twins(refresh=True), event)
            if not twins:
                self.dead_letters.send(message, "unroutable", f"no twin has a source for {event.bucket}/{event.key}")
            jobs += [(twin, event, message) for twin in twins]
        for (_, _, message), rejected in zip(jobs, self.pool.map(self._submit, jobs), strict=True):
            if rejected:
                self.dead_letters.send(message, "rejected", str(rejected))
        self.dead_letters.flush()

    def _submit(self, job: tuple[LLMTwin, ObjectEvent, Message]) -> SubmissionRejected | None:
        twin, event, _ = job
        try:
            self.submitter.submit(ingest_workflow(twin, event))
        except SubmissionRejected as exc:
            return exc
        LATENCY.labels("ingest").observe(max(0.0, self.clock() - event.event_time))
        return None

    def close(self) -> None:
        self.pool.shutdown(wait=True)


class AlertDispatcher:
    """Firing drift alerts -> at most one retrain per twin at a time, none within the cooldown, one per
    alert episode; all decided from the twin's status (`retrains.py`), not from Workflow history."""

    def __init__(
        self,
        ledger: RetrainLedger,
        submitter: Submitter,
        dead_letters: DeadLetters,
        clock: Callable[[], float] = time.time,
    ):
        self.ledger = ledger
        self.submitter = submitter
        self.dead_letters = dead_letters
        self.clock = clock
        self._lock = threading.Lock()  # HTTP deliveries may arrive concurrently; other replicas race via claim

    def handle(self, messages: list[Message]) -> None:
        for message in messages:
            CONSUMED.labels(message.topic).inc()
            try:
                alert = parse_alert_record(message.value, message.headers, message.key)
            except MalformedEvent as exc:
                self.dead_letters.send(message, exc.reason, exc.detail)
                continue
            outcome = self.dispatch(alert, message)
            ALERTS.labels(outcome).inc()
            log.info("alert %s for %s/%s: %s", alert.fingerprint, alert.twin_namespace, alert.twin_name, outcome)
        self.dead_letters.flush()

    def dispatch(self, alert: AlertEvent, message: Message) -> str:
        if alert.status != "firing":
            return "resolved"
        if alert.action != RETRAIN_ACTION:
            self.dead_letters.send(message, "not-retrain", f"alert has no {ALERT_ACTION_LABEL}={RETRAIN_ACTION} label")
            return "dead-lettered"
        with self._lock:
            for _ in range(CLAIM_ATTEMPTS):
                twin = self.ledger.twin(alert.twin_namespace, alert.twin_name)
                if twin is None:
                    detail = f"no LLMTwin {alert.twin_namespace}/{alert.twin_name}"
                    self.dead_letters.send(message, "unknown-twin", detail)
                    return "dead-lettered"
                decision = retrain_decision(twin, alert.episode(), self.clock(), RETRAIN_DEADLINE_SECONDS)
                if decision != "submit":
                    return decision
                workflow = retrain_workflow(twin, alert)
                run = started(alert.episode(), workflow["metadata"]["name"])
                if self.ledger.claim(twin, run):
                    break
            else:
                return "in-flight"  # the twin kept changing under us: another dispatcher is at it
            try:
                self.submitter.submit(workflow)
            except SubmissionRejected as exc:
                self.ledger.fail(twin, run, f"retrain Workflow refused: {exc}")
                self.dead_letters.send(message, "rejected", str(exc))
                return "dead-lettered"
        LATENCY.labels("retrain").observe(max(0.0, self.clock() - message.timestamp) if message.timestamp else 0.0)
        return "submitted"


def poll_batch(consumer: Consumer, max_records: int, poll_timeout: float, window: float) -> list[Message]:
    """The next batch: after the first message, keep collecting for `window` seconds (the coalescing window)."""
    messages = consumer.poll(poll_timeout, max_records)
    deadline = time.monotonic() + window
    while messages and len(messages) < max_records and (left := deadline - time.monotonic()) > 0:
        messages += consumer.poll(left, max_records - len(messages))
    return messages


def consume(
    consumer: Consumer,
    topic: str,
    handle: Callable[[list[Message]], None],
    stop: threading.Event,
    max_records: int = 500,
    poll_timeout: float = 0.5,
    window: float = 0.0,
) -> None:
    """Poll, handle, commit, until `stop`. A handler error escapes uncommitted: the batch is replayed."""
    while not stop.is_set():
        messages = poll_batch(consumer, max_records, poll_timeout, window)
        for partition, behind in consumer.lag().items():
            LAG.labels(topic, str(partition)).set(behind)
        if not messages:
            continue
        try:
            handle(messages)
        except Stopped:
            return
        consumer.commit()
