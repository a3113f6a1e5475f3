"""The gateway's pure parts: MinIO record parsing, coalescing, batching and replays, the in-process queue,
the webhook."""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import pytest
from fastapi.testclient import TestClient

from llmtwin.events.alerts import parse_alert_record
from llmtwin.events.gateway import DeadLetters, ObjectGateway, coalesce, consume, poll_batch
from llmtwin.events.http import HttpConfig, create_app
from llmtwin.events.queue import InProcessQueue, Message, new_assignment
from llmtwin.events.records import MalformedEvent, minio_message, parse_minio_message
from llmtwin.events.routing import StaticTwins, route
from llmtwin.sources.changes import decode_changes
from llmtwin.workflows.templates import workflow_parameters
from tests.harness import wait_for
from tests.twins import example_twin


def record(event_name: str, key: str, **obj) -> bytes:
    body = {"key": key, "sequencer": "17A0000000000001", **obj}
    return json.dumps(
        {
            "Records": [
                {
                    "eventName": event_name,
                    "eventTime": "2026-11-23T08:00:00.000Z",
                    "s3": {"bucket": {"name": "essays"}, "object": body},
                }
            ]
        }
    ).encode()


def test_minio_records_become_events_with_decoded_keys():
    (put,) = parse_minio_message(record("s3:ObjectCreated:Put", "a+b%2Fc%25+%C3%BC.md", eTag='"abc"', size=3))
    assert (put.bucket, put.key, put.event_type, put.etag, put.size) == ("essays", "a b/c% ü.md", "put", "abc", 3)
    (multipart,) = parse_minio_message(record("s3:ObjectCreated:CompleteMultipartUpload", "big.pdf", eTag="x-2"))
    assert multipart.event_type == "put" and multipart.etag == "x-2"
    (removed,) = parse_minio_message(record("s3:ObjectRemoved:DeleteMarkerCreated", "old.md", versionId="v9"))
    assert removed.event_type == "delete" and removed.revision == "v9"
    assert parse_minio_message(record("s3:ObjectCreated:PutTagging", "tagged.md")) == []  # content unchanged


def test_a_replay_has_the_same_dedupe_key_a_new_upload_does_not():
    first = parse_minio_message(minio_message("essays", "k.md", "put", "e1", sequencer="01"))[0]
    replay = parse_minio_message(minio_message("essays", "k.md", "put", "e1", sequencer="01"))[0]
    reupload = parse_minio_message(minio_message("essays", "k.md", "put", "e1", sequencer="02"))[0]
    assert first.dedupe_key("ns", "t") == replay.dedupe_key("ns", "t") != reupload.dedupe_key("ns", "t")


@pytest.mark.parametrize(
    "value, reason",
    [
        (b"", "empty message"),
        (b"\xff\xfe", "not JSON"),
        (b'{"Records": []}', "no Records"),
        (b'{"Records": ["x"]}', "not an object"),
        (record("s3:Replication:Failed", "k"), "unsupported eventName"),
        (record("s3:ObjectCreated:Put", ""), "key is empty"),
        (record("s3:ObjectCreated:Put", "a%00b"), "NUL"),
        (record("s3:ObjectCreated:Put", "%FF"), "UTF-8"),
        (record("s3:ObjectCreated:Put", "k" * 1025), "longer than"),
    ],
)
def test_malformed_messages_say_why(value, reason):
    with pytest.raises(MalformedEvent) as exc:
        parse_minio_message(value)
    assert exc.value.reason == "malformed" and reason in exc.value.detail


def test_coalesce_keeps_the_newest_sequencer_per_key_whatever_the_arrival_order():
    events = [
        parse_minio_message(minio_message("b", key, "put", etag, sequencer=seq))[0]
        for key, etag, seq in [("k", "new", "0F"), ("k", "old", "0A"), ("other", "o", "01"), ("k", "mid", "0B")]
    ]
    kept = coalesce([(e, Message("t", b"")) for e in events])
    assert sorted((e.key, e.etag) for e, _ in kept) == [("k", "new"), ("other", "o")]


