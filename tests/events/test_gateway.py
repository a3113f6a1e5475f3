"""The event gateway end to end: MinIO notification -> Kafka -> gateway -> Workflow in the API server;
Alertmanager webhook -> Kafka -> dispatcher -> retrain Workflow. Argo's controller cannot run here
(no kubelet): Workflows are asserted as created objects, and where a test needs a run to finish it
sets the Workflow's phase itself, standing in for the controller (named so at that line)."""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import UTC, datetime

import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer

from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.config import PlatformSettings
from llmtwin.events.broker import KafkaMessageConsumer
from llmtwin.events.records import minio_message
from llmtwin.operator.builders import resolved_twin
from llmtwin.operator.eventplane.topics import ensure_topics
from llmtwin.sources.changes import decode_changes
from llmtwin.workflows.templates import workflow_parameters
from tests.events.conftest import (
    ALERTS_TOPIC,
    ARGO,
    BUCKET,
    DLQ_TOPIC,
    MAX_BODY_BYTES,
    NAMESPACE,
    TWIN,
    WEBHOOK_TOKEN,
    twin_doc,
    workflows,
)
from tests.harness import wait_for
from tests.harness.kube import server_fixture
from tests.harness.metrics import metric as scrape
from tests.harness.metrics import samples
from tests.harness.minio import MinioServer, kafka_notify_env, notify_kafka
from tests.harness.operator import MINIO_KAFKA_TARGET, OBJECTS_TOPIC
from tests.twins import twin_doc as example_doc

pytestmark = [pytest.mark.cluster, pytest.mark.kafka, pytest.mark.slow]


# ------------------------------------------------------------------------------------------ helpers
def submitted_objects(kube_cluster) -> list[dict[str, str]]:
    """Every object change the twin's ingest Workflows carry (with the Workflow's twin and name)."""
    found = []
    for workflow in workflows(kube_cluster, "ingest"):
        params = workflow_parameters(workflow)
        for change in decode_changes(params["objects"]):
            found.append({**asdict(change), "twin": params["twin"], "workflow": workflow["metadata"]["name"]})
    return found


def ingests_of(kube_cluster, key: str) -> list[dict[str, str]]:
    return [change for change in submitted_objects(kube_cluster) if change["key"] == key]


def put(client, key: str, body: bytes) -> str:
    return client.put_object(BUCKET, key, io.BytesIO(body), len(body)).etag.strip('"')


def produce(kafka_broker, topic: str, value: bytes, headers: list | None = None, key: bytes | None = None) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    producer.send(topic, value=value, key=key, headers=headers or []).get(timeout=30)
    producer.close()


