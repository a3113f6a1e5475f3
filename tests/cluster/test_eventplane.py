"""Each twin's event plane, set up by the operator process against the real API server, MinIO and Kafka:
its bucket, the bucket's notification to MinIO's Kafka target, the topics, StorageReady, and the
clean-up on delete."""

from __future__ import annotations

import io
import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer
from minio.notificationconfig import NotificationConfig, QueueConfig, SuffixFilterRule

from tests.cluster.test_operator import apply, twin_doc
from tests.harness import free_port, wait_for
from tests.harness.metrics import metric
from tests.harness.operator import (
    ALERTS_TOPIC,
    DLQ_TOPIC,
    MINIO_KAFKA_TARGET,
    OBJECTS_TOPIC,
    PLATFORM_SECRET,
    RESYNC_SECONDS,
    create_s3_secret,
    get_json,
)

pytestmark = [pytest.mark.cluster, pytest.mark.kafka]
NAMESPACE = "eventplane"
ARN = f"arn:minio:sqs::{MINIO_KAFKA_TARGET}:kafka"
EVENT_PLANE_KINDS = ("Bucket", "BucketNotification", "KafkaTopic")
NOTHING_LISTENS = f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def namespace(kube_cluster, operator, minio_to_kafka) -> str:
    kube_cluster.kubectl("create", "namespace", NAMESPACE)
    create_s3_secret(kube_cluster, minio_to_kafka, namespace=NAMESPACE)
    return NAMESPACE


def unique_bucket(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def apply_twin(kube_cluster, name: str, *sources: dict, **spec) -> None:
    doc = twin_doc(name, NAMESPACE, sources=list(sources), **spec)
    apply(kube_cluster, doc)


def wait_condition(kube_cluster, name: str, condition: str, timeout: int = 30) -> dict:
    kube_cluster.kubectl(
        "wait", f"llmtwin/{name}", "-n", NAMESPACE, f"--for=condition={condition}", f"--timeout={timeout}s"
    )
    return get_json(kube_cluster, "llmtwin", name, "-n", NAMESPACE)


def status_condition(twin: dict, type_: str) -> dict:
    return next(c for c in twin["status"]["conditions"] if c["type"] == type_)


def twin_configs(minio, bucket: str, name: str) -> list[QueueConfig]:
    configs = minio.get_bucket_notification(bucket).queue_config_list
    return [q for q in configs if q.config_id.startswith(f"llmtwin-{NAMESPACE}.{name}_")]


def event_plane_writes(operator) -> float:
    return sum(metric(operator.metrics_url, "llmtwin_operator_api_writes_total", kind=k) for k in EVENT_PLANE_KINDS)


def bucket_states(twin: dict) -> list[tuple[str, str]]:
    return [(b["bucket"], b["state"]) for b in twin["status"]["buckets"]]


def object_keys(kafka_broker, wanted: str, seconds: float = 1.0) -> list[str]:
    """Message keys on the objects topic, read until `wanted` arrived and `seconds` more passed."""
    consumer = KafkaConsumer(
        OBJECTS_TOPIC,
        bootstrap_servers=kafka_broker.bootstrap,
        group_id=f"eventplane-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
    )
    keys: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and wanted not in keys:
            for records in consumer.poll(timeout_ms=500).values():
                keys += [r.key.decode() for r in records]
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for records in consumer.poll(timeout_ms=200).values():
                keys += [r.key.decode() for r in records]
    finally:
        consumer.close()
    return keys


def test_new_bucket_is_created_and_notifies_kafka(kube_cluster, operator, namespace, minio_to_kafka, kafka_broker):
    bucket = unique_bucket("notes")
    minio = minio_to_kafka.client()
    assert not minio.bucket_exists(bucket)
    apply_twin(kube_cluster, "alpha", {"bucket": bucket, "prefix": "essays/", "suffix": ".md"})
    twin = wait_condition(kube_cluster, "alpha", "StorageReady")
    assert status_condition(twin, "Ready")["status"] == "True"
    assert twin["status"]["phase"] == "Ready"
    (wired,) = twin["status"]["buckets"]
    assert wired == {
        "bucket": bucket,
        "endpoint": minio_to_kafka.endpoint,
        "credentialsSecretRef": {"name": PLATFORM_SECRET, "accessKeyKey": "accessKey", "secretKeyKey": "secretKey"},
        "state": "Notifying",
    }

    assert minio.bucket_exists(bucket)
    (config,) = twin_configs(minio, bucket, "alpha")
    assert config.queue == ARN
    assert sorted(config.events) == ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]
    assert config.prefix_filter_rule.value == "essays/" and config.suffix_filter_rule.value == ".md"

    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    try:
        assert {OBJECTS_TOPIC, ALERTS_TOPIC, DLQ_TOPIC} <= set(admin.list_topics())
    finally:
        admin.close()

    # The filters hold on the wire: only the matching upload and its removal reach Kafka.
    minio.put_object(bucket, "drafts/skip.md", io.BytesIO(b"outside the prefix"), 18)
    minio.put_object(bucket, "essays/skip.txt", io.BytesIO(b"wrong suffix"), 12)
    minio.put_object(bucket, "essays/tide.md", io.BytesIO(b"The tide came in."), 17)
    minio.remove_object(bucket, "essays/tide.md")
    keys = [k for k in object_keys(kafka_broker, f"{bucket}/essays/tide.md") if k.startswith(f"{bucket}/")]
    assert keys == [f"{bucket}/essays/tide.md", f"{bucket}/essays/tide.md"]

    # Converged: further reconciles (the resync timer) read but write nothing to MinIO or Kafka.
    before, reconciled = event_plane_writes(operator), metric(operator.metrics_url, "llmtwin_operator_reconciles_total")
    time.sleep(RESYNC_SECONDS * 2.5)
    assert metric(operator.metrics_url, "llmtwin_operator_reconciles_total") >= reconciled + 2
    assert event_plane_writes(operator) == before


