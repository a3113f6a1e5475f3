"""Event gateway benchmark against the real Kafka broker, MinIO and API server (all started here).

1. Throughput: N MinIO-format records are produced to the objects topic; the gateway loop (parse,
   route, coalesce, submit Workflows into the real API server, commit) consumes them, and so does a
   bare kafka-python loop (poll + commit, nothing else) in another consumer group: same messages,
   ratio ours/bare. Two workloads: an editing session (each key saved ~10 times, so coalescing
   matters) and a flood of new objects (every event a different object: batched into Workflows of
   spec.ingest.batchSize objects). The flood
   runs twice: with Argo's full Workflow CRD (what the tests install, so every field is validated)
   and with the minimal CRD that Argo's own install manifests ship (no per-field schema).
2. Latency: paced uploads to MinIO -> bucket notification -> Kafka -> gateway -> Workflow created,
   timed from the upload's return to the Workflow's ADDED event on a watch.

Usage: .venv/bin/python benchmarks/bench_events.py [--events 20000] [--uploads 200] [--smoke]

--smoke: the same servers and code paths with a handful of events and uploads (every row filled), to
prove that the benchmark still runs. Its figures mean nothing; it exits non-zero if anything fails: an
exception, a dead-lettered event, an upload whose Workflow never appears, a timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import yaml  # noqa: E402
from kafka import KafkaProducer  # noqa: E402
from report import Worker, exit_on_sigterm, print_table  # noqa: E402

from llmtwin.api.v1alpha1 import LLMTwin  # noqa: E402
from llmtwin.config import PlatformSettings  # noqa: E402
from llmtwin.events.broker import KafkaMessageConsumer, KafkaMessageProducer  # noqa: E402
from llmtwin.events.gateway import DeadLetters, ObjectGateway, poll_batch  # noqa: E402
from llmtwin.events.queue import Message  # noqa: E402
from llmtwin.events.records import minio_message  # noqa: E402
from llmtwin.events.routing import KubernetesTwins  # noqa: E402
from llmtwin.events.submit import KubernetesSubmitter  # noqa: E402
from llmtwin.kube import api_client  # noqa: E402
from llmtwin.operator.eventplane.topics import ensure_topics  # noqa: E402
from llmtwin.sources.changes import decode_changes  # noqa: E402
from llmtwin.workflows.templates import workflow_parameters  # noqa: E402
from tests.harness.kafka import KafkaBroker  # noqa: E402
from tests.harness.kube import KubeCluster, pinned_version  # noqa: E402
from tests.harness.minio import MinioServer, kafka_notify_env, notify_kafka  # noqa: E402
from tests.twins import twin_doc  # noqa: E402

NAMESPACE = "bench"
BUCKET = "bench-notes"
DIRECT_BUCKET = "bench-direct"
COALESCE_SECONDS = 0.3
# The platform the gateway runs on here: MinIO's Kafka target id and the topics it uses.
PLATFORM = PlatformSettings(minio_kafka_target="llmtwin", objects_topic="llmtwin.objects", dlq_topic="bench.dlq")
DRAIN_TIMEOUT = 600  # seconds a throughput workload may take to consume all its events before the run fails
SMOKE = {"events": 40, "uploads": 5}  # --smoke: 4 keys x 10 saves, 10 unique keys, 5 paced uploads per MinIO


class CountedDeadLetters(DeadLetters):
    """Dead letters, remembered: an event the gateway could not turn into a Workflow fails the run
    (the benchmark would be timing something other than the gateway's work)."""

    def __init__(self, bootstrap: str):
        super().__init__(KafkaMessageProducer(bootstrap), PLATFORM.dlq_topic)
        self.reasons: list[str] = []

    def send(self, message: Message, reason: str, detail: str) -> None:
        self.reasons.append(f"{reason}: {detail}")
        super().send(message, reason, detail)

    def check(self) -> None:
        if self.reasons:
            raise RuntimeError(f"{len(self.reasons)} events dead-lettered, e.g. {self.reasons[:3]}")


def produce(bootstrap: str, topic: str, keys: list[str]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=256 * 1024)
    for i, key in enumerate(keys):
        value = minio_message(BUCKET, key, "put", f"etag-{i}", sequencer=f"{i + 1:016X}")
        producer.send(topic, value=value, key=f"{BUCKET}/{key}".encode())
    producer.flush()
    producer.close()


def drain(consumer: KafkaMessageConsumer, total: int, handle) -> float:
    """Seconds to consume (and handle, and commit) `total` messages."""
    seen = 0
    started = None
    deadline = time.monotonic() + DRAIN_TIMEOUT
    try:
        while seen < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"consumed {seen} of {total} messages in {DRAIN_TIMEOUT} s")
            batch = poll_batch(consumer, 500, 1.0, COALESCE_SECONDS if handle else 0.0)
            if batch and started is None:
                started = time.perf_counter()
            if handle and batch:
                handle(batch)
            consumer.commit()
            seen += len(batch)
    finally:
        consumer.close()
    return time.perf_counter() - started


