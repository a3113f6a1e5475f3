"""Session-scoped real servers shared by every suite (each starts only if a test asks for it)."""

import pytest

from tests.harness.kafka import KafkaBroker
from tests.harness.kube import KubeCluster, server_fixture
from tests.harness.minio import MinioServer, kafka_notify_env


@pytest.fixture(scope="session")
def kube_cluster():
    yield from server_fixture(KubeCluster())


@pytest.fixture(scope="session")
def minio_server():
    yield from server_fixture(MinioServer())


@pytest.fixture(scope="session")
def kafka_broker():
    yield from server_fixture(KafkaBroker())


OBJECTS_TOPIC = "llmtwin.objects"
MINIO_KAFKA_TARGET = "llmtwin"


@pytest.fixture(scope="session")
def minio_to_kafka(kafka_broker, tmp_path_factory):
    """A MinIO whose native Kafka target `llmtwin` publishes bucket notifications to the objects topic."""
    queue_dir = tmp_path_factory.mktemp("minio-queue")
    env = kafka_notify_env(MINIO_KAFKA_TARGET, kafka_broker.bootstrap, OBJECTS_TOPIC, queue_dir)
    yield from server_fixture(MinioServer(env))
