"""Event gateway benchmark against the real Kafka broker, MinIO and API server (all started here).

1. Throughput: N MinIO-format records are produced to the objects topic; the gateway loop (parse,
   route, coalesce, submit Workflows into the real API server, commit) consumes them, and so does a
   bare kafka-python loop (poll + commit, nothing else) in another consumer group: same messages,
   ratio ours/bare. Two workloads: an editing session (each key saved ~10 times, so coalescing
   matters) and the worst case (every event a different object: one Workflow each). The worst case
   runs twice: with Argo's full Workflow CRD (what the tests install, so every field is validated)
   and with the minimal CRD that Argo's own install manifests ship (no per-field schema).
2. Latency: paced uploads to MinIO -> bucket notification -> Kafka -> gateway -> Workflow created,
   timed from the upload's return to the Workflow's ADDED event on a watch.

Usage: .venv/bin/python benchmarks/bench_events.py [--events 20000] [--uploads 200]
"""

from __future__ import annotations

import argparse
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
from report import print_table  # noqa: E402

from llmtwin.api.v1alpha1 import LLMTwin, SourceSpec  # noqa: E402
from llmtwin.events.broker import KafkaMessageConsumer, KafkaMessageProducer  # noqa: E402
from llmtwin.events.gateway import DeadLetters, ObjectGateway, poll_batch  # noqa: E402
from llmtwin.events.records import minio_message  # noqa: E402
from llmtwin.events.routing import KubernetesTwins  # noqa: E402
from llmtwin.events.submit import KubernetesSubmitter, kube_api_client  # noqa: E402
from llmtwin.operator.eventplane import ensure_bucket_notification, ensure_topics, kafka_target_arn  # noqa: E402
from llmtwin.settings import Settings  # noqa: E402
from tests.harness.kafka import KafkaBroker  # noqa: E402
from tests.harness.kube import KubeCluster, pinned_version  # noqa: E402
from tests.harness.minio import MinioServer, kafka_notify_env  # noqa: E402

NAMESPACE = "bench"
BUCKET = "bench-notes"
DIRECT_BUCKET = "bench-direct"
COALESCE_SECONDS = 0.3


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
    while seen < total:
        batch = poll_batch(consumer, 500, 1.0, COALESCE_SECONDS if handle else 0.0)
        if batch and started is None:
            started = time.perf_counter()
        if handle and batch:
            handle(batch)
        consumer.commit()
        seen += len(batch)
    return time.perf_counter() - started


