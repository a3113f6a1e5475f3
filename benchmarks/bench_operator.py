"""Operator benchmark: 100 LLMTwins on a real API server.

Measures, in one run: time until all 100 are reconciled (Ready, observedGeneration current); API
writes per twin on the first reconcile and on no-op reconciles (from the API server's own
`apiserver_request_total`, so kopf's writes count too); operator RSS and CPU. The baseline is the
floor for the same work: `kubectl apply --server-side` of exactly the objects the operator renders for
those 100 twins, with no operator at all.

Usage: .venv/bin/python benchmarks/bench_operator.py [--twins 100] [--resync 10] [--smoke]

--smoke: the same servers, operator and baseline with 3 twins and a 2 s resync (every row filled), to
prove that the benchmark still runs. Its figures mean nothing; it exits non-zero if anything fails: an
exception, the operator exiting, twins not all Ready in time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from report import exit_on_sigterm, print_table  # noqa: E402

from llmtwin.api.v1alpha1 import LLMTwin  # noqa: E402
from llmtwin.config import OperatorSettings, PlatformSettings  # noqa: E402
from llmtwin.operator.builders import children  # noqa: E402
from tests.harness import free_port, stop_process_group  # noqa: E402
from tests.harness.kafka import KafkaBroker  # noqa: E402
from tests.harness.kube import KubeCluster  # noqa: E402
from tests.harness.metrics import metric  # noqa: E402
from tests.harness.minio import MinioServer, kafka_notify_env  # noqa: E402
from tests.twins import twin_doc  # noqa: E402

CHILD_RESOURCES = {
    "configmaps",
    "services",
    "workflowtemplates",
    "rollouts",
    "analysistemplates",
    "prometheusrules",
}
WRITE_VERBS = {"POST", "PUT", "PATCH", "APPLY", "DELETE"}
MINIO_KAFKA_TARGET = "llmtwin"
OBJECTS_TOPIC = "llmtwin.objects"
RECONCILE_TIMEOUT = 600  # seconds until all twins are Ready before the run fails
# --smoke: every row, smallest size (the no-op window is 2.5 resync intervals).
SMOKE = {"twins": 3, "resync": 2.0, "reconcile_timeout": 180}


def writes(cluster: KubeCluster) -> dict[str, float]:
    """Write requests by resource, from the API server's metrics (kubectl's own applies included)."""
    out: dict[str, float] = {}
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name != "apiserver_request_total" or labels.get("verb") not in WRITE_VERBS:
                continue
            resource = labels.get("resource", "")
            if resource in CHILD_RESOURCES or resource == "llmtwins":
                key = f"{resource}/{labels.get('subresource') or '-'}:{labels['verb']}"
                out[key] = out.get(key, 0) + sample.value
    return out


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def twin_docs(n: int, namespace: str) -> list[dict]:
    return [twin_doc(f"bench-{i:03d}", namespace) for i in range(n)]


def all_reconciled(cluster: KubeCluster, namespace: str, n: int) -> bool:
    items = json.loads(cluster.kubectl("get", "llmtwins", "-n", namespace, "-o", "json").stdout)["items"]
    done = 0
    for item in items:
        status = item.get("status", {})
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
        done += ready and status.get("observedGeneration") == item["metadata"]["generation"]
    return done == n


def log_tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--twins", type=int, default=100)
    parser.add_argument("--resync", type=float, default=10.0, help="operator resync interval (s)")
    parser.add_argument("--smoke", action="store_true", help="3 twins, fast resync: proves the benchmark runs")
    args = parser.parse_args()
    exit_on_sigterm()
    if args.smoke:
        n, resync, reconcile_timeout = SMOKE["twins"], SMOKE["resync"], SMOKE["reconcile_timeout"]
    else:
        n, resync, reconcile_timeout = args.twins, args.resync, RECONCILE_TIMEOUT

    with contextlib.ExitStack() as stack:
        # A twin is Ready once its event plane is wired: the operator needs a real MinIO and Kafka too.
        # Each server is stopped on the way out, even one whose start failed half way.
        cluster, kafka = KubeCluster(), KafkaBroker()
        for server in (cluster, kafka):
            stack.callback(server.stop)
            server.start()
        minio = MinioServer(
            kafka_notify_env(MINIO_KAFKA_TARGET, kafka.bootstrap, OBJECTS_TOPIC, Path(kafka.workdir) / "minio-queue")
        )
        stack.callback(minio.stop)
        minio.start()
        # What the operator is told about the platform; the baseline renders with the very same settings.
        platform = PlatformSettings(
            s3_endpoint=minio.endpoint,
            kafka_bootstrap=kafka.bootstrap,
            minio_kafka_target=MINIO_KAFKA_TARGET,
            objects_topic=OBJECTS_TOPIC,
        )

        for manifest in ("namespace.yaml", "rbac.yaml"):
            cluster.kubectl("apply", "-f", str(ROOT / "manifests/operator" / manifest))
        for ns in ("bench", "baseline"):
            cluster.kubectl("create", "namespace", ns)
        cluster.kubectl(
            "create", "secret", "generic", platform.s3_secret, "-n", "bench",
            f"--from-literal=accessKey={minio.access_key}", f"--from-literal=secretKey={minio.secret_key}",
        )  # fmt: skip

        # Baseline: the same objects, applied directly.
        rendered = []
        for doc in twin_docs(n, "baseline"):
            rendered += children(LLMTwin.model_validate(doc), platform)
        manifests = Path(tempfile.mkdtemp(prefix="llmtwin-bench-operator-"))
        stack.callback(shutil.rmtree, manifests, ignore_errors=True)
        (manifests / "baseline.yaml").write_text(yaml.safe_dump_all(rendered))
        started = time.perf_counter()
        cluster.kubectl(
            "apply", "--server-side", "--field-manager=baseline", "-f", str(manifests / "baseline.yaml"), timeout=900
        )
        baseline_seconds = time.perf_counter() - started

        # The operator, under its own ServiceAccount and RBAC, configured through its environment.
        kubeconfig = cluster.service_account_kubeconfig("llmtwin-system", "llmtwin-operator")
        metrics_port = free_port()
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        env = {
            **os.environ,
            **platform.as_env(),
            OperatorSettings.env_name("kubeconfig"): str(kubeconfig),
            OperatorSettings.env_name("resync_seconds"): str(resync),
            OperatorSettings.env_name("metrics_port"): str(metrics_port),
            OperatorSettings.env_name("metrics_addr"): "127.0.0.1",
        }
        log_path = Path(tempfile.gettempdir()) / "bench-operator.log"
        with open(log_path, "wb") as log:
            operator = subprocess.Popen(
                [sys.executable, "-m", "llmtwin.cli", "operator", f"--liveness=http://127.0.0.1:{free_port()}/healthz"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        stack.callback(stop_process_group, operator, timeout=30)
        proc = psutil.Process(operator.pid)
        peak_rss = [0]
        stop = threading.Event()
        stack.callback(stop.set)

        def sample() -> None:
            while not stop.is_set():
                try:
                    peak_rss[0] = max(peak_rss[0], proc.memory_info().rss)
                except psutil.Error:
                    return
                time.sleep(0.2)

        def check_operator() -> None:
            if operator.poll() is not None:
                raise SystemExit(f"operator exited ({operator.returncode}); {log_path}:\n{log_tail(log_path)}")

        threading.Thread(target=sample, daemon=True).start()
        time.sleep(3)  # operator startup is not part of the reconcile time
        check_operator()
        cpu_start = sum(proc.cpu_times()[:2])
        before = writes(cluster)
        docs = yaml.safe_dump_all(twin_docs(n, "bench"))
        started = time.perf_counter()
        cluster.kubectl("apply", "-f", "-", input=docs)
        while not all_reconciled(cluster, "bench", n):
            check_operator()
            if time.perf_counter() - started > reconcile_timeout:
                raise SystemExit(
                    f"not all twins reconciled in {reconcile_timeout} s; {log_path}:\n{log_tail(log_path)}"
                )
            time.sleep(0.5)
        reconcile_seconds = time.perf_counter() - started
        cpu_first = sum(proc.cpu_times()[:2]) - cpu_start
        time.sleep(2)  # trailing status patches land
        first = delta(writes(cluster), before)
        first.pop("llmtwins/-:POST", None)  # kubectl's creation of the twins themselves

        reconciles_before = metric(metrics_url, "llmtwin_operator_reconciles_total")
        quiet_before = writes(cluster)
        time.sleep(resync * 2.5)
        quiet = delta(writes(cluster), quiet_before)
        noop_reconciles = metric(metrics_url, "llmtwin_operator_reconciles_total") - reconciles_before
        check_operator()
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
        ("no-op reconciles observed", f"{noop_reconciles:.0f}", f"in {resync * 2.5:.0f} s"),
        ("API writes during no-op reconciles", f"{sum(quiet.values()):.0f}", "target 0"),
        ("operator peak RSS", f"{peak_rss[0] / 2**20:.0f} MB", "target < 250 MB"),
        ("operator CPU for the first reconciles", f"{cpu_first:.1f} s", ""),
    ]
    print_table(rows)


if __name__ == "__main__":
    main()
