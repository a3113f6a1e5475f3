"""Operator benchmark: 100 LLMTwins on a real API server.

Measures, in one run: time until all 100 are reconciled (Ready, observedGeneration current); API
writes per twin on the first reconcile and on no-op reconciles (from the API server's own
`apiserver_request_total`, so kopf's writes count too); operator RSS and CPU. The baseline is the
floor for the same work: `kubectl apply --server-side` of exactly the objects the operator renders for
those 100 twins, with no operator at all.

Usage: .venv/bin/python benchmarks/bench_operator.py [--twins 100] [--resync 10]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from report import print_table  # noqa: E402

from llmtwin.api.v1alpha1 import LLMTwin  # noqa: E402
from llmtwin.operator.builders import children  # noqa: E402
from llmtwin.settings import Settings  # noqa: E402
from tests.harness import free_port, stop_process_group  # noqa: E402
from tests.harness.kafka import KafkaBroker  # noqa: E402
from tests.harness.kube import KubeCluster  # noqa: E402
from tests.harness.minio import MinioServer, kafka_notify_env  # noqa: E402

CHILD_RESOURCES = {
    "configmaps",
    "services",
    "workflowtemplates",
    "rollouts",
    "analysistemplates",
    "prometheusrules",
}
WRITE_VERBS = {"POST", "PUT", "PATCH", "APPLY", "DELETE"}
_SAMPLE = re.compile(r"^apiserver_request_total\{([^}]*)\}\s+([0-9.e+]+)$")


def writes(cluster: KubeCluster) -> dict[str, float]:
    """Write requests by resource, from the API server's metrics (kubectl's own applies included)."""
    out: dict[str, float] = {}
    for line in cluster.kubectl("get", "--raw", "/metrics").stdout.splitlines():
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get("verb") not in WRITE_VERBS:
            continue
        resource = labels.get("resource", "")
        if resource in CHILD_RESOURCES or resource == "llmtwins":
            key = f"{resource}/{labels.get('subresource') or '-'}:{labels['verb']}"
            out[key] = out.get(key, 0) + float(m.group(2))
    return out


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def twin_docs(n: int, namespace: str) -> list[dict]:
    base = yaml.safe_load((ROOT / "examples/twin.yaml").read_text())
    docs = []
    for i in range(n):
        doc = json.loads(json.dumps(base))
        doc["metadata"] = {"name": f"bench-{i:03d}", "namespace": namespace}
        docs.append(doc)
    return docs


def all_reconciled(cluster: KubeCluster, namespace: str, n: int) -> bool:
    items = json.loads(cluster.kubectl("get", "llmtwins", "-n", namespace, "-o", "json").stdout)["items"]
    done = 0
    for item in items:
        status = item.get("status", {})
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
        done += ready and status.get("observedGeneration") == item["metadata"]["generation"]
    return done == n


def scrape(port: int, name: str) -> float:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--twins", type=int, default=100)
    parser.add_argument("--resync", type=float, default=10.0, help="operator resync interval (s)")
    args = parser.parse_args()
    n = args.twins

    # A twin is Ready once its event plane is wired: the operator needs a real MinIO and Kafka too.
    cluster, kafka = KubeCluster().start(), KafkaBroker().start()
    minio = MinioServer(
        kafka_notify_env("llmtwin", kafka.bootstrap, "llmtwin.objects", Path(kafka.workdir) / "minio-queue")
    ).start()
    operator = None
    try:
        for manifest in ("namespace.yaml", "rbac.yaml"):
            cluster.kubectl("apply", "-f", str(ROOT / "manifests/operator" / manifest))
        for ns in ("bench", "baseline"):
            cluster.kubectl("create", "namespace", ns)
        cluster.kubectl(
            "create", "secret", "generic", "llmtwin-s3", "-n", "bench",
            f"--from-literal=accessKey={minio.access_key}", f"--from-literal=secretKey={minio.secret_key}",
        )  # fmt: skip

        # Baseline: the same objects, applied directly.
        rendered = []
        for doc in twin_docs(n, "baseline"):
            rendered += children(LLMTwin.model_validate(doc), Settings())
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            yaml.safe_dump_all(rendered, f)
        started = time.perf_counter()
        cluster.kubectl("apply", "--server-side", "--field-manager=baseline", "-f", f.name, timeout=900)
        baseline_seconds = time.perf_counter() - started

        # The operator, under its own ServiceAccount and RBAC.
        kubeconfig = cluster.service_account_kubeconfig("llmtwin-system", "llmtwin-operator")
        metrics_port = free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "LLMTWIN_RESYNC_SECONDS": str(args.resync),
            "LLMTWIN_METRICS_PORT": str(metrics_port),
            "LLMTWIN_METRICS_ADDR": "127.0.0.1",
            "LLMTWIN_S3_ENDPOINT": minio.endpoint,
            "LLMTWIN_KAFKA_BOOTSTRAP": kafka.bootstrap,
            "LLMTWIN_MINIO_KAFKA_TARGET": "llmtwin",
        }
        log = open(Path(tempfile.gettempdir()) / "bench-operator.log", "wb")
        operator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llmtwin.cli",
                "operator",
                f"--liveness=http://127.0.0.1:{free_port()}/healthz",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc = psutil.Process(operator.pid)
        peak_rss = [0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                try:
                    peak_rss[0] = max(peak_rss[0], proc.memory_info().rss)
                except psutil.Error:
                    return
                time.sleep(0.2)

        threading.Thread(target=sample, daemon=True).start()
        time.sleep(3)  # operator startup is not part of the reconcile time
        cpu_start = sum(proc.cpu_times()[:2])
        before = writes(cluster)
        docs = yaml.safe_dump_all(twin_docs(n, "bench"))
        started = time.perf_counter()
        cluster.kubectl("apply", "-f", "-", input=docs)
        while not all_reconciled(cluster, "bench", n):
            if time.perf_counter() - started > 600:
                raise SystemExit("not all twins reconciled in 600 s")
            time.sleep(0.5)
        reconcile_seconds = time.perf_counter() - started
        cpu_first = sum(proc.cpu_times()[:2]) - cpu_start
        time.sleep(2)  # trailing status patches land
        first = delta(writes(cluster), before)
        first.pop("llmtwins/-:POST", None)  # kubectl's creation of the twins themselves

        reconciles_before = scrape(metrics_port, "llmtwin_operator_reconciles_total")
        quiet_before = writes(cluster)
        time.sleep(args.resync * 2.5)
        quiet = delta(writes(cluster), quiet_before)
        noop_reconciles = scrape(metrics_port, "llmtwin_operator_reconciles_total") - reconciles_before
        stop.set()

        first_total = sum(first.values())
        rows = [
            ("twins", f"{n}", ""),
            (
                "baseline: kubectl apply --server-side of the same objects",
                f"{baseline_seconds:.1f} s",
                f"{len(rendered)} objects",
            ),
            ("operator: apply -> all Ready", f"{reconcile_seconds:.1f} s", "target < 60 s"),
            ("operator / baseline time", f"{reconcile_seconds / baseline_seconds:.2f}x", ""),
            (
                "API writes per twin, first reconcile",
                f"{first_total / n:.1f}",
                ", ".join(f"{k}={v:.0f}" for k, v in sorted(first.items())),
            ),
            ("no-op reconciles observed", f"{noop_reconciles:.0f}", f"in {args.resync * 2.5:.0f} s"),
            ("API writes during no-op reconciles", f"{sum(quiet.values()):.0f}", "target 0"),
            ("operator peak RSS", f"{peak_rss[0] / 2**20:.0f} MB", "target < 250 MB"),
            ("operator CPU for the first reconciles", f"{cpu_first:.1f} s", ""),
        ]
        print_table(rows)
    finally:
        stop_process_group(operator, timeout=30)
        for server in (minio, kafka, cluster):
            server.stop()


if __name__ == "__main__":
    main()
