"""The event gateway: object events -> ingest Workflows, drift alerts -> retrain Workflows.

Both handlers take a batch of `Message`s (from Kafka, the in-process queue, or one HTTP CloudEvent)
and return only when every resulting submission and dead letter is durable; `consume` commits the
batch's offsets after that. A crash anywhere before the commit replays the batch, and replays create
nothing new because Workflow names are derived from the events (at-least-once delivery, exactly-once
in effect). The object gateway also comes in stages (`prepare`, then the batch's `start` and `wait`), so
that `consume` polls and prepares the next batch while the API server is still creating the Workflows
of the one before (most of a batch's time is that wait).

Coalescing: within one batch, only the newest event (MinIO's sequencer) per bucket/key is submitted.
A batch is what arrives within the coalescing window (`LLMTWIN_GATEWAY_COALESCE_SECONDS`, default
0.3 s) after its first message, up to 500 messages: a burst of writes to one key inside the window
becomes one ingest of the final state; a longer burst becomes one ingest per window, the last one
carrying the final etag.

Batching: a twin's objects of one batch become ceil(n / spec.ingest.batchSize) ingest Workflows, each
carrying its list of objects (sorted, so the same events make the same Workflows) and named from their
events. A replay may split events differently from the first delivery (a crash between submitting and
committing, then a poll that returns more): so when a batch does not continue where the gateway's last
batch of that partition ended under its consumer's current assignment (after a start, a rebalance, a
failed batch), the gateway first asks the API which events the twin's ingest Workflows already carry
(their `llmtwin.dev/event-ids` annotations, in one metadata-only list per twin and assignment), and
submits only the others. Each event is thus submitted once. A twin's ingests hold one
Argo mutex: they run one at a time, so two ingests of one object never run at once.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from prometheus_client import Counter, Gauge, Histogram

from llmtwin.api.names import ALERT_ACTION_LABEL, EVENT_IDS_ANNOTATION, KIND_LABEL, RETRAIN_ACTION, TWIN_LABEL
from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.events.alerts import AlertEvent, parse_alert_record
from llmtwin.events.queue import Consumer, Message, Positions, Producer, next_positions
from llmtwin.events.records import MalformedEvent, ObjectEvent, parse_minio_message
from llmtwin.events.retrains import RetrainLedger, retrain_decision, started
from llmtwin.events.routing import TwinDirectory, route
from llmtwin.events.submit import Stopped, SubmissionRejected, Submitter
from llmtwin.sources.changes import ObjectChange, encode_changes
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
INGEST_LATENCY = LATENCY.labels("ingest")  # one label lookup, not one per event
ALERTS = Counter("llmtwin_gateway_alerts_total", "Alerts by what the dispatcher did", ["outcome"])
CLAIM_ATTEMPTS = 3
Replay = Literal["assigned", "jumped"]  # why a batch may hold events a Workflow already carries
IN_FLIGHT_POLL_SECONDS = 0.01  # how long `consume` waits for the next batch while one is in flight


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


def unroutable(event: ObjectEvent) -> str:
    where = f"{event.bucket}/{event.key}"
    if not event.origin:
        return f"no twin has a source for {where}"
    # MinIO names itself by MINIO_SERVER_URL, else by its own address (a pod IP behind a Service).
    return (
        f"no twin has a source for {where} on {event.origin} (set MINIO_SERVER_URL on that MinIO to the endpoint"
        " the twins name, or LLMTWIN_S3_ENDPOINT for sources that name none)"
    )


def ingest_batches(twin: LLMTwin, events: list[ObjectEvent]) -> list[list[ObjectEvent]]:
    """The twin's events in Workflow-sized batches: sorted by object, so the same events always make the
    same batches (and a replay the same Workflow names), at most `spec.ingest.batchSize` each."""
    ordered = sorted(events, key=lambda e: (e.bucket, e.key, e.order))
    size = twin.spec.ingest.batch_size
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def ingest_mutex(twin: LLMTwin) -> str:
    """The Argo mutex a twin's ingests share: they run one at a time, so two ingests of one object never
    overlap (and a Milvus collection has one writer)."""
    digest = hashlib.sha1(f"{twin.namespace}/{twin.name}".encode()).hexdigest()[:20]
    return f"llmtwin-ingest-{digest}"


def ingest_workflow(twin: LLMTwin, events: list[ObjectEvent]) -> dict[str, Any]:
    """One Workflow for a batch of object events; its name derives from the events' own dedupe keys."""
    changes = [ObjectChange(e.bucket, e.key, e.event_type, e.etag, e.version_id, e.event_id) for e in events]
    ns, name = twin.namespace, twin.name
    keys = "\n".join(e.dedupe_key(ns, name) for e in events)
    dedupe_key = f"{ns}/{name}/{len(events)} objects/{hashlib.sha1(keys.encode()).hexdigest()}"
    carried = {EVENT_IDS_ANNOTATION: ",".join(e.event_id for e in events)}
    params = {"objects": encode_changes(changes)}
    return build_workflow(twin, "ingest", params, dedupe_key, mutex=ingest_mutex(twin), annotations=carried)