def dead_letters(kafka_broker) -> list[tuple[bytes, dict[str, str]]]:
    """Everything on the DLQ topic so far (read up to the end offsets of every partition)."""
    from kafka import TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=kafka_broker.bootstrap, enable_auto_commit=False)
    try:
        consumer.topics()  # fetches the metadata partitions_for_topic reads
        partitions = [TopicPartition(DLQ_TOPIC, p) for p in consumer.partitions_for_topic(DLQ_TOPIC) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(partitions)
        letters = []
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            for records in consumer.poll(timeout_ms=1000).values():
                letters += [(r.value, {k: v.decode() for k, v in r.headers}) for r in records]
        return letters
    finally:
        consumer.close()


def metric(gateway, name: str, **labels: str) -> float:
    return scrape(f"{gateway.url}/metrics/", name, **labels)


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def alert_payload(twin: str, fingerprint: str, status: str = "firing", namespace: str = NAMESPACE) -> bytes:
    return json.dumps(
        {
            "version": "4",
            "status": status,
            "receiver": "llmtwin-gateway",
            "groupKey": "{}:{}",
            "alerts": [
                {
                    "status": status,
                    "labels": {
                        "alertname": "LLMTwinDrift",
                        "llmtwin_twin": twin,
                        "llmtwin_namespace": namespace,
                        "llmtwin_action": "retrain",
                    },
                    "annotations": {"summary": "questions drift away from the corpus"},
                    "startsAt": "2026-11-23T08:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "fingerprint": fingerprint,
                }
            ],
        }
    ).encode()


def send_alert(gateway, twin: str, fingerprint: str, status: str = "firing", namespace: str = NAMESPACE) -> int:
    code, _ = post(
        f"{gateway.url}/alertmanager",
        alert_payload(twin, fingerprint, status, namespace),
        {"Authorization": f"Bearer {WEBHOOK_TOKEN}"},
    )
    return code


def finish(kube_cluster, workflow: dict, tmp_path, phase: str = "Failed") -> None:
    """The run ends. Stand-in for Argo's controller (it needs a kubelet): the Workflow gets `phase`, and
    the retrain's real exit handler (`llmtwin step retrain-finished`, what onExit runs) records the end
    in the twin's status, where the dispatcher reads it."""
    from kubernetes.client import CustomObjectsApi

    name = workflow["metadata"]["name"]
    CustomObjectsApi(kube_cluster.api_client()).patch_namespaced_custom_object(
        *ARGO, NAMESPACE, "workflows", name, {"status": {"phase": phase}}
    )
    twin_name = workflow_parameters(workflow)["twin"]
    twin = json.loads(kube_cluster.kubectl("get", "llmtwin", twin_name, "-n", NAMESPACE, "-o", "json").stdout)
    # What the operator mounts into step pods: the resolved twin as JSON (its `<twin>-config` ConfigMap).
    (tmp_path / "twin.json").write_text(json.dumps(resolved_twin(LLMTwin.model_validate(twin))))
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ["HOME"],
        "KUBECONFIG": str(kube_cluster.kubeconfig),
        "LLMTWIN_TWIN_FILE": str(tmp_path / "twin.json"),
        "LLMTWIN_WORKSPACE": str(tmp_path / "workspace"),
        "LLMTWIN_STATUS_SINK": "kubernetes",
    }
    run = subprocess.run(
        [sys.executable, "-m", "llmtwin.cli", "step", "retrain-finished", f"workflow={name}", f"status={phase}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]


def last_training(kube_cluster, twin: str, namespace: str = NAMESPACE) -> dict:
    body = json.loads(kube_cluster.kubectl("get", "llmtwin", twin, "-n", namespace, "-o", "json").stdout)
    return body.get("status", {}).get("lastTraining", {})


# --------------------------------------------------------------------------------------- objects
def test_put_overwrite_delete_each_submit_an_ingest_with_the_event(kube_cluster, event_plane, gateway):
    key = f"essays/{uuid.uuid4().hex[:8]}.md"
    first = put(event_plane, key, b"# Tides\nThe sea keeps its own hours.")
    submitted = wait_for(lambda: ingests_of(kube_cluster, key), timeout=30, what="ingest after put")
    assert submitted[0]["event_type"] == "put" and submitted[0]["etag"] == first
    assert submitted[0] == {**submitted[0], "twin": TWIN, "bucket": BUCKET, "key": key}
    assert submitted[0]["event_id"]

    second = put(event_plane, key, b"# Tides\nThe sea keeps its own hours, and ours.")
    wait_for(lambda: any(p["etag"] == second for p in ingests_of(kube_cluster, key)), 30, what="overwrite ingest")
    event_plane.remove_object(BUCKET, key)
    wait_for(lambda: any(p["event_type"] == "delete" for p in ingests_of(kube_cluster, key)), 30, what="removal ingest")
    assert len(ingests_of(kube_cluster, key)) == 3

    # Two ingests of one object never run at once: the twin's ingests share an Argo mutex.
    mutexes = {json.dumps(w["spec"]["synchronization"]) for w in workflows(kube_cluster, "ingest")}
    assert len(mutexes) == 1 and "llmtwin-ingest-" in mutexes.pop()


def test_submissions_reusing_one_connection_are_each_created_once(kube_cluster, event_plane):
    """The submitter skips parsing the created object; the connection must still come back clean,
    or every next create on it fails, is retried, and is miscounted as already existing."""
    from prometheus_client import REGISTRY

    from llmtwin.events.gateway import ingest_workflow
    from llmtwin.events.records import parse_minio_message
    from llmtwin.events.routing import KubernetesTwins, find_twin
    from llmtwin.events.submit import KubernetesSubmitter
    from llmtwin.kube import api_client as kube_api_client

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    def counts() -> tuple[float, float, float]:
        submissions = "llmtwin_gateway_workflow_submissions_total"
        return (
            sample(submissions, kind="ingest", result="created"),
            sample(submissions, kind="ingest", result="exists"),
            sample("llmtwin_gateway_api_retries_total", operation="create workflow"),
        )

    api = kube_api_client(str(kube_cluster.kubeconfig), pool_size=1)  # one connection, reused by each create
    twin = find_twin(KubernetesTwins(api, PlatformSettings().milvus_uri, [NAMESPACE]).twins(), NAMESPACE, TWIN)
    keys = [f"pooled/{uuid.uuid4().hex[:8]}-{i}.md" for i in range(20)]
    submissions = [
        ingest_workflow(twin, [event])
        for key in keys
        for event in parse_minio_message(minio_message(BUCKET, key, "put", etag=uuid.uuid4().hex))
    ]
    # A response larger than the client's read buffer leaves bytes on the socket, as a busy API
    # server's split writes do; a large annotation makes that certain instead of load-dependent.
    for workflow in submissions:
        workflow["metadata"].setdefault("annotations", {})["test.llmtwin.dev/padding"] = "x" * 100_000
    submitter = KubernetesSubmitter(api)
    before = counts()
    for workflow in [*submissions, submissions[0]]:  # the last one is a replay
        submitter.submit(workflow)
    created, exists, retries = (after - start for after, start in zip(counts(), before, strict=True))
    assert (created, exists, retries) == (20, 1, 0)
    assert all(len(ingests_of(kube_cluster, key)) == 1 for key in keys)


def test_a_burst_on_one_key_coalesces_to_the_final_state(kube_cluster, event_plane, gateway):
    key = "burst/draft.md"
    started = time.monotonic()
    etags = [put(event_plane, key, f"draft number {i}".encode()) for i in range(100)]
    burst_seconds = time.monotonic() - started
    wait_for(lambda: any(p["etag"] == etags[-1] for p in ingests_of(kube_cluster, key)), 30, what="final etag")
    time.sleep(1.0)  # anything still in flight
    submitted = ingests_of(kube_cluster, key)
    # Documented: one submission per coalescing window (0.3 s) at most, the last carrying the final etag.
    windows = int(burst_seconds / 0.3) + 2
    assert 1 <= len(submitted) <= min(windows, 99), (len(submitted), burst_seconds)
    assert sum(p["etag"] == etags[-1] for p in submitted) == 1
    assert metric(gateway, "llmtwin_gateway_events_coalesced_total") >= 100 - len(submitted)


def test_awkward_keys_arrive_exactly_as_written(kube_cluster, event_plane, gateway, kafka_broker):
    keys = ["with space/a b.md", "ünïcødé/文档 ✓.md", "percent/100%25 sure%.md", "plus/a+b=c.md", "q/what?&x=1.md"]
    for key in keys:
        put(event_plane, key, key.encode())
    # MinIO refuses `..` segments in object names; a notification carrying one (another S3 server,
    # a forged record) must still be passed on as plain data, never as a path.
    dotted = "dots/../../etc/passwd.md"
    produce(kafka_broker, OBJECTS_TOPIC, minio_message(BUCKET, dotted, "put", "feedface"))
    for key in [*keys, dotted]:
        wait_for(lambda key=key: ingests_of(kube_cluster, key), 30, what=f"ingest of {key!r}")


def test_malformed_and_unroutable_messages_are_dead_lettered_and_the_gateway_goes_on(
    kube_cluster, event_plane, gateway, kafka_broker
):
    marker = uuid.uuid4().hex
    bad = {
        b"not json " + marker.encode(): "malformed",
        json.dumps({"Records": [], "marker": marker}).encode(): "malformed",
        json.dumps({"Records": [{"eventName": "s3:Nonsense", "m": marker}]}).encode(): "malformed",
    }
    for value in bad:
        produce(kafka_broker, OBJECTS_TOPIC, value)
    unroutable = minio_message("nobody-" + marker[:8], "x.md", "put", "e")
    produce(kafka_broker, OBJECTS_TOPIC, unroutable)
    key = f"after-poison/{marker[:8]}.md"
    put(event_plane, key, b"still listening")
    wait_for(lambda: ingests_of(kube_cluster, key), 30, what="ingest after poison messages")

    def dead() -> dict[bytes, dict[str, str]]:
        return {value: headers for value, headers in dead_letters(kafka_broker) if marker[:8].encode() in value}

    letters = wait_for(lambda: len(dead()) == 4 and dead(), 30, what="4 dead letters")
    for value, reason in bad.items():
        assert letters[value]["llmtwin-dlq-reason"] == reason
        assert letters[value]["llmtwin-dlq-detail"]  # says what was wrong
        assert letters[value]["llmtwin-dlq-origin"].startswith(OBJECTS_TOPIC + "/")
    assert letters[unroutable]["llmtwin-dlq-reason"] == "unroutable"
    assert "nobody-" in letters[unroutable]["llmtwin-dlq-detail"]


@pytest.fixture(scope="module")
def other_minio(kafka_broker, tmp_path_factory):
    """A second MinIO publishing to the same objects topic, as another team's would."""
    env = kafka_notify_env(MINIO_KAFKA_TARGET, kafka_broker.bootstrap, OBJECTS_TOPIC, tmp_path_factory.mktemp("q"))
    yield from server_fixture(MinioServer(env))


def test_two_twins_naming_one_bucket_on_two_minios_each_get_only_their_own(
    kube_cluster, event_plane, gateway, minio_to_kafka, other_minio
):
    bucket, keys = "shared-name", {}
    teams = {"team-a": None, "team-b": other_minio.endpoint}  # team-a's source names no endpoint: the platform's
    for namespace, endpoint in teams.items():
        kube_cluster.kubectl("create", "namespace", namespace, check=False)
        # The gateway reads no Secret; the operator and the steps would (and a source on its own endpoint names one).
        own = {"endpoint": endpoint, "credentialsSecretRef": {"name": "other-minio"}} if endpoint else {}
        source = {"bucket": bucket, **own}
        doc = example_doc("notes", namespace, sources=[source])
        kube_cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
    for namespace, server in (("team-a", minio_to_kafka), ("team-b", other_minio)):
        client = server.client()
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)
        notify_kafka(client, bucket, MINIO_KAFKA_TARGET)
        keys[namespace] = f"{namespace}-{uuid.uuid4().hex[:6]}.md"
        client.put_object(bucket, keys[namespace], io.BytesIO(b"mine"), 4)

    def carried(namespace: str) -> set[str]:
        return {
            change.key
            for workflow in workflows(kube_cluster, "ingest", "notes", namespace)
            for change in decode_changes(workflow_parameters(workflow)["objects"])
        }

    for namespace in teams:
        wait_for(lambda ns=namespace: keys[ns] in carried(ns), 30, what=f"{namespace}'s ingest")
    time.sleep(2)  # both uploads went through the gateway; give a misroute the time to show
    assert carried("team-a") == {keys["team-a"]} and carried("team-b") == {keys["team-b"]}


def test_sigkill_during_hundreds_of_uploads_loses_nothing_and_duplicates_nothing(kube_cluster, event_plane, gateway):
    keys = [f"storm/{i:03d}.md" for i in range(300)]
    etags: dict[str, str] = {}

    def upload() -> None:
        for key in keys:
            etags[key] = put(event_plane, key, f"storm note {key}".encode())

    uploader = threading.Thread(target=upload)
    uploader.start()
    kills = 0
    while uploader.is_alive() or kills < 3:
        time.sleep(0.8)
        if kills < 3:
            gateway.kill(signal.SIGKILL)  # no chance to commit or flush anything
            kills += 1
            gateway.start()
    uploader.join()

    def storm() -> list[dict[str, str]]:
        return [change for change in submitted_objects(kube_cluster) if change["key"].startswith("storm/")]

    # Group rebalancing after a SIGKILL waits for the session timeout (10 s) before reassigning.
    wait_for(lambda: len({p["key"] for p in storm()}) == len(keys), timeout=120, what="every object submitted")
    time.sleep(2)
    submitted = storm()
    assert len(submitted) == len(keys), "a replayed event was submitted again"
    assert {p["key"]: p["etag"] for p in submitted} == etags


def end_offsets(kafka_broker, topic: str) -> int:
    """Messages ever written to the topic (the sum of its partitions' end offsets)."""
    from kafka import TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=kafka_broker.bootstrap, enable_auto_commit=False)
    try:
        consumer.topics()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def test_a_thousand_new_objects_become_ceil_n_over_batch_workflows_each_object_once(
    kube_cluster, kafka_broker, event_plane, gateway
):
    """A flood of uploads while the gateway is down (an outage, a deploy): when it is back, the flood
    arrives in one batch (LLMTWIN_GATEWAY_MAX_BATCH_MESSAGES) and becomes ceil(1000 / spec.ingest.batchSize)
    Workflows, every object in exactly one of them."""
    prefix = f"flood-{uuid.uuid4().hex[:6]}/"
    keys = [f"{prefix}{i:04d}.md" for i in range(1000)]
    gateway.kill(signal.SIGTERM)
    before = end_offsets(kafka_broker, OBJECTS_TOPIC)
    with ThreadPoolExecutor(8) as pool:
        etags = dict(zip(keys, pool.map(lambda key: put(event_plane, key, key.encode()), keys), strict=True))
    wait_for(lambda: end_offsets(kafka_broker, OBJECTS_TOPIC) - before >= len(keys), 60, what="the flood in Kafka")
    gateway.start()

    def flood() -> list[dict[str, str]]:
        return [change for change in submitted_objects(kube_cluster) if change["key"].startswith(prefix)]

    wait_for(lambda: len(flood()) >= len(keys), timeout=120, what="every object submitted")
    time.sleep(1.0)  # anything still in flight
    submitted = flood()
    assert sorted(c["key"] for c in submitted) == keys  # each object once
    assert {c["key"]: c["etag"] for c in submitted} == etags
    batch = LLMTwin.model_validate(twin_doc(TWIN, BUCKET)).spec.ingest.batch_size
    assert len({c["workflow"] for c in submitted}) == math.ceil(len(keys) / batch)


