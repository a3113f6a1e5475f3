"""The operator under test: `llmtwin operator` as a real process, authenticated as the
ServiceAccount from manifests/operator/rbac.yaml (so the RBAC we ship is proven sufficient), wired
to the real MinIO and Kafka: a twin is Ready only once its event plane is."""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path

import pytest

from tests.conftest import MINIO_KAFKA_TARGET, OBJECTS_TOPIC
from tests.harness import free_port
from tests.harness.process import CliProcess

ROOT = Path(__file__).resolve().parents[2]
RESYNC_SECONDS = 2
PLATFORM_SECRET = "llmtwin-s3"
# Names no one else uses, so a test can tell that the operator created them.
ALERTS_TOPIC = f"llmtwin.alerts.{uuid.uuid4().hex[:6]}"
DLQ_TOPIC = f"llmtwin.dlq.{uuid.uuid4().hex[:6]}"


def operator_process(kubeconfig: Path, log_dir: Path, env: dict[str, str]) -> CliProcess:
    """`llmtwin operator` with a fast resync, live when kopf's liveness endpoint answers."""
    port = free_port()
    env = {"KUBECONFIG": str(kubeconfig), "LLMTWIN_RESYNC_SECONDS": str(RESYNC_SECONDS), **env}
    liveness = f"http://127.0.0.1:{port}/healthz"
    return CliProcess(["operator", f"--liveness={liveness}"], env, log_dir, liveness, "operator")


@pytest.fixture(scope="session")
def operator_sa_kubeconfig(kube_cluster) -> Path:
    for manifest in ("namespace.yaml", "rbac.yaml", "workflow-rbac.yaml"):
        kube_cluster.kubectl("apply", "-f", str(ROOT / "manifests/operator" / manifest))
    return kube_cluster.service_account_kubeconfig("llmtwin-system", "llmtwin-operator")


def create_s3_secret(kube_cluster, minio, name: str = PLATFORM_SECRET, namespace: str = "default") -> None:
    """A Secret with MinIO's keys under the key names the operator and the workflows read."""
    kube_cluster.kubectl(
        "create",
        "secret",
        "generic",
        name,
        "-n",
        namespace,
        f"--from-literal=accessKey={minio.access_key}",
        f"--from-literal=secretKey={minio.secret_key}",
    )


@pytest.fixture(scope="session")
def operator(operator_sa_kubeconfig, kube_cluster, kafka_broker, minio_to_kafka, tmp_path_factory):
    create_s3_secret(kube_cluster, minio_to_kafka)
    env = {
        "LLMTWIN_S3_ENDPOINT": minio_to_kafka.endpoint,
        "LLMTWIN_S3_SECRET": PLATFORM_SECRET,
        "LLMTWIN_MINIO_KAFKA_TARGET": MINIO_KAFKA_TARGET,
        "LLMTWIN_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
        "LLMTWIN_OBJECTS_TOPIC": OBJECTS_TOPIC,
        "LLMTWIN_ALERTS_TOPIC": ALERTS_TOPIC,
        "LLMTWIN_DLQ_TOPIC": DLQ_TOPIC,
        "LLMTWIN_METRICS_PORT": str(free_port()),
        "LLMTWIN_METRICS_ADDR": "127.0.0.1",
    }
    proc = operator_process(operator_sa_kubeconfig, tmp_path_factory.mktemp("operator"), env)
    proc.start()
    yield proc
    proc.kill(signal.SIGTERM)


def get_json(kube_cluster, *args) -> dict:
    return json.loads(kube_cluster.kubectl("get", *args, "-o", "json").stdout)