def test_in_process_queue_replays_what_was_not_committed():
    queue = InProcessQueue()
    for i in range(3):
        queue.send("t", str(i).encode())
    consumer = queue.consumer("t", "g")
    assert [m.value for m in consumer.poll(0, 2)] == [b"0", b"1"]
    consumer.commit()
    assert [m.value for m in consumer.poll(0, 10)] == [b"2"]  # polled, then "crashed" before commit
    assert [m.value for m in queue.consumer("t", "g").poll(0, 10)] == [b"2"]
    assert consumer.lag() == {0: 0}


def test_poll_batch_collects_a_burst_within_the_window():
    queue = InProcessQueue()
    consumer = queue.consumer("t", "g")

    def burst() -> None:
        for i in range(5):
            queue.send("t", str(i).encode())
            time.sleep(0.02)

    writer = threading.Thread(target=burst)
    writer.start()
    batch = poll_batch(consumer, max_records=100, poll_timeout=1.0, window=0.5)
    writer.join()
    assert len(batch) == 5


class HeldBatch:
    """A batch whose work stays in flight until the test lets it finish (or fail)."""

    def __init__(self, log: list[str], messages: list[Message]):
        self.name = "+".join(m.value.decode() for m in messages)
        self.log = log
        self.done = threading.Event()
        self.error: Exception | None = None
        log.append(f"prepare {self.name}")

    def start(self) -> None:
        self.log.append(f"start {self.name}")

    def wait(self) -> None:
        assert self.done.wait(10), f"{self.name} never finished"
        if self.error:
            raise self.error
        self.log.append(f"durable {self.name}")


def held_consumer(count: int):
    queue = InProcessQueue()
    for i in range(count):
        queue.send("t", str(i).encode())
    log: list[str] = []
    batches: dict[str, HeldBatch] = {}

    def prepare(messages: list[Message]) -> HeldBatch:
        batch = HeldBatch(log, messages)
        batches[batch.name] = batch
        return batch

    return queue, log, batches, prepare


def committed(queue: InProcessQueue) -> list[bytes]:
    """What a new consumer of the group would be given: everything after the committed offset."""
    return [m.value for m in queue.consumer("t", "g").poll(0, 100)]


def wait_until(condition, what: str) -> None:
    wait_for(condition, timeout=10, interval=0.01, what=what)


def consuming(queue: InProcessQueue, prepare, stop: threading.Event) -> threading.Thread:
    """`consume` in a thread, two messages a batch."""
    loop = threading.Thread(
        target=consume, args=(queue.consumer("t", "g"), "t", prepare, stop), kwargs={"max_records": 2}
    )
    loop.start()
    return loop


def test_consume_prepares_the_next_batch_while_one_is_in_flight_and_commits_only_durable_work():
    queue, log, batches, prepare = held_consumer(4)
    stop = threading.Event()
    loop = consuming(queue, prepare, stop)
    try:
        wait_until(lambda: "prepare 2+3" in log, "the next batch prepared while 0+1 is in flight")
        assert log == ["prepare 0+1", "start 0+1", "prepare 2+3"]  # not started: Workflows keep event order
        assert committed(queue) == [b"0", b"1", b"2", b"3"]
        batches["0+1"].done.set()
        wait_until(lambda: "start 2+3" in log, "2+3 started once 0+1 was durable")
        assert log[3:] == ["durable 0+1", "start 2+3"]
        assert committed(queue) == [b"2", b"3"]
        batches["2+3"].done.set()
        wait_until(lambda: committed(queue) == [], "2+3 committed once durable, with nothing after it to poll")
    finally:
        stop.set()
        for batch in batches.values():
            batch.done.set()
        loop.join(10)


def test_a_failed_batch_is_replayed_with_the_one_prepared_behind_it_never_started():
    queue, log, batches, prepare = held_consumer(4)
    errors: list[Exception] = []

    def run() -> None:
        try:
            consume(queue.consumer("t", "g"), "t", prepare, threading.Event(), max_records=2)
        except RuntimeError as exc:
            errors.append(exc)

    loop = threading.Thread(target=run)
    loop.start()
    wait_until(lambda: "prepare 2+3" in log, "the next batch prepared")
    batches["0+1"].error = RuntimeError("the API server went away")
    batches["0+1"].done.set()
    loop.join(10)
    assert [str(e) for e in errors] == ["the API server went away"]
    assert "start 2+3" not in log
    assert committed(queue) == [b"0", b"1", b"2", b"3"]  # all of it is delivered again