def test_a_rebalance_gives_a_consumers_messages_a_new_assignment(kafka_broker):
    """The gateway's replay check trusts what it knows of a partition only within one assignment: a consumer
    whose partitions are reassigned (another member joined) must stamp what it polls next with a new one."""
    topic = f"assignments-{uuid.uuid4().hex[:6]}"
    ensure_topics(kafka_broker.bootstrap, [topic])  # 3 partitions
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap)

    def produce() -> None:
        for i in range(60):
            producer.send(topic, key=f"k{i}".encode(), value=b"v")
        producer.flush()

    produce()
    first = KafkaMessageConsumer(kafka_broker.bootstrap, topic, "assignments")
    second = None
    try:
        before = wait_for(lambda: first.poll(0.5, 500), timeout=60, what="the first member's messages")
        assert len({m.assignment for m in before}) == 1 and before[0].assignment > 0
        second = KafkaMessageConsumer(kafka_broker.bootstrap, topic, "assignments")  # joins: both are reassigned
        wait_for(lambda: first.poll(0.2, 500) + second.poll(0.2, 500) and second.assignment, 60, 0.1, "a rebalance")
        produce()  # the first member kept its position on the partitions it kept: new messages reach it
        after = wait_for(lambda: first.poll(0.5, 500), timeout=60, what="the first member's messages after it")
        assert {m.assignment for m in after} == {first.assignment} and first.assignment != before[0].assignment
    finally:
        producer.close()
        first.close()
        if second is not None:
            second.close()