def retrain_workflow(twin: LLMTwin, alert: AlertEvent) -> dict[str, Any]:
    """One alert episode, one Workflow name: replicas and replays converge on the same run."""
    params = {"event_id": alert.fingerprint, "reason": f"drift alert: {alert.summary}"}
    return build_workflow(twin, "retrain", params, alert.dedupe_key())


@dataclass
class Job:
    """One ingest Workflow to create, the events it carries and the messages they came in."""

    workflow: dict[str, Any]
    events: list[ObjectEvent]
    messages: list[Message]


class ObjectBatch:
    """One batch's Workflows and dead letters, built but not sent: `start` sends them, `wait` returns once all
    are durable (dead-lettering a Workflow the API refused) and raises what failed otherwise."""

    def __init__(
        self,
        gateway: ObjectGateway,
        routed: list[tuple[LLMTwin, list[tuple[ObjectEvent, Message]]]],
        undeliverable: list[tuple[Message, str, str]],
        replay: Replay | None,
    ):
        self.gateway = gateway
        self.routed = routed
        self.undeliverable = undeliverable  # (message, reason, detail)
        self.replay = replay
        # A possible replay asks the API what exists only at `start`, once the batch before it is durable.
        self.jobs = None if replay else gateway.jobs(routed, None)
        self.submissions: list[tuple[Job, Future[SubmissionRejected | None]]] = []

    def start(self) -> None:
        for message, reason, detail in self.undeliverable:
            self.gateway.dead_letters.send(message, reason, detail)
        jobs = self.jobs if self.jobs is not None else self.gateway.jobs(self.routed, self.replay)
        # Submissions of one batch go out in parallel: the API round trip dominates.
        self.submissions = [(job, self.gateway.pool.submit(self.gateway.submit, job)) for job in jobs]

    def wait(self) -> None:
        for job, submission in self.submissions:
            rejected = submission.result()
            if rejected:
                for message in job.messages:
                    self.gateway.dead_letters.send(message, "rejected", str(rejected))
        self.gateway.dead_letters.flush()


class ObjectGateway:
    """MinIO notifications -> ingest Workflows for every twin whose source holds the object."""

    def __init__(
        self,
        twins: TwinDirectory,
        submitter: Submitter,
        dead_letters: DeadLetters,
        workers: int = 16,
        clock: Callable[[], float] = time.time,
        default_endpoint: str = "",
    ):
        """`default_endpoint`: the platform's MinIO (LLMTWIN_S3_ENDPOINT), for sources that name none; ""
        (`llmtwin up`) routes by bucket alone."""
        self.twins = twins
        self.default_endpoint = default_endpoint
        self.submitter = submitter
        self.dead_letters = dead_letters
        self.clock = clock
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="submit")
        # What this gateway knows under its consumer's current partition assignment (all of it is dropped at a
        # rebalance): where each partition's last prepared batch ended, and the events each twin's Workflows
        # carried when it last asked.
        self._assignment = 0
        self._next_offsets: dict[tuple[str, int], int] = {}  # (topic, partition) -> the offset that follows
        self._carried: dict[tuple[str, str], set[str]] = {}  # (namespace, twin) -> event ids

    def handle(self, messages: list[Message]) -> None:
        """Handle one batch to the end: every Workflow and dead letter durable on return."""
        batch = self.prepare(messages)
        batch.start()
        batch.wait()

    def prepare(self, messages: list[Message]) -> ObjectBatch:
        """Parse, coalesce, route and build the batch's Workflows, sending nothing: `consume` does this while
        the previous batch's creates are in flight."""
        events: list[tuple[ObjectEvent, Message]] = []
        undeliverable: list[tuple[Message, str, str]] = []
        for topic, count in collections.Counter(m.topic for m in messages).items():
            CONSUMED.labels(topic).inc(count)
        for message in messages:
            try:
                events += [(event, message) for event in parse_minio_message(message.value)]
            except MalformedEvent as exc:
                undeliverable.append((message, exc.reason, exc.detail))
        latest = coalesce(events)
        COALESCED.inc(len(events) - len(latest))
        by_twin: dict[tuple[str, str], tuple[LLMTwin, list[tuple[ObjectEvent, Message]]]] = {}
        for event, message in latest:
            twins = self._route(event, refresh=False) or self._route(event, refresh=True)
            if not twins:
                undeliverable.append((message, "unroutable", unroutable(event)))
            for twin in twins:
                by_twin.setdefault((twin.namespace, twin.name), (twin, []))[1].append((event, message))
        replay = self._may_repeat(messages)
        for position, offset in next_positions(messages).items():
            self._next_offsets[position] = max(self._next_offsets.get(position, 0), offset)
        return ObjectBatch(self, list(by_twin.values()), undeliverable, replay)

    def jobs(self, routed: list[tuple[LLMTwin, list[tuple[ObjectEvent, Message]]]], replay: Replay | None) -> list[Job]:
        """Each twin's events as Workflows of its batch size; on a possible replay, without the events its
        existing Workflows already carry."""
        jobs = []
        for twin, events in routed:
            if replay:
                done = self._carried_events(twin, fresh=replay == "jumped")
                events = [(event, message) for event, message in events if event.event_id not in done]
            messages_of = {id(event): message for event, message in events}
            for batch in ingest_batches(twin, [event for event, _ in events]):
                jobs.append(Job(ingest_workflow(twin, batch), batch, [messages_of[id(event)] for event in batch]))
        return jobs

    def _route(self, event: ObjectEvent, refresh: bool) -> list[LLMTwin]:
        return route(self.twins.twins(refresh=refresh), event, self.default_endpoint)

    def _may_repeat(self, messages: list[Message]) -> Replay | None:
        """Whether the batch may hold events a Workflow already carries, and why. "assigned": it starts a partition
        this gateway has not read under its consumer's current assignment (after a start or a rebalance: the
        partition's last owner may have submitted events it never committed). "jumped": it does not continue
        where this gateway's last batch of the partition ended (a replay after a failed batch, a reset
        position). A message without a position (an HTTP CloudEvent) is a batch of its own, whose Workflow
        name its event decides."""
        assignment = max((m.assignment for m in messages), default=0)
        if assignment and assignment != self._assignment:
            self._assignment, self._next_offsets, self._carried = assignment, {}, {}
        first: dict[tuple[str, int], int] = {}
        for message in messages:
            if message.offset >= 0:
                position = (message.topic, message.partition)
                first[position] = min(first.get(position, message.offset), message.offset)
        unexpected = [position for position, offset in first.items() if self._next_offsets.get(position) != offset]
        if any(position in self._next_offsets for position in unexpected):
            return "jumped"
        return "assigned" if unexpected else None

    def _carried_events(self, twin: LLMTwin, fresh: bool) -> set[str]:
        """The events the twin's existing ingest Workflows carry: one metadata list per twin and assignment, or
        a new one when `fresh`. One list serves every partition of an assignment: Workflows carrying a newly
        assigned partition's events were created by its last owner, before the assignment (hence before the
        list); after a jump, this gateway's own Workflows since the list may carry them too."""
        key = (twin.namespace, twin.name)
        if fresh or key not in self._carried:
            ids: set[str] = set()
            labels = {TWIN_LABEL: twin.name, KIND_LABEL: "ingest"}
            for metadata in self.submitter.existing_metadata(twin.namespace, labels):
                carried = metadata.get("annotations", {}).get(EVENT_IDS_ANNOTATION, "")
                ids.update(carried.split(",") if carried else ())
            self._carried[key] = ids
        return self._carried[key]

    def submit(self, job: Job) -> SubmissionRejected | None:
        try:
            self.submitter.submit(job.workflow)
        except SubmissionRejected as exc:
            return exc
        now = self.clock()
        for event in job.events:
            INGEST_LATENCY.observe(max(0.0, now - event.event_time))
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