def throughput(bootstrap: str, kubeconfig: Path, topic: str, keys: list[str], stop: threading.Event) -> dict:
    produce(bootstrap, topic, keys)
    bare = drain(KafkaMessageConsumer(bootstrap, topic, f"bare-{topic}"), len(keys), None)
    api = api_client(str(kubeconfig), pool_size=16)
    dead = CountedDeadLetters(bootstrap)
    gateway = ObjectGateway(
        KubernetesTwins(api, PLATFORM.milvus_uri, [NAMESPACE], stop=stop), KubernetesSubmitter(api, stop), dead
    )
    try:
        ours = drain(KafkaMessageConsumer(bootstrap, topic, f"ours-{topic}"), len(keys), gateway.handle)
    finally:
        gateway.close()
    dead.check()
    return {"bare": len(keys) / bare, "ours": len(keys) / ours}


def minimal_workflow_crd() -> Path | None:
    """Argo's install-manifest Workflow CRD, from the module infra/build.sh downloaded."""
    from tests.harness.kube import CACHE

    modules = Path(os.environ.get("GOMODCACHE", CACHE / "go" / "mod"))
    version = pinned_version("ARGO_WORKFLOWS_VERSION")
    crd = modules / f"github.com/argoproj/argo-workflows/v3@{version}/manifests/base/crds/minimal"
    crd /= "argoproj.io_workflows.yaml"
    return crd if crd.exists() else None


def workflow_count(kube: KubeCluster) -> int:
    from kubernetes.client import CustomObjectsApi

    items = CustomObjectsApi(kube.api_client()).list_namespaced_custom_object(
        "argoproj.io", "v1alpha1", NAMESPACE, "workflows"
    )["items"]
    return len(items)


