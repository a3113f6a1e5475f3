"""Session-scoped real servers shared by every suite (each starts only if a test asks for it)."""

import pytest

from tests.harness import kube


@pytest.fixture(scope="session")
def kube_cluster():
    yield from kube.cluster_fixture()