class Batch(Protocol):
    def start(self) -> None:
        """Send the batch's work (Workflow creates, dead letters) on its way."""

    def wait(self) -> None:
        """Return once all of it is durable; raise if any of it failed."""


class Handled:
    """A handler that does all its work at once, as a `Batch`: `start` handles, there is nothing to wait for."""

    def __init__(self, handle: Callable[[list[Message]], None], messages: list[Message]):
        self.handle = handle
        self.messages = messages

    def start(self) -> None:
        self.handle(self.messages)

    def wait(self) -> None:
        pass


def handled(handle: Callable[[list[Message]], None]) -> Callable[[list[Message]], Batch]:
    """`consume`'s `prepare` for a plain handler."""
    return lambda messages: Handled(handle, messages)


def consume(
    consumer: Consumer,
    topic: str,
    prepare: Callable[[list[Message]], Batch],
    stop: threading.Event,
    max_records: int = 500,
    poll_timeout: float = 0.5,
    window: float = 0.0,
) -> None:
    """Poll, prepare, start, wait, commit, until `stop`, with one batch in flight: while a batch's work is on
    its way (the API server creating its Workflows), the next batch is polled and prepared; it starts only once
    the one before it is durable, so Workflows are created in event order, and offsets are committed only up to
    durable work. An error escapes uncommitted: the batch in flight is replayed (the one prepared behind it was
    never started)."""
    in_flight: tuple[Batch, Positions] | None = None

    def settle() -> None:
        batch, positions = in_flight
        batch.wait()
        consumer.commit(positions)

    try:
        while not stop.is_set():
            # With a batch in flight, look only at what has arrived, so its commit is not held up by a quiet topic.
            messages = poll_batch(consumer, max_records, IN_FLIGHT_POLL_SECONDS if in_flight else poll_timeout, window)
            for partition, behind in consumer.lag().items():
                LAG.labels(topic, str(partition)).set(behind)
            prepared = prepare(messages) if messages else None
            if in_flight:
                settle()
                in_flight = None
            if prepared:
                prepared.start()
                in_flight = (prepared, next_positions(messages))
        if in_flight:  # stopping: finish what was started rather than leave it to a replay
            settle()
    except Stopped:
        return
