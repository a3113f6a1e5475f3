"""A real MinIO server (built from the Go module proxy by infra/build.sh) on loopback."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.harness import free_port, stop_process_group
from tests.harness.kube import BIN, InfraMissing


class MinioServer:
    def __init__(self, env: dict[str, str] | None = None):
        self.workdir = Path(tempfile.mkdtemp(prefix="llmtwin-minio-"))
        self.access_key = "llmtwin-test"
        self.secret_key = "llmtwin-test-" + os.urandom(6).hex()
        self.extra_env = env or {}
        self.proc: subprocess.Popen | None = None
        self.endpoint = ""

    def start(self) -> MinioServer:
        if not (BIN / "minio").exists():
            raise InfraMissing(f"{BIN / 'minio'} missing: run infra/build.sh minio (or `make test`)")
        port = free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "MINIO_ROOT_USER": self.access_key,
            "MINIO_ROOT_PASSWORD": self.secret_key,
            "MINIO_BROWSER": "off",
            "MINIO_UPDATE": "off",
            # How it names itself in notifications (x-minio-origin-endpoint), which the gateway routes by:
            # the README asks for the URL the twins name, as here.
            "MINIO_SERVER_URL": self.endpoint,
            **self.extra_env,
        }
        log = open(self.workdir / "minio.log", "wb")
        self.proc = subprocess.Popen(
            [
                str(BIN / "minio"),
                "server",
                str(self.workdir / "data"),
                "--address",
                f"127.0.0.1:{port}",
                "--console-address",
                f"127.0.0.1:{free_port()}",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((self.workdir / "minio.log").read_text(errors="replace")[-2000:])
            try:
                urllib.request.urlopen(f"{self.endpoint}/minio/health/ready", timeout=1)
                return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("MinIO not ready after 60 s")

    def client(self):
        from minio import Minio

        return Minio(self.endpoint.removeprefix("http://"), self.access_key, self.secret_key, secure=False)

    def stop(self) -> None:
        stop_process_group(self.proc)
        shutil.rmtree(self.workdir, ignore_errors=True)


def kafka_notify_env(target_id: str, bootstrap: str, topic: str, queue_dir: Path) -> dict[str, str]:
    """MinIO's native Kafka notification target `<target_id>` (the queue dir keeps events while Kafka is down)."""
    suffix = target_id  # the ARN names the target exactly as spelled here
    return {
        f"MINIO_NOTIFY_KAFKA_ENABLE_{suffix}": "on",
        f"MINIO_NOTIFY_KAFKA_BROKERS_{suffix}": bootstrap,
        f"MINIO_NOTIFY_KAFKA_TOPIC_{suffix}": topic,
        f"MINIO_NOTIFY_KAFKA_QUEUE_DIR_{suffix}": str(queue_dir),
    }


def notify_kafka(client, bucket: str, target_id: str, prefix: str = "", suffix: str = "") -> None:
    """Make `bucket` notify MinIO's Kafka target `target_id` of creates and removals, with a config owned
    by no twin (what the operator does for a twin, for tests and benchmarks that run without it)."""
    from llmtwin.api.v1alpha1 import SourceSpec
    from llmtwin.operator.eventplane.buckets import put_queue_configs
    from llmtwin.operator.eventplane.plan import desired_queue_config, kafka_target_arn

    wanted = desired_queue_config(SourceSpec(bucket=bucket, prefix=prefix, suffix=suffix), kafka_target_arn(target_id))
    put_queue_configs(client, bucket, [wanted], lambda config_id: config_id == wanted.config_id)
