"""Event gateway benchmark against the real Kafka broker, MinIO and API server (all started here).

1. Throughput: N MinIO-format records are produced to the objects topic; the gateway loop (parse,
   route, coalesce, submit Workflows into the real API server, commit: `consume`, which polls and prepares
   the next batch while the API server creates the last one's Workflows) consumes them, and so does a
   bare kafka-python loop (poll + commit, nothing else) in another consumer group: same messages,
   ratio ours/bare. Two workloads: an editing session (each key saved ~10 times, so coalescing
   matters) and a flood of new objects (every event a different object: batched into Workflows of
   spec.ingest.batchSize objects). The flood runs in 3 paired rounds (a fresh topic each, bare loop then
   gateway; the ratio reported is the median round's, all three are printed), with Argo's full Workflow
   CRD (what the tests install, so every field is validated), then again with the minimal CRD that
   Argo's own install manifests ship (no per-field schema). Each gateway round starts as a restarted
   gateway does: its first batch of each partition asks the API which events Workflows already carry.
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

from llmtwin.api.names import KIND_LABEL, TWIN_LABEL  # noqa: E402
from llmtwin.api.v1alpha1 import LLMTwin  # noqa: E402
from llmtwin.config import PlatformSettings  # noqa: E402
from llmtwin.events.broker import KafkaMessageConsumer, KafkaMessageProducer  # noqa: E402
from llmtwin.events.gateway import DeadLetters, ObjectGateway, consume, poll_batch  # noqa: E402
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
SMOKE = {"events": 40, "uploads": 5}  # --smoke: 4 keys x 10 saves, 40 unique keys, 5 paced uploads per MinIO
FLOOD_ROUNDS = 3  # a flood round takes about a second: one round's ratio moves with the machine's moment


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


def drain(consumer: KafkaMessageConsumer, total: int) -> float:
    """The bare loop: seconds to poll and commit `total` messages, nothing else."""
    seen = 0
    started = None
    deadline = time.monotonic() + DRAIN_TIMEOUT
    try:
        while seen < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"consumed {seen} of {total} messages in {DRAIN_TIMEOUT} s")
            batch = poll_batch(consumer, 500, 1.0, 0.0)
            if batch and started is None:
                started = time.perf_counter()
            consumer.commit()
            seen += len(batch)
    finally:
        consumer.close()
    return time.perf_counter() - started


class UntilCommitted:
    """A consumer that sets `stop` once `total` messages of its fresh topic are committed, timing the first
    poll that returned messages to that commit."""

    def __init__(self, consumer: KafkaMessageConsumer, total: int, stop: threading.Event):
        self.consumer, self.total, self.stop = consumer, total, stop
        self.committed: dict[tuple[str, int], int] = {}
        self.started = self.finished = 0.0

    def poll(self, timeout: float, max_records: int) -> list[Message]:
        messages = self.consumer.poll(timeout, max_records)
        if messages and not self.started:
            self.started = time.perf_counter()
        return messages

    def commit(self, positions=None) -> None:
        self.consumer.commit(positions)
        self.committed |= positions or {}
        if sum(self.committed.values()) >= self.total:  # offsets start at 0 on a fresh topic
            self.finished = time.perf_counter()
            self.stop.set()

    def lag(self) -> dict[int, int]:
        return self.consumer.lag()


def drain_gateway(consumer: KafkaMessageConsumer, total: int, gateway: ObjectGateway) -> float:
    """The gateway's own loop (`consume`: poll and prepare the next batch while the last one's Workflows are
    created): seconds to have `total` messages handled and committed."""
    done = threading.Event()
    counted = UntilCommitted(consumer, total, done)
    loop = Worker(consume, counted, "bench", gateway.prepare, done, window=COALESCE_SECONDS, name="gateway loop")
    loop.start()
    try:
        loop.join(timeout=DRAIN_TIMEOUT)
        loop.check()
        if not counted.finished:
            raise TimeoutError(f"not all {total} messages were committed in {DRAIN_TIMEOUT} s")
    finally:
        done.set()
        loop.join(timeout=30)
        consumer.close()
    return counted.finished - counted.started


def throughput(bootstrap: str, kubeconfig: Path, topic: str, keys: list[str], stop: threading.Event) -> dict:
    produce(bootstrap, topic, keys)
    bare = drain(KafkaMessageConsumer(bootstrap, topic, f"bare-{topic}"), len(keys))
    api = api_client(str(kubeconfig), pool_size=16)
    dead = CountedDeadLetters(bootstrap)
    gateway = ObjectGateway(
        KubernetesTwins(api, PLATFORM.milvus_uri, [NAMESPACE], stop=stop), KubernetesSubmitter(api, stop), dead
    )
    try:
        ours = drain_gateway(KafkaMessageConsumer(bootstrap, topic, f"ours-{topic}"), len(keys), gateway)
    finally:
        gateway.close()
    dead.check()
    return {"bare": len(keys) / bare, "ours": len(keys) / ours}


def flood(kafka: KafkaBroker, kube: KubeCluster, name: str, events: int, stop: threading.Event) -> dict:
    """FLOOD_ROUNDS paired rounds of `events` new objects: the median round by ratio, the ratios of all, and
    the Workflows the gateway created. Each set of rounds starts with no Workflows in the namespace: a
    gateway's start-up replay check reads every Workflow of the namespace out of etcd (see `replay_check`),
    so a history left by earlier rows would be timed too."""
    from kubernetes.client import CustomObjectsApi

    CustomObjectsApi(kube.api_client()).delete_collection_namespaced_custom_object(
        "argoproj.io", "v1alpha1", NAMESPACE, "workflows"
    )
    deadline = time.monotonic() + 60
    while workflow_count(kube):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{workflow_count(kube)} Workflows still there 60 s after their deletion")
        time.sleep(0.2)
    rounds = []
    for r in range(FLOOD_ROUNDS):
        topic = f"{name}-{r}"
        rounds.append(
            throughput(kafka.bootstrap, kube.kubeconfig, topic, [f"{topic}/{i:06d}.md" for i in range(events)], stop)
        )
    rounds.sort(key=lambda result: result["ours"] / result["bare"])
    ratios = ", ".join(f"{result['ours'] / result['bare']:.2f}" for result in rounds)
    return rounds[len(rounds) // 2] | {"ratios": ratios, "workflows": workflow_count(kube)}


def replay_check(kube: KubeCluster, twin: str) -> float:
    """Median seconds of the metadata list a (re)started gateway makes per twin before its first batch."""
    submitter = KubernetesSubmitter(api_client(str(kube.kubeconfig)))
    times = []
    for _ in range(5):
        started = time.perf_counter()
        submitter.existing_metadata(NAMESPACE, {TWIN_LABEL: twin, KIND_LABEL: "ingest"})
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


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

    api = api_client(str(kube.kubeconfig))
    dead = CountedDeadLetters(bootstrap)
    gateway = ObjectGateway(
        KubernetesTwins(api, PLATFORM.milvus_uri, [NAMESPACE], stop=stop), KubernetesSubmitter(api, stop), dead
    )
    consumer = KafkaMessageConsumer(bootstrap, PLATFORM.objects_topic, f"latency-{bucket}")
    loop = Worker(
        consume, consumer, PLATFORM.objects_topic, gateway.prepare, stop, window=COALESCE_SECONDS, name="gateway loop"
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
        topics = ["editing", *(f"{name}-{r}" for name in ("unique", "unique-minimal") for r in range(FLOOD_ROUNDS))]
        ensure_topics(kafka.bootstrap, [PLATFORM.objects_topic, PLATFORM.dlq_topic, *topics])
        for server, bucket in ((queued, BUCKET), (direct, DIRECT_BUCKET)):
            client = server.client()
            client.make_bucket(bucket)
            notify_kafka(client, bucket, target)

        editing_keys = [f"editing/{i // 10:05d}.md" for i in range(events)]  # each saved 10 times in a row
        before = workflow_count(kube)
        editing = throughput(kafka.bootstrap, kube.kubeconfig, "editing", editing_keys, stop)
        editing_workflows = workflow_count(kube) - before
        unique = flood(kafka, kube, "unique", events, stop)
        check_seconds = replay_check(kube, "bench")
        direct_delays = latency(kube, direct, DIRECT_BUCKET, kafka.bootstrap, uploads, stop, args.smoke)
        queued_delays = latency(kube, queued, BUCKET, kafka.bootstrap, uploads, stop, args.smoke)
        # Last: the CRD swap must not change the other rows.
        minimal_crd = minimal_workflow_crd()
        if minimal_crd:
            kube.kubectl("replace", "-f", str(minimal_crd))
            minimal = flood(kafka, kube, "unique-minimal", events, stop)
        elif args.smoke:
            print("note: Argo's minimal Workflow CRD not found (infra/build.sh): its rows are left out")

    def p(delays: list[float], q: float) -> float:
        return delays[min(len(delays) - 1, int(q * len(delays)))]

    rows = [
        ("editing: bare consumer loop (events/s)", f"{editing['bare']:.0f}", f"{events} events, 10 saves per key"),
        ("editing: gateway (events/s)", f"{editing['ours']:.0f}", f"{editing_workflows} Workflows created"),
        ("editing: ratio gateway / bare", f"{editing['ours'] / editing['bare']:.2f}", "target >= 0.5"),
        (
            "unique keys: bare consumer loop (events/s)",
            f"{unique['bare']:.0f}",
            f"{events} events a round, {FLOOD_ROUNDS} rounds; the median round",
        ),
        (
            "unique keys: gateway (events/s)",
            f"{unique['ours']:.0f}",
            f"{unique['workflows']} Workflows in all (spec.ingest.batchSize objects each); target >= 1000",
        ),
        (
            "unique keys: ratio gateway / bare",
            f"{unique['ours'] / unique['bare']:.2f}",
            f"target >= 0.5; rounds {unique['ratios']}",
        ),
        (
            "replay check after a start (ms)",
            f"{check_seconds * 1000:.0f}",
            f"metadata list of {unique['workflows']} Workflows, once per twin and partition assignment",
        ),
    ]
    if minimal_crd:
        rows += [
            ("unique keys, minimal CRD: gateway (events/s)", f"{minimal['ours']:.0f}", "Argo's install-manifest CRD"),
            (
                "unique keys, minimal CRD: ratio",
                f"{minimal['ours'] / minimal['bare']:.2f}",
                f"rounds {minimal['ratios']}",
            ),
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