def test_kafka_broker_restart_loses_no_upload(kube_cluster, event_plane, gateway, kafka_broker):
    down_key = f"outage/{uuid.uuid4().hex[:8]}.md"
    # MinIO keeps notifications in its queue dir while Kafka is down and delivers them afterwards.
    kafka_broker.restart(while_down=lambda: put(event_plane, down_key, b"written while Kafka was down"))
    after_key = f"outage/{uuid.uuid4().hex[:8]}-after.md"
    put(event_plane, after_key, b"written after the restart")
    for key in (down_key, after_key):
        wait_for(lambda key=key: ingests_of(kube_cluster, key), timeout=120, what=f"ingest of {key} after restart")
    assert gateway.proc.poll() is None, "the gateway died with the broker"


def test_cloudevents_delivery_runs_the_same_handler(kube_cluster, event_plane, gateway):
    """The Knative variant: a KafkaSource POSTs the objects record as a binary-mode CloudEvent."""
    key = f"knative/{uuid.uuid4().hex[:8]}.md"
    headers = {
        "ce-specversion": "1.0",
        "ce-id": f"partition:0/offset:{uuid.uuid4().int % 10**6}",
        "ce-source": f"/apis/v1/namespaces/llmtwin-system/kafkasources/llmtwin-events#{OBJECTS_TOPIC}",
        "ce-type": "dev.knative.kafka.event",
        "ce-subject": "partition:0#1",
    }
    code, body = post(f"{gateway.url}/", minio_message(BUCKET, key, "put", "c0ffee"), headers)
    assert code == 200, body
    # The 2xx means the Workflow already exists (the source retries otherwise).
    assert ingests_of(kube_cluster, key)[0]["etag"] == "c0ffee"
    code, _ = post(f"{gateway.url}/", b"{}", {"ce-specversion": "1.0"})
    assert code == 400