def throughput(bootstrap: str, kubeconfig: Path, topic: str, keys: list[str], stop: threading.Event) -> dict:
    produce(bootstrap, topic, keys)
    bare = drain(KafkaMessageConsumer(bootstrap, topic, f"bare-{topic}"), len(keys), None)
    api = kube_api_client(str(kubeconfig), pool_size=16)
    gateway = ObjectGateway(
        KubernetesTwins(api, [NAMESPACE], stop=stop),
        KubernetesSubmitter(api, stop),
        DeadLetters(KafkaMessageProducer(bootstrap), "bench.dlq"),
    )
    ours = drain(KafkaMessageConsumer(bootstrap, topic, f"ours-{topic}"), len(keys), gateway.handle)
    gateway.close()
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
    kube: KubeCluster, minio: MinioServer, bucket: str, bootstrap: str, uploads: int, stop: threading.Event
) -> list[float]:
    """Upload -> Workflow ADDED, with the gateway consuming in a thread as it does in its pod."""
    from kubernetes import watch
    from kubernetes.client import CustomObjectsApi

    from llmtwin.events.gateway import consume

    api = kube_api_client(str(kube.kubeconfig))
    dead = DeadLetters(KafkaMessageProducer(bootstrap), "bench.dlq")
    gateway = ObjectGateway(KubernetesTwins(api, [NAMESPACE], stop=stop), KubernetesSubmitter(api, stop), dead)
    consumer = KafkaMessageConsumer(bootstrap, "llmtwin.objects", f"latency-{bucket}")
    loop = threading.Thread(
        target=consume, args=(consumer, "llmtwin.objects", gateway.handle, stop), kwargs={"window": COALESCE_SECONDS}
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
            params = {p["name"]: p.get("value") for p in event["object"]["spec"]["arguments"]["parameters"]}
            if event["type"] == "ADDED" and params["bucket"] == bucket and params["key"].startswith("latency/"):
                created.setdefault(params["key"], time.time())
            if len(created) >= uploads or stop.is_set():
                return

    watcher = threading.Thread(target=observe, daemon=True)
    watcher.start()
    time.sleep(3)  # the consumer joins its group
    client = minio.client()
    for i in range(uploads):
        key = f"latency/{i:04d}.md"
        client.put_object(bucket, key, io.BytesIO(b"note %d" % i), len(b"note %d" % i))
        uploaded[key] = time.time()
        time.sleep(0.05)  # 20 uploads/s, a busy author-and-friends rate
    watcher.join(timeout=120)
    stop.set()
    loop.join(timeout=30)
    stop.clear()
    return sorted(created[k] - uploaded[k] for k in uploaded if k in created)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20000, help="events per throughput workload")
    parser.add_argument("--uploads", type=int, default=200, help="paced uploads for the latency run")
    args = parser.parse_args()

    kube, kafka = KubeCluster().start(), KafkaBroker().start()
    # MinIO's Kafka target with a queue dir keeps events while Kafka is down, but sends them from a
    # store it re-lists every 3 s (internal/store/store.go, retryInterval); without one it sends
    # at once and drops what Kafka does not take. Both are measured.
    notify = kafka_notify_env("llmtwin", kafka.bootstrap, "llmtwin.objects", Path(kafka.workdir) / "minio-queue")
    queued = MinioServer(notify).start()
    direct = MinioServer({k: v for k, v in notify.items() if "QUEUE_DIR" not in k}).start()
    stop = threading.Event()
    try:
        kube.kubectl("create", "namespace", NAMESPACE)
        doc = yaml.safe_load((ROOT / "examples/twin.yaml").read_text())
        doc["metadata"] = {"name": "bench", "namespace": NAMESPACE}
        doc["spec"]["sources"] = [{"bucket": BUCKET}, {"bucket": DIRECT_BUCKET}]
        LLMTwin.model_validate(doc)
        kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
        ensure_topics(kafka.bootstrap, ["llmtwin.objects", "editing", "unique", "unique-minimal", "bench.dlq"])
        for server, bucket in ((queued, BUCKET), (direct, DIRECT_BUCKET)):
            client = server.client()
            client.make_bucket(bucket)
            ensure_bucket_notification(client, SourceSpec(bucket=bucket), kafka_target_arn(Settings()))

        editing_keys = [f"editing/{i // 10:05d}.md" for i in range(args.events)]  # each saved 10 times in a row
        unique_keys = [f"unique/{i:06d}.md" for i in range(args.events // 4)]
        before = workflow_count(kube)
        editing = throughput(kafka.bootstrap, kube.kubeconfig, "editing", editing_keys, stop)
        editing_workflows = workflow_count(kube) - before
        unique = throughput(kafka.bootstrap, kube.kubeconfig, "unique", unique_keys, stop)
        direct_delays = latency(kube, direct, DIRECT_BUCKET, kafka.bootstrap, args.uploads, stop)
        queued_delays = latency(kube, queued, BUCKET, kafka.bootstrap, args.uploads, stop)
        # Last: the CRD swap must not change the other rows.
        minimal_crd = minimal_workflow_crd()
        if minimal_crd:
            kube.kubectl("replace", "-f", str(minimal_crd))
            minimal_keys = [f"unique-minimal/{i:06d}.md" for i in range(len(unique_keys))]
            minimal = throughput(kafka.bootstrap, kube.kubeconfig, "unique-minimal", minimal_keys, stop)
    finally:
        stop.set()
        for server in (queued, direct, kafka, kube):
            server.stop()

    def p(delays: list[float], q: float) -> float:
        return delays[min(len(delays) - 1, int(q * len(delays)))]

    rows = [
        ("editing: bare consumer loop (events/s)", f"{editing['bare']:.0f}", f"{args.events} events, 10 saves per key"),
        ("editing: gateway (events/s)", f"{editing['ours']:.0f}", f"{editing_workflows} Workflows created"),
        ("editing: ratio gateway / bare", f"{editing['ours'] / editing['bare']:.2f}", "target >= 0.5"),
        ("unique keys: bare consumer loop (events/s)", f"{unique['bare']:.0f}", f"{len(unique_keys)} events"),
        ("unique keys: gateway (events/s)", f"{unique['ours']:.0f}", "one Workflow per event (worst case)"),
        ("unique keys: ratio gateway / bare", f"{unique['ours'] / unique['bare']:.2f}", "bound by API-server creates"),
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
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    main()