def test_a_stopped_consume_finishes_the_batch_in_flight_and_commits_it():
    queue, log, batches, prepare = held_consumer(2)
    stop = threading.Event()
    loop = consuming(queue, prepare, stop)
    wait_until(lambda: "start 0+1" in log, "the batch started")
    stop.set()
    batches["0+1"].done.set()
    loop.join(10)
    assert not loop.is_alive() and log[-1] == "durable 0+1" and committed(queue) == []


@pytest.fixture
def webhook():
    queue = InProcessQueue()
    app = create_app(HttpConfig("s3cret", "alerts", "objects", max_body_bytes=4096), queue, {})
    return TestClient(app), queue


def payload(**alert) -> dict:
    return {
        "version": "4",
        "status": "firing",
        "receiver": "llmtwin",
        "alerts": [
            {
                "status": "firing",
                "labels": {"llmtwin_twin": "demo", "llmtwin_namespace": "default", "llmtwin_action": "retrain"},
                "startsAt": "2026-11-23T08:00:00Z",
                "fingerprint": "f1",
                **alert,
            }
        ],
    }


def test_webhook_needs_the_token(webhook):
    client, queue = webhook
    assert client.post("/alertmanager", json=payload()).status_code == 401
    assert client.post("/alertmanager", json=payload(), headers={"Authorization": "Bearer nope"}).status_code == 401
    assert queue.messages("alerts") == []


def test_webhook_validates_and_publishes_one_cloudevent_per_alert(webhook):
    client, queue = webhook
    auth = {"Authorization": "Bearer s3cret"}
    assert client.post("/alertmanager", content=b"x" * 5000, headers=auth).status_code == 413
    bad = client.post("/alertmanager", json={**payload(), "version": "3"}, headers=auth)
    assert bad.status_code == 422 and "version" in json.dumps(bad.json()["details"])
    assert client.post("/alertmanager", json=payload(), headers=auth).json() == {"published": 1}
    (message,) = queue.messages("alerts")
    alert = parse_alert_record(message.value, message.headers, message.key)
    assert (alert.twin_namespace, alert.twin_name, alert.status, alert.fingerprint) == (
        "default",
        "demo",
        "firing",
        "f1",
    )
    assert message.key == b"default/demo"  # one partition per twin: its alerts stay in order


