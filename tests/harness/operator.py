"""The operator under test: `llmtwin operator` as a real process (tests/conftest.py starts it as the
ServiceAccount from manifests/operator/rbac.yaml, so the RBAC we ship is proven sufficient), wired
to the real MinIO and Kafka: a twin is Ready only once its event plane is."""

from __future__ import annotations

import contextlib
import json
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

from tests.harness import free_port
from tests.harness.process import CliProcess

OBJECTS_TOPIC = "llmtwin.objects"
MINIO_KAFKA_TARGET = "llmtwin"  # MinIO's Kafka notification target id in the test servers
RESYNC_SECONDS = 2
PROMOTION_POLL_SECONDS = 1
PLATFORM_SECRET = "llmtwin-s3"
# Names no one else uses, so a test can tell that the operator created them.
ALERTS_TOPIC = f"llmtwin.alerts.{uuid.uuid4().hex[:6]}"
DLQ_TOPIC = f"llmtwin.dlq.{uuid.uuid4().hex[:6]}"


class OperatorProcess(CliProcess):
    """`llmtwin operator` with a fast resync, live when kopf's liveness endpoint answers."""

    def __init__(self, kubeconfig: Path, log_dir: Path, env: dict[str, str], python: str | None = None):
        liveness = f"http://127.0.0.1:{free_port()}/healthz"
        env = {
            "KUBECONFIG": str(kubeconfig),
            "LLMTWIN_RESYNC_SECONDS": str(RESYNC_SECONDS),
            "LLMTWIN_PROMOTION_POLL_SECONDS": str(PROMOTION_POLL_SECONDS),
            "LLMTWIN_METRICS_PORT": str(free_port()),
            "LLMTWIN_METRICS_ADDR": "127.0.0.1",
            **env,
        }
        super().__init__(["operator", f"--liveness={liveness}"], env, log_dir, liveness, "operator", python)
        self.metrics_url = f"http://127.0.0.1:{env['LLMTWIN_METRICS_PORT']}/metrics"

    @contextlib.contextmanager
    def paused(self, sig: int = signal.SIGTERM) -> Iterator[None]:
        """Stopped by `sig` for the duration (SIGKILL: no clean-up at all), then started again."""
        self.kill(sig)
        try:
            yield
        finally:
            self.start()


def get_json(kube_cluster, *args) -> dict:
    return json.loads(kube_cluster.kubectl("get", *args, "-o", "json").stdout)


def platform_env(kafka_broker, minio) -> dict[str, str]:
    """The operator's platform settings for the test servers."""
    return {
        "LLMTWIN_S3_ENDPOINT": minio.endpoint,
        "LLMTWIN_S3_SECRET": PLATFORM_SECRET,
        "LLMTWIN_MINIO_KAFKA_TARGET": MINIO_KAFKA_TARGET,
        "LLMTWIN_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
        "LLMTWIN_OBJECTS_TOPIC": OBJECTS_TOPIC,
        "LLMTWIN_ALERTS_TOPIC": ALERTS_TOPIC,
        "LLMTWIN_DLQ_TOPIC": DLQ_TOPIC,
    }


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