def latency(
    kube: KubeCluster,
    minio: MinioServer,
    bucket: str,
    bootstrap: str,
    uploads: int,
    stop: threading.Event,
    require_all: bool,
) -> list[float]:
    """Upload -> Workflow ADDED, with the gateway consuming in a thread as it does in its pod.
    `require_all`: an upload whose Workflow is not seen within the wait fails the run."""
    from kubernetes import watch
    from kubernetes.client import CustomObjectsApi

    from llmtwin.events.gateway import consume

    api = api_client(str(kube.kubeconfig))
    dead = CountedDeadLetters(bootstrap)
    gateway = ObjectGateway(
        KubernetesTwins(api, PLATFORM.milvus_uri, [NAMESPACE], stop=stop), KubernetesSubmitter(api, stop), dead
    )
    consumer = KafkaMessageConsumer(bootstrap, PLATFORM.objects_topic, f"latency-{bucket}")
    loop = Worker(
        consume, consumer, PLATFORM.objects_topic, gateway.handle, stop, window=COALESCE_SECONDS, name="gateway loop"
    )
    loop.start()
    uploaded: dict[str, float] = {}
    created: dict[str, float] = {}

    def observe() -> None:
        stream = watch.Watch().stream(
            CustomObjectsApi(kube.api_client()).list_namespaced_custom_object,
            "argoproj.io",
            "v1alpha1",
            NAMESPACE,
            "workflows",
            timeout_seconds=600,
        )
        for event in stream:
            changes = decode_changes(workflow_parameters(event["object"])["objects"])
            for change in changes if event["type"] == "ADDED" else []:
                if change.bucket == bucket and change.key.startswith("latency/"):
                    created.setdefault(change.key, time.time())
            if len(created) >= uploads or stop.is_set():
                return

    watcher = Worker(observe, name="workflow watch")
    watcher.start()
    try:
        time.sleep(3)  # the consumer joins its group
        client = minio.client()
        for i in range(uploads):
            key = f"latency/{i:04d}.md"
            client.put_object(bucket, key, io.BytesIO(b"note %d" % i), len(b"note %d" % i))
            uploaded[key] = time.time()
            time.sleep(0.05)  # 20 uploads/s, a busy author-and-friends rate
        deadline = time.monotonic() + 120
        while watcher.is_alive() and time.monotonic() < deadline:
            watcher.join(timeout=0.5)
            loop.check()
        watcher.check()
    finally:
        stop.set()
        loop.join(timeout=30)
        consumer.close()
        gateway.close()
        stop.clear()
    loop.check()
    dead.check()
    missing = sorted(set(uploaded) - set(created))
    if missing and require_all:
        raise TimeoutError(f"{bucket}: no Workflow within 120 s for {len(missing)} of {uploads} uploads: {missing[:5]}")
    if not created:
        raise TimeoutError(f"{bucket}: no Workflow within 120 s for any of {uploads} uploads")
    return sorted(created[k] - uploaded[k] for k in uploaded if k in created)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20000, help="events per throughput workload")
    parser.add_argument("--uploads", type=int, default=200, help="paced uploads for the latency run")
    parser.add_argument("--smoke", action="store_true", help="a handful of events: proves the benchmark runs")
    args = parser.parse_args()
    exit_on_sigterm()
    events, uploads = (SMOKE["events"], SMOKE["uploads"]) if args.smoke else (args.events, args.uploads)

    stop = threading.Event()
    with contextlib.ExitStack() as servers:
        # Each server is stopped on the way out, even one whose start failed half way.
        kube, kafka = KubeCluster(), KafkaBroker()
        for server in (kube, kafka):
            servers.callback(server.stop)
            server.start()
        # MinIO's Kafka target with a queue dir keeps events while Kafka is down, but sends them from a
        # store it re-lists every 3 s (internal/store/store.go, retryInterval); without one it sends
        # at once and drops what Kafka does not take. Both are measured.
        target = PLATFORM.minio_kafka_target
        notify = kafka_notify_env(target, kafka.bootstrap, PLATFORM.objects_topic, Path(kafka.workdir) / "minio-queue")
        queued = MinioServer(notify)
        direct = MinioServer({k: v for k, v in notify.items() if "QUEUE_DIR" not in k})
        for server in (queued, direct):
            servers.callback(server.stop)
            server.start()
        servers.callback(stop.set)  # runs first: background loops end before their servers go

        kube.kubectl("create", "namespace", NAMESPACE)
        doc = twin_doc("bench", NAMESPACE, sources=[{"bucket": BUCKET}, {"bucket": DIRECT_BUCKET}])
        LLMTwin.model_validate(doc)
        kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
        topics = ["editing", "unique", "unique-minimal"]
        ensure_topics(kafka.bootstrap, [PLATFORM.objects_topic, PLATFORM.dlq_topic, *topics])
        for server, bucket in ((queued, BUCKET), (direct, DIRECT_BUCKET)):
            client = server.client()
            client.make_bucket(bucket)
            notify_kafka(client, bucket, target)

        editing_keys = [f"editing/{i // 10:05d}.md" for i in range(events)]  # each saved 10 times in a row
        unique_keys = [f"unique/{i:06d}.md" for i in range(events // 4)]
        before = workflow_count(kube)
        editing = throughput(kafka.bootstrap, kube.kubeconfig, "editing", editing_keys, stop)
        editing_workflows = workflow_count(kube) - before
        before = workflow_count(kube)
        unique = throughput(kafka.bootstrap, kube.kubeconfig, "unique", unique_keys, stop)
        unique_workflows = workflow_count(kube) - before
        direct_delays = latency(kube, direct, DIRECT_BUCKET, kafka.bootstrap, uploads, stop, args.smoke)
        queued_delays = latency(kube, queued, BUCKET, kafka.bootstrap, uploads, stop, args.smoke)
        # Last: the CRD swap must not change the other rows.
        minimal_crd = minimal_workflow_crd()
        if minimal_crd:
            kube.kubectl("replace", "-f", str(minimal_crd))
            minimal_keys = [f"unique-minimal/{i:06d}.md" for i in range(len(unique_keys))]
            minimal = throughput(kafka.bootstrap, kube.kubeconfig, "unique-minimal", minimal_keys, stop)
        elif args.smoke:
            print("note: Argo's minimal Workflow CRD not found (infra/build.sh): its rows are left out")

    def p(delays: list[float], q: float) -> float:
        return delays[min(len(delays) - 1, int(q * len(delays)))]

    rows = [
        ("editing: bare consumer loop (events/s)", f"{editing['bare']:.0f}", f"{events} events, 10 saves per key"),
        ("editing: gateway (events/s)", f"{editing['ours']:.0f}", f"{editing_workflows} Workflows created"),
        ("editing: ratio gateway / bare", f"{editing['ours'] / editing['bare']:.2f}", "target >= 0.5"),
        ("unique keys: bare consumer loop (events/s)", f"{unique['bare']:.0f}", f"{len(unique_keys)} events"),
        (
            "unique keys: gateway (events/s)",
            f"{unique['ours']:.0f}",
            f"{unique_workflows} Workflows (spec.ingest.batchSize objects each); target >= 1000",
        ),
        ("unique keys: ratio gateway / bare", f"{unique['ours'] / unique['bare']:.2f}", "target >= 0.5"),
    ]
    if minimal_crd:
        rows += [
            ("unique keys, minimal CRD: gateway (events/s)", f"{minimal['ours']:.0f}", "Argo's install-manifest CRD"),
            ("unique keys, minimal CRD: ratio", f"{minimal['ours'] / minimal['bare']:.2f}", "same messages, bare loop"),
        ]
    rows += [
        ("upload -> Workflow p50, MinIO direct (s)", f"{p(direct_delays, 0.5):.3f}", f"{len(direct_delays)} seen"),
        ("upload -> Workflow p95, MinIO direct (s)", f"{p(direct_delays, 0.95):.3f}", "target < 2 s"),
        ("upload -> Workflow p50, MinIO queue dir (s)", f"{p(queued_delays, 0.5):.3f}", f"{len(queued_delays)} seen"),
        ("upload -> Workflow p95, MinIO queue dir (s)", f"{p(queued_delays, 0.95):.3f}", "MinIO re-lists every 3 s"),
    ]
    print_table(rows)


if __name__ == "__main__":
    main()
