"""A real single-node Kafka broker (KRaft combined mode, jars from Maven Central) on loopback.

infra/build.sh fetches `kafka_2.13` with a reload4j backend into ~/.cache/llmtwin/kafka-<v>/libs;
this starts it on Java 17 with free ports, a fresh log dir and our own log4j config, and stops it by
process group. `restart()` keeps ports and data, so tests can take the broker away and bring it back.
"""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from tests.harness import free_port, stop_process_group
from tests.harness.kube import CACHE, InfraMissing, pinned_version

LOG4J = """\
log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=${kafka.logs.dir}/server.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
"""


class KafkaBroker:
    def __init__(self, heap: str = "512m"):
        self.home = CACHE / f"kafka-{pinned_version('KAFKA_VERSION')}"
        self.workdir = Path(tempfile.mkdtemp(prefix="llmtwin-kafka-"))
        self.heap = heap
        self.port = free_port()
        self.controller_port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            "java",
            f"-Xmx{self.heap}",
            "-XX:+UseSerialGC",  # two cores: no parallel GC threads fighting the tests
            f"-Dlog4j.configuration=file:{self.workdir / 'log4j.properties'}",
            f"-Dkafka.logs.dir={self.workdir}",
            "-cp",
            f"{self.home / 'libs'}/*",
            main,
            *args,
        ]

    def _configure(self) -> Path:
        config = self.workdir / "server.properties"
        config.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={self.workdir / 'data'}",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=4",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=true",
                    "log.flush.interval.messages=9223372036854775807",
                ]
            )
            + "\n"
        )
        (self.workdir / "log4j.properties").write_text(LOG4J)
        return config

    def start(self) -> KafkaBroker:
        if not (self.home / "libs").is_dir():
            raise InfraMissing(f"{self.home / 'libs'} missing: run infra/build.sh kafka (or `make test`)")
        if not shutil.which("java"):
            raise InfraMissing("java missing: install openjdk-17-jre-headless")
        config = self._configure()
        if not (self.workdir / "data" / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            subprocess.run(
                self._java(
                    "kafka.tools.StorageTool",
                    "format",
                    f"--cluster-id={cluster_id}",
                    "-c",
                    str(config),
                    "--ignore-formatted",
                ),
                check=True,
                capture_output=True,
                timeout=120,
            )
        self._spawn(config)
        return self

    def _spawn(self, config: Path) -> None:
        log = open(self.workdir / "stdout.log", "ab")
        self.proc = subprocess.Popen(
            self._java("kafka.Kafka", str(config)), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.started_at = time.monotonic()
        self.wait_ready()

    def wait_ready(self, timeout: float = 120) -> None:
        """Ready when a client can fetch cluster metadata (the port opens earlier than that)."""
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kafka exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
                try:
                    admin.describe_cluster()
                    return
                finally:
                    admin.close()
            except (OSError, KafkaError):
                time.sleep(0.5)
        raise RuntimeError(f"kafka not ready after {timeout} s:\n{self.log_tail()}")

    def restart(self, while_down: Callable[[], None] | None = None) -> None:
        """Stop and start the same broker (same ports, same data): clients must reconnect by themselves.

        `while_down` runs between the two (e.g. uploads that MinIO must queue until Kafka is back)."""
        self._terminate()
        if while_down:
            while_down()
        self._spawn(self.workdir / "server.properties")

    def log_tail(self, lines: int = 40) -> str:
        text = ""
        for name in ("stdout.log", "server.log"):
            path = self.workdir / name
            if path.exists():
                text += "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text

    def _terminate(self) -> None:
        stop_process_group(self.proc, timeout=30)

    def stop(self) -> None:
        self._terminate()
        shutil.rmtree(self.workdir, ignore_errors=True)