def test_missing_bucket_without_create_is_reported_then_picked_up(kube_cluster, namespace, minio_to_kafka):
    bucket = unique_bucket("archive")
    apply_twin(kube_cluster, "beta", {"bucket": bucket, "createBucket": False})
    twin = wait_condition(kube_cluster, "beta", "StorageReady=False")
    storage = status_condition(twin, "StorageReady")
    assert (storage["status"], storage["reason"]) == ("False", "BucketMissing")
    assert bucket in storage["message"] and "createBucket is false" in storage["message"]
    assert status_condition(twin, "Ready")["reason"] == "StorageNotReady"
    assert twin["status"]["phase"] == "Pending"
    assert bucket_states(twin) == [(bucket, "BucketMissing")]
    assert not minio_to_kafka.client().bucket_exists(bucket)

    minio_to_kafka.client().make_bucket(bucket)  # someone creates it: the next resync wires it
    wait_condition(kube_cluster, "beta", "Ready")
    assert len(twin_configs(minio_to_kafka.client(), bucket, "beta")) == 1


@pytest.mark.parametrize(
    ("source", "reason", "named"),
    [
        ({"credentialsSecretRef": {"name": "nowhere-s3"}}, "SecretMissing", f"{NAMESPACE}/nowhere-s3"),
        (
            {"endpoint": NOTHING_LISTENS, "credentialsSecretRef": {"name": PLATFORM_SECRET}},
            "StorageUnavailable",
            NOTHING_LISTENS,
        ),
    ],
    ids=["secret-missing", "minio-unreachable"],
)
def test_storage_problems_leave_storage_ready_false_with_the_cause(
    kube_cluster, operator, namespace, source, reason, named
):
    name = f"gamma-{reason.lower()}"
    apply_twin(kube_cluster, name, {"bucket": unique_bucket("gamma"), **source})
    twin = wait_condition(kube_cluster, name, "StorageReady=False")
    storage = status_condition(twin, "StorageReady")
    assert storage["reason"] == reason
    assert named in storage["message"]
    assert status_condition(twin, "Ready")["status"] == "False"
    assert operator.proc.poll() is None  # reported, retried by the resync timer, never a crash


def test_delete_removes_only_the_twins_own_notification(kube_cluster, namespace, minio_to_kafka, milvus_server):
    bucket = unique_bucket("shared")
    minio = minio_to_kafka.client()
    minio.make_bucket(bucket)
    foreign = QueueConfig(
        queue=ARN, events=["s3:ObjectCreated:*"], config_id="audit-pdfs", suffix_filter_rule=SuffixFilterRule(".pdf")
    )
    minio.set_bucket_notification(bucket, NotificationConfig(queue_config_list=[foreign]))
    apply_twin(kube_cluster, "keeper", {"bucket": bucket})
    apply_twin(
        kube_cluster,
        "dropper",
        {"bucket": bucket, "prefix": "drafts/"},
        deletionPolicy="Delete",
        vectorStore={"uri": milvus_server.uri},  # Delete also drops the collection: the test server's
    )
    wait_condition(kube_cluster, "keeper", "StorageReady")
    wait_condition(kube_cluster, "dropper", "StorageReady")
    assert len(twin_configs(minio, bucket, "dropper")) == 1

    kube_cluster.kubectl("delete", "llmtwin", "dropper", "-n", NAMESPACE, "--timeout=60s")
    ids = {q.config_id for q in minio.get_bucket_notification(bucket).queue_config_list}
    assert "audit-pdfs" in ids
    assert not twin_configs(minio, bucket, "dropper")
    assert len(twin_configs(minio, bucket, "keeper")) == 1

    # deletionPolicy Retain (the default) keeps the notification.
    kube_cluster.kubectl("delete", "llmtwin", "keeper", "-n", NAMESPACE, "--timeout=60s")
    assert len(twin_configs(minio, bucket, "keeper")) == 1


def test_a_bucket_dropped_from_the_spec_stops_notifying(kube_cluster, namespace, minio_to_kafka, kafka_broker):
    old, new = unique_bucket("before"), unique_bucket("after")
    minio = minio_to_kafka.client()
    apply_twin(kube_cluster, "mover", {"bucket": old})
    wait_condition(kube_cluster, "mover", "StorageReady")
    assert len(twin_configs(minio, old, "mover")) == 1

    apply_twin(kube_cluster, "mover", {"bucket": new})

    def moved() -> dict | None:
        twin = get_json(kube_cluster, "llmtwin", "mover", "-n", NAMESPACE)
        return twin if bucket_states(twin) == [(new, "Notifying")] else None

    wait_for(moved, timeout=30, what="status.buckets to list only the new bucket")
    assert not twin_configs(minio, old, "mover") and len(twin_configs(minio, new, "mover")) == 1

    # On the wire: the old bucket's uploads no longer reach Kafka, the new one's do.
    minio.put_object(old, "stale.md", io.BytesIO(b"not wanted"), 10)
    minio.put_object(new, "fresh.md", io.BytesIO(b"wanted"), 6)
    keys = object_keys(kafka_broker, f"{new}/fresh.md")
    assert f"{new}/fresh.md" in keys and f"{old}/stale.md" not in keys