def test_metrics_move_by_what_each_stage_did(kube_cluster, kafka_broker, event_plane, gateway):
    """One upload, one malformed message, one unauthenticated webhook call: each counter moves by one."""
    counters = {
        "consumed": ("llmtwin_gateway_messages_consumed_total", {"topic": OBJECTS_TOPIC}),
        "created": ("llmtwin_gateway_workflow_submissions_total", {"kind": "ingest", "result": "created"}),
        "timed": ("llmtwin_gateway_event_to_submission_seconds_count", {"kind": "ingest"}),
        "malformed": ("llmtwin_gateway_dead_lettered_total", {"topic": OBJECTS_TOPIC, "reason": "malformed"}),
        "refused": ("llmtwin_gateway_webhook_requests_total", {"code": "401"}),
    }

    def read() -> dict[str, float]:
        return {k: metric(gateway, name, **labels) for k, (name, labels) in counters.items()}

    before = read()
    key = f"metrics/{uuid.uuid4().hex[:8]}.md"
    put(event_plane, key, b"counted")
    wait_for(lambda: ingests_of(kube_cluster, key), 30, what="ingest")
    produce(kafka_broker, OBJECTS_TOPIC, b"not json", key=b"metrics/bad")
    assert post(f"{gateway.url}/alertmanager", b"{}", {})[0] == 401
    wait_for(lambda: read()["malformed"] > before["malformed"], 30, what="the malformed message to be dead-lettered")
    after = read()
    moved = {k: after[k] - before[k] for k in counters}
    assert moved == {"consumed": 2, "created": 1, "timed": 1, "malformed": 1, "refused": 1}, moved
    lag = [s for s in samples(f"{gateway.url}/metrics/") if s[0] == "llmtwin_gateway_consumer_lag"]
    assert {labels["topic"] for _, labels, _ in lag} >= {OBJECTS_TOPIC}
    assert all(value >= 0 for _, _, value in lag)


