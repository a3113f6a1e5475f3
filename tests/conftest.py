"""Session-scoped real servers shared by every suite (each starts only if a test asks for it)."""

import pytest

from tests.harness.kube import KubeCluster, server_fixture
from tests.harness.minio import MinioServer


@pytest.fixture(scope="session")
def kube_cluster():
    yield from server_fixture(KubeCluster())


@pytest.fixture(scope="session")
def minio_server():
    yield from server_fixture(MinioServer())
