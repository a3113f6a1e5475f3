"""The event gateway as a real process under its own ServiceAccount, against the real API server,
Kafka broker and MinIO (whose native Kafka target publishes the bucket notifications)."""

from __future__ import annotations

import signal
import uuid

import pytest
import yaml

from llmtwin.operator.eventplane.topics import ensure_topics
from tests.harness import free_port
from tests.harness.minio import notify_kafka
from tests.harness.operator import MINIO_KAFKA_TARGET, OBJECTS_TOPIC
from tests.harness.process import CliProcess
from tests.twins import ROOT
from tests.twins import twin_doc as example_doc

NAMESPACE = "events"
TWIN = "scribe"
BUCKET = "scribe-notes"
ALERTS_TOPIC = "llmtwin.alerts"
QUERIES_TOPIC = "llmtwin.queries"
DLQ_TOPIC = "llmtwin.dlq"
MAX_BODY_BYTES = 16 * 1024
WEBHOOK_TOKEN = "test-token-" + uuid.uuid4().hex[:8]


def twin_doc(name: str, bucket: str, cooldown: str = "1h") -> dict:
    doc = example_doc(name, NAMESPACE, sources=[{"bucket": bucket}])
    doc["spec"]["training"]["cooldown"] = cooldown
    return doc


@pytest.fixture(scope="module")
def event_plane(kube_cluster, kafka_broker, minio_to_kafka):
    """Namespace, twin, bucket with our notification, topics: what the operator sets up for a twin."""
    kube_cluster.kubectl("apply", "-f", str(ROOT / "manifests/operator/namespace.yaml"))
    kube_cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    kube_cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(twin_doc(TWIN, BUCKET)))
    ensure_topics(kafka_broker.bootstrap, [OBJECTS_TOPIC, ALERTS_TOPIC, DLQ_TOPIC, QUERIES_TOPIC])
    client = minio_to_kafka.client()
    if not client.bucket_exists(BUCKET):
        client.make_bucket(BUCKET)
    notify_kafka(client, BUCKET, MINIO_KAFKA_TARGET)
    return client


@pytest.fixture(scope="module")
def gateway(kube_cluster, kafka_broker, minio_to_kafka, event_plane, tmp_path_factory):
    kube_cluster.kubectl("apply", "-f", str(ROOT / "manifests/gateway/rbac.yaml"))
    kubeconfig = kube_cluster.service_account_kubeconfig("llmtwin-system", "llmtwin-gateway")
    workdir = tmp_path_factory.mktemp("gateway")
    (workdir / "token").write_text(WEBHOOK_TOKEN)
    port = free_port()
    proc = CliProcess(
        ["gateway", "--port", str(port)],
        {
            "KUBECONFIG": str(kubeconfig),
            "LLMTWIN_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
            "LLMTWIN_S3_ENDPOINT": minio_to_kafka.endpoint,  # the platform's MinIO: sources naming none
            "LLMTWIN_OBJECTS_TOPIC": OBJECTS_TOPIC,
            "LLMTWIN_ALERTS_TOPIC": ALERTS_TOPIC,
            "LLMTWIN_DLQ_TOPIC": DLQ_TOPIC,
            "LLMTWIN_QUERIES_TOPIC": QUERIES_TOPIC,
            "LLMTWIN_DRIFT_EVALUATE_SECONDS": "1",
            "LLMTWIN_WEBHOOK_TOKEN_FILE": str(workdir / "token"),
            # Small, so the 413 test's body fits in the socket buffer (no broken pipe before the reply).
            "LLMTWIN_GATEWAY_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
            # A flood of 1,000 uploads is handled as one batch (test_a_thousand_new_objects_...).
            "LLMTWIN_GATEWAY_MAX_BATCH_MESSAGES": "2000",
            "LLMTWIN_GATEWAY_GROUP": f"gateway-test-{uuid.uuid4().hex[:6]}",
        },
        workdir,
        f"http://127.0.0.1:{port}/healthz",
        "gateway",
    )
    proc.url = f"http://127.0.0.1:{port}"
    proc.start()
    yield proc
    proc.kill(signal.SIGTERM)


ARGO = ("argoproj.io", "v1alpha1")


def workflows(kube_cluster, kind: str, twin: str = TWIN, namespace: str = NAMESPACE) -> list[dict]:
    from kubernetes.client import CustomObjectsApi

    api = CustomObjectsApi(kube_cluster.api_client())
    selector = f"llmtwin.dev/twin={twin},llmtwin.dev/kind={kind}"
    return api.list_namespaced_custom_object(*ARGO, namespace, "workflows", label_selector=selector)["items"]