@pytest.mark.parametrize(
    ("status", "transient"),
    [
        (0, True),
        (429, True),
        (500, True),
        (503, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (422, False),
    ],
)
def test_only_connection_errors_429_and_5xx_are_retried(status, transient):
    from kubernetes.client.exceptions import ApiException

    from llmtwin.events.submit import transient_api_error

    assert transient_api_error(ApiException(status=status)) is transient
    assert transient_api_error(ConnectionRefusedError())


class RecordingSubmitter:
    """The API's behaviour for Workflows as far as the gateway can tell: create once, list by label."""

    def __init__(self):
        self.workflows: dict[str, dict] = {}
        self.lists = 0

    def submit(self, workflow: dict) -> str:
        self.workflows.setdefault(workflow["metadata"]["name"], workflow)
        return workflow["metadata"]["name"]

    def existing_metadata(self, namespace: str, labels: dict[str, str]) -> list[dict]:
        self.lists += 1
        return [w["metadata"] for w in self.workflows.values() if labels.items() <= w["metadata"]["labels"].items()]

    def objects(self) -> list[str]:
        return [c.key for w in self.workflows.values() for c in decode_changes(workflow_parameters(w)["objects"])]


def uploads(count: int, prefix: str = "k") -> list:
    queue = InProcessQueue()
    for i in range(count):
        queue.send(
            "objects", minio_message("essays", f"{prefix}{i:04d}.md", "put", f"etag{i}", sequencer=f"{i + 1:016X}")
        )
    return queue.consumer("objects", "g").poll(0, 10_000)


def gateway_for(submitter: RecordingSubmitter, batch_size: int = 100) -> ObjectGateway:
    twin = example_twin(ingest={"batchSize": batch_size})
    return ObjectGateway(StaticTwins([twin]), submitter, DeadLetters(InProcessQueue(), "dlq"), workers=2)


def test_a_twins_objects_become_workflows_of_its_batch_size_under_one_mutex():
    submitter = RecordingSubmitter()
    gateway_for(submitter).handle(uploads(250))
    sizes = sorted(len(decode_changes(workflow_parameters(w)["objects"])) for w in submitter.workflows.values())
    assert sizes == [50, 100, 100]  # ceil(250 / 100) Workflows
    assert sorted(submitter.objects()) == [f"k{i:04d}.md" for i in range(250)]  # each object once
    mutexes = {json.dumps(w["spec"]["synchronization"]) for w in submitter.workflows.values()}
    assert len(mutexes) == 1 and "llmtwin-ingest-" in mutexes.pop()  # the twin's ingests run one at a time


def test_a_replay_creates_nothing_even_when_it_splits_the_events_differently():
    polled = uploads(260)
    messages, later = polled[:250], polled[250:]
    submitter = RecordingSubmitter()
    # A gateway submits the first 120 events, then dies before committing them.
    gateway_for(submitter).handle(messages[:120])
    assert len(submitter.workflows) == 2
    # Restarted, it polls from the committed offset again and gets all 250: only the other 130 are submitted.
    restarted = gateway_for(submitter)
    restarted.handle(messages)
    assert sorted(submitter.objects()) == [f"k{i:04d}.md" for i in range(250)]  # nothing twice, nothing lost
    assert len(submitter.workflows) == 4 and submitter.lists == 2  # it asked the API once per (re)start
    # The same batch replayed whole by another restart: nothing new.
    gateway_for(submitter).handle(messages)
    assert len(submitter.workflows) == 4
    # In steady state (each batch continues the last) the gateway does not ask the API.
    lists = submitter.lists
    restarted.handle(later)
    assert submitter.lists == lists and len(submitter.objects()) == 260


def test_one_list_serves_every_partition_of_an_assignment_and_a_rebalance_asks_again():
    polled = uploads(40)
    # Three partitions, first read one after the other under one assignment (as a started gateway finds them).
    parts = [
        [dataclasses.replace(m, partition=p, offset=i) for i, m in enumerate(polled[p * 10 : p * 10 + 10])]
        for p in range(3)
    ]
    submitter = RecordingSubmitter()
    gateway = gateway_for(submitter)
    for part in parts:
        gateway.handle(part)
    assert submitter.lists == 1 and len(submitter.objects()) == 30
    # A rebalance hands partition 0 back to this gateway, at the offset where it left it: another consumer may
    # have submitted events in between and died before committing them, so the gateway asks again.
    reassigned = new_assignment()
    carried_by_the_other = [
        dataclasses.replace(m, partition=0, offset=10 + i, assignment=reassigned) for i, m in enumerate(polled[30:])
    ]
    gateway_for(submitter).handle(carried_by_the_other[:5])  # the other owner's Workflow, never committed
    gateway.handle(carried_by_the_other)
    assert submitter.lists == 3
    assert sorted(submitter.objects()) == [f"k{i:04d}.md" for i in range(40)]  # each once


def test_routing_keys_on_the_minio_that_sent_the_event():
    platform = "http://minio.platform:9000"
    ours = example_twin("ours", "team-a", sources=[{"bucket": "notes"}])  # no endpoint: the platform's
    theirs = example_twin("theirs", "team-b", sources=[{"bucket": "notes", "endpoint": "https://minio.team-b:9000"}])
    twins = [ours, theirs]

    def sent_by(origin: str) -> list[str]:
        (event,) = parse_minio_message(minio_message("notes", "a.md", "put", "e", origin=origin))
        return [t.name for t in route(twins, event, platform)]

    assert sent_by("http://minio.platform:9000") == ["ours"]
    assert sent_by("HTTP://MINIO.PLATFORM:9000/") == ["ours"]  # one server, spelled another way
    assert sent_by("https://minio.team-b:9000") == ["theirs"]
    assert sent_by("http://10.0.0.7:9000") == []  # a MinIO no twin names (MINIO_SERVER_URL unset)
    assert sent_by("") == ["ours", "theirs"]  # no origin (the folder watcher): the bucket decides
    (event,) = parse_minio_message(minio_message("notes", "a.md", "put", "e", origin="http://10.0.0.7:9000"))
    assert [t.name for t in route(twins, event)] == ["ours"]  # `llmtwin up`: no platform endpoint to compare