# ---------------------------------------------------------------------------------------- alerts
def test_webhook_refuses_without_the_token_and_rejects_bad_bodies(gateway):
    body = alert_payload(TWIN, "f0")
    assert post(f"{gateway.url}/alertmanager", body, {})[0] == 401
    assert post(f"{gateway.url}/alertmanager", body, {"Authorization": "Bearer wrong"})[0] == 401
    auth = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
    assert post(f"{gateway.url}/alertmanager", b'{"version": "4"}', auth)[0] == 422
    assert post(f"{gateway.url}/alertmanager", b"x" * (MAX_BODY_BYTES + 4096), auth)[0] == 413


def test_a_repeated_firing_alert_starts_one_retrain_and_cooldown_holds(kube_cluster, gateway, tmp_path):
    for _ in range(50):
        assert send_alert(gateway, TWIN, "drift-a") == 200
    runs = wait_for(lambda: workflows(kube_cluster, "retrain"), 30, what="a retrain workflow")
    time.sleep(3)  # let the other 49 be dispatched
    runs = workflows(kube_cluster, "retrain")
    assert len(runs) == 1
    assert workflow_parameters(runs[0])["reason"].startswith("drift alert")
    claimed = last_training(kube_cluster, TWIN)
    assert claimed["workflow"] == runs[0]["metadata"]["name"] and claimed["result"] == "Running"
    assert claimed["episode"].startswith("drift-a@")

    finish(kube_cluster, runs[0], tmp_path)  # the run is over; the 1 h cooldown now applies
    assert last_training(kube_cluster, TWIN)["result"] == "Failed"
    cooldowns = metric(gateway, "llmtwin_gateway_alerts_total", outcome="cooldown")
    assert send_alert(gateway, TWIN, "drift-b") == 200
    wait_for(lambda: metric(gateway, "llmtwin_gateway_alerts_total", outcome="cooldown") > cooldowns, 30)
    resolved = metric(gateway, "llmtwin_gateway_alerts_total", outcome="resolved")
    assert send_alert(gateway, TWIN, "drift-a", status="resolved") == 200
    wait_for(lambda: metric(gateway, "llmtwin_gateway_alerts_total", outcome="resolved") > resolved, 30)
    assert len(workflows(kube_cluster, "retrain")) == 1

    # Argo's TTL deletes the finished Workflow: the cooldown holds all the same (it lives in the status).
    kube_cluster.kubectl("delete", "workflow", runs[0]["metadata"]["name"], "-n", NAMESPACE)
    decided = {o: metric(gateway, "llmtwin_gateway_alerts_total", outcome=o) for o in ("cooldown", "duplicate")}
    assert send_alert(gateway, TWIN, "drift-a") == 200  # the first episode, still firing
    assert send_alert(gateway, TWIN, "drift-c") == 200  # a new episode inside the cooldown
    wait_for(lambda: metric(gateway, "llmtwin_gateway_alerts_total", outcome="cooldown") >= decided["cooldown"] + 1, 30)
    wait_for(lambda: metric(gateway, "llmtwin_gateway_alerts_total", outcome="duplicate") > decided["duplicate"], 30)
    time.sleep(1)
    assert workflows(kube_cluster, "retrain") == []


def test_single_flight_then_a_new_run_after_a_short_cooldown(kube_cluster, gateway, tmp_path):
    twin = "quick"
    kube_cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(twin_doc(twin, BUCKET, cooldown="2s")))
    assert send_alert(gateway, twin, "q-1") == 200
    first = wait_for(lambda: workflows(kube_cluster, "retrain", twin), 30, what="first retrain")
    in_flight = metric(gateway, "llmtwin_gateway_alerts_total", outcome="in-flight")
    assert send_alert(gateway, twin, "q-2") == 200  # the first run has not finished
    wait_for(lambda: metric(gateway, "llmtwin_gateway_alerts_total", outcome="in-flight") > in_flight, 30)
    assert len(workflows(kube_cluster, "retrain", twin)) == 1

    finish(kube_cluster, first[0], tmp_path, "Failed")
    time.sleep(2.5)  # past the cooldown
    assert send_alert(gateway, twin, "q-3") == 200
    wait_for(lambda: len(workflows(kube_cluster, "retrain", twin)) == 2, 30, what="second retrain")
    assert last_training(kube_cluster, twin)["episode"].startswith("q-3@")


FREEZE_POLICY = """
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: llmtwin-test-frozen}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - {apiGroups: [argoproj.io], apiVersions: ["*"], operations: [CREATE], resources: [workflows]}
    namespaceSelector: {matchLabels: {llmtwin-test/frozen: "true"}}
  validations:
    - {expression: "false", reason: Forbidden, message: "workflows are frozen in this namespace"}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: llmtwin-test-frozen}
spec:
  policyName: llmtwin-test-frozen
  validationActions: [Deny]
"""


def test_a_forbidden_workflow_is_dead_lettered_and_the_next_alert_proceeds(kafka_broker, kube_cluster, gateway):
    """A 403 (here a cluster policy refusing Workflows in a namespace) is not retried: the alert goes
    to the DLQ with the reason, the twin's status says why, and the next message is handled."""
    frozen = "frozen-ns"
    kube_cluster.kubectl("create", "namespace", frozen, check=False)
    kube_cluster.kubectl("label", "namespace", frozen, "llmtwin-test/frozen=true", "--overwrite")
    kube_cluster.kubectl("apply", "-f", "-", input=FREEZE_POLICY)
    doc = twin_doc("icy", BUCKET)
    doc["metadata"]["namespace"] = frozen
    kube_cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
    kube_cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(twin_doc("thawed", BUCKET)))

    def refused():  # the policy takes a moment to reach the admission chain
        return "frozen" in kube_cluster.kubectl(
            "create", "-n", frozen, "-f", "-", check=False,
            input=yaml.safe_dump({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
                                  "metadata": {"generateName": "probe-"}, "spec": {"entrypoint": "x"}}),
        ).stderr  # fmt: skip

    wait_for(refused, 30, what="the admission policy to refuse Workflows")
    assert send_alert(gateway, "icy", "ice-1", namespace=frozen) == 200
    assert send_alert(gateway, "thawed", "thaw-1") == 200

    def letter():
        letters = dead_letters(kafka_broker)
        return next((h for v, h in letters if b"ice-1" in v and h.get("llmtwin-dlq-reason") == "rejected"), None)

    headers = wait_for(letter, 60, what="the forbidden alert in the DLQ")
    assert "403" in headers["llmtwin-dlq-detail"] and "frozen" in headers["llmtwin-dlq-detail"]
    assert wait_for(lambda: workflows(kube_cluster, "retrain", "thawed"), 30, what="the next alert's retrain")
    assert last_training(kube_cluster, "icy", frozen)["result"] == "Failed"  # not holding the single-flight


def test_alert_for_an_unknown_twin_is_dead_lettered(kafka_broker, gateway):
    ghost = f"ghost-{uuid.uuid4().hex[:6]}"
    assert send_alert(gateway, ghost, "g-1") == 200

    def letter():
        letters = dead_letters(kafka_broker)
        return next((h for v, h in letters if ghost.encode() in v and h.get("ce_type") == "dev.llmtwin.alert"), None)

    headers = wait_for(letter, 30, what="dead-lettered alert")
    assert headers["llmtwin-dlq-reason"] == "unknown-twin"
    assert headers["llmtwin-dlq-origin"].startswith(ALERTS_TOPIC + "/")


def test_real_alertmanager_delivers_to_the_webhook(kube_cluster, gateway, tmp_path):
    """Debian's Alertmanager with our route: an alert posted to it becomes a retrain Workflow."""
    from tests.harness.alertmanager import Alertmanager

    twin = "paged"
    kube_cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(twin_doc(twin, BUCKET)))
    (tmp_path / "token").write_text(WEBHOOK_TOKEN)
    with Alertmanager(tmp_path, f"{gateway.url}/alertmanager", tmp_path / "token") as alertmanager:
        alertmanager.fire(
            {
                "alertname": "LLMTwinDrift",
                "llmtwin_twin": twin,
                "llmtwin_namespace": NAMESPACE,
                "llmtwin_action": "retrain",
            },
            starts_at=datetime.now(UTC),
        )
        runs = wait_for(lambda: workflows(kube_cluster, "retrain", twin), 60, what="retrain via Alertmanager")
    assert len(runs) == 1
