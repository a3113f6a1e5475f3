"""Promotion benchmark: a gate-passing registration to production through the real canary, and how right
the canary analysis is.

Everything real but the pods' containers: the API server, KWOK nodes with kube-scheduler and the workload
controllers, the Argo Rollouts controller, Prometheus, MLflow, Kafka and MinIO (the operator's event plane),
the operator under its ServiceAccount, and one `llmtwin serve` (SmolLM2) standing for the canary pod
(tests/harness/canary.py says how).

1. Promotion time. Candidates registered one after another (`status.candidateVersion`, as the register
   step writes it), each taken through one canary step (setWeight 50, pause P) with the analysis running.
   The floor is the sum of the pauses. Measured per promotion: registration -> the controller reports the
   Rollout Healthy on the candidate, and registration -> `status.modelVersion` (what the operator adds is
   the difference: its poll interval and the MLflow alias). Operator API writes per promotion come from its
   own counter (`llmtwin_operator_api_writes_total`: Rollout applies, status patches, Events).
2. Analysis correctness. The rendered AnalysisTemplate as AnalysisRuns (two measurements each) judged by
   the real controller over injected scenarios on the stand-in: healthy, 10% errors, slow (each request
   above the latency bound), no traffic. Expected: Successful, Failed, Failed, Failed. Target: 100%.

Usage: .venv/bin/python benchmarks/bench_promotion.py [--promotions 3] [--pause 20] [--smoke]
--smoke: one promotion with a short pause and the healthy and no-traffic scenarios, to prove the benchmark
runs; its figures mean nothing. It exits non-zero if anything fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from report import exit_on_sigterm, print_table  # noqa: E402

from llmtwin.api.v1alpha1 import LLMTwin  # noqa: E402
from llmtwin.operator.serving import analysis_template  # noqa: E402
from tests.harness import wait_for  # noqa: E402
from tests.harness.canary import (  # noqa: E402
    CanaryStandIn,
    Traffic,
    analysis_outcome,
    generate,
    measured,
    start_analysis_run,
)
from tests.harness.kafka import KafkaBroker  # noqa: E402
from tests.harness.kube import KubeCluster  # noqa: E402
from tests.harness.kwok import SimulatedNode, SimulatedNodes  # noqa: E402
from tests.harness.metrics import metric  # noqa: E402
from tests.harness.minio import MinioServer, kafka_notify_env  # noqa: E402
from tests.harness.mlflow import MlflowServer, register_adapter  # noqa: E402
from tests.harness.operator import (  # noqa: E402
    MINIO_KAFKA_TARGET,
    OBJECTS_TOPIC,
    PROMOTION_POLL_SECONDS,
    OperatorProcess,
    create_s3_secret,
    platform_env,
)
from tests.harness.process import SMOLLM2, smollm2_serve  # noqa: E402
from tests.harness.prometheus import Prometheus  # noqa: E402
from tests.harness.rollouts import RolloutsController  # noqa: E402
from tests.twins import twin_doc  # noqa: E402

NAMESPACE = "default"
TWIN = "bench"
INTERVAL = "15s"  # analysis interval and rate() window: ~50 requests, so 10% errors read as ~0.1
LATENCY_BOUND = 1.0  # seconds: the slow scenario's requests take longer, the healthy ones far less
MAX_ERROR_RATIO = 0.05
TIMEOUT = 300
LONG_ANSWER = "Once upon a time, in a small harbour town by the grey sea, there lived"
SCENARIOS = {  # name -> (request factory given the server url, expected phase)
    "healthy": (lambda url: generate(url, max_new_tokens=1), "Successful"),
    "10% errors": (lambda url: _one_in_ten_fails(url), "Failed"),
    # Text the model continues at length: 96 new tokens, ~4 s on CPU (a question gets EOS at once: no chat template).
    "slow": (lambda url: generate(url, max_new_tokens=96, prompt=LONG_ANSWER), "Failed"),
    "no traffic": (None, "Failed"),
}
SMOKE_SCENARIOS = ("healthy", "no traffic")


def _one_in_ten_fails(url: str):
    ok, failing = generate(url, max_new_tokens=1), generate(url, adapter="not-loaded")
    count = [0]

    def request() -> int:
        count[0] += 1
        return (failing if count[0] % 10 == 0 else ok)()

    return request


def twin_spec(prometheus_url: str, pause_seconds: int) -> dict:
    serving = {
        "engine": "llmtwin",
        "resources": {"cpu": "1", "memory": "1Gi"},
        "canary": {
            "steps": [{"setWeight": 50, "pause": f"{pause_seconds}s"}],
            "analysis": {
                "interval": INTERVAL,
                "failureLimit": 1,  # the default: the first measurement may precede the stand-in's first scrape
                "maxErrorRatio": MAX_ERROR_RATIO,
                "maxP95LatencySeconds": 60,  # promotion is timed, not judged on this loaded machine's latency
                "prometheusAddress": prometheus_url,
            },
        },
    }
    return twin_doc(TWIN, NAMESPACE, serving=serving)


def lora_adapter(folder: Path, seed: int) -> Path:
    """A LoRA adapter for SmolLM2 with random weights (what a retrain registers)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from llmtwin.api.v1alpha1 import BaseModelSpec
    from llmtwin.config import EmbeddedSettings
    from llmtwin.models.load import detect_precision, load_model
    from llmtwin.models.resolve import ModelResolver

    torch.manual_seed(seed)
    resolved = ModelResolver(EmbeddedSettings().model_cache).resolve(BaseModelSpec(id=SMOLLM2))
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(load_model(resolved, detect_precision()), config).save_pretrained(folder)
    return folder


def twin_status(cluster: KubeCluster) -> dict:
    return json.loads(cluster.kubectl("get", "llmtwin", TWIN, "-n", NAMESPACE, "-o", "json").stdout).get("status", {})


def promote_one(cluster, operator, stand_in, version: str, workdir: Path) -> dict[str, float]:
    writes_before = metric(operator.metrics_url, "llmtwin_operator_api_writes_total")
    patch = json.dumps({"status": {"candidateVersion": version}})
    # The stand-in serves the candidate, with traffic, before the canary starts (as a Ready pod would).
    adapter = stand_in.load(version, workdir)
    with Traffic(generate(stand_in.server_url, adapter or "", max_new_tokens=1)):
        started = time.perf_counter()
        cluster.kubectl("patch", "llmtwin", TWIN, "-n", NAMESPACE, "--subresource=status", "--type=merge", "-p", patch)
        pod_hash = stand_in.label_canary(version)
        wait_for(
            lambda: (s := stand_in.rollout()["status"]).get("phase") == "Healthy" and s.get("stableRS") == pod_hash,
            timeout=TIMEOUT,
            interval=0.2,
            what=f"the controller to complete version {version}'s canary",
        )
        healthy = time.perf_counter() - started
        wait_for(
            lambda: twin_status(cluster).get("modelVersion") == version,
            timeout=TIMEOUT,
            interval=0.2,
            what=f"the operator to promote version {version}",
        )
        promoted = time.perf_counter() - started
    time.sleep(2)  # the status patches that follow the promotion (conditions settle) land
    writes = metric(operator.metrics_url, "llmtwin_operator_api_writes_total") - writes_before
    return {"healthy": healthy, "promoted": promoted, "writes": writes}


def judge(cluster, prometheus, server_url: str, scenario: str, index: int, twin: LLMTwin) -> tuple[str, str]:
    """The AnalysisRun's phase and measurements for one injected scenario."""
    request, _ = SCENARIOS[scenario]
    pod_hash = f"scenario-{index}"
    stand_in = CanaryStandIn(cluster.kubectl, server_url, prometheus, "", NAMESPACE, TWIN)
    stand_in.scrape_as(pod_hash)
    metrics = analysis_template(twin)["spec"]["metrics"]
    for m in metrics:
        m["count"] = 2
        m["provider"]["prometheus"]["address"] = prometheus.url
    traffic = Traffic(request(server_url)) if request else contextlib.nullcontext()
    with traffic:
        run = start_analysis_run(cluster.kubectl, metrics, f"scenario-{index}", NAMESPACE, pod_hash)
        status = analysis_outcome(cluster.kubectl, run, timeout=TIMEOUT)
    return status["phase"], "; ".join(f"{k}={','.join(v)}" for k, v in measured(status).items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--promotions", type=int, default=3)
    parser.add_argument("--pause", type=int, default=20, help="seconds of the canary's one pause")
    parser.add_argument("--smoke", action="store_true", help="one short promotion, two scenarios")
    args = parser.parse_args()
    exit_on_sigterm()
    promotions, pause = (1, 10) if args.smoke else (args.promotions, args.pause)
    scenarios = SMOKE_SCENARIOS if args.smoke else tuple(SCENARIOS)
    workdir = Path(tempfile.mkdtemp(prefix="llmtwin-bench-promotion-"))

    with contextlib.ExitStack() as stack:

        def started(server):
            stack.callback(server.stop)
            return server.start() or server

        cluster, kafka, prometheus, mlflow = started(KubeCluster()), started(KafkaBroker()), None, None
        minio = started(
            MinioServer(kafka_notify_env(MINIO_KAFKA_TARGET, kafka.bootstrap, OBJECTS_TOPIC, workdir / "minio-queue"))
        )
        started(SimulatedNodes(cluster, [SimulatedNode("cpu-0")]))
        started(RolloutsController(cluster.kubeconfig))
        prometheus, mlflow = started(Prometheus()), started(MlflowServer())
        server = smollm2_serve(workdir / "serve")
        stack.callback(server.kill, signal.SIGTERM)
        for manifest in ("namespace.yaml", "rbac.yaml"):
            cluster.kubectl("apply", "-f", str(ROOT / "manifests/operator" / manifest))
        create_s3_secret(cluster, minio)
        env = {**platform_env(kafka, minio), "MLFLOW_TRACKING_URI": mlflow.tracking_uri}
        kubeconfig = cluster.service_account_kubeconfig("llmtwin-system", "llmtwin-operator")
        operator = OperatorProcess(kubeconfig, workdir / "operator", env)
        operator.start()
        stack.callback(operator.kill, signal.SIGTERM)

        doc = twin_spec(prometheus.url, pause)
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
        adapter = lora_adapter(workdir / "adapter", seed=1)
        versions = [register_adapter(mlflow.tracking_uri, NAMESPACE, TWIN, adapter) for _ in range(promotions)]
        wait_for(lambda: (twin_status(cluster) or {}).get("conditions"), timeout=120, what="the twin's first status")
        stand_in = CanaryStandIn(cluster.kubectl, server.url, prometheus, mlflow.tracking_uri, NAMESPACE, TWIN)
        wait_for(lambda: stand_in.rollout().get("status", {}).get("phase") == "Healthy", 120, what="the base Rollout")
        results = [promote_one(cluster, operator, stand_in, v, workdir) for v in versions]

        twin = LLMTwin.model_validate(doc)
        twin.spec.serving.canary.analysis.max_p95_latency_seconds = LATENCY_BOUND
        judged = {name: judge(cluster, prometheus, server.url, name, i, twin) for i, name in enumerate(scenarios)}

    rows: list[tuple[str, str, str]] = [
        ("canary", f"1 step, pause {pause} s", f"analysis every {INTERVAL}"),
        ("operator promotion poll", f"{PROMOTION_POLL_SECONDS} s", "LLMTWIN_PROMOTION_POLL_SECONDS (default 10 s)"),
    ]
    for version, r in zip(versions, results, strict=True):
        operator_part = r["promoted"] - r["healthy"]
        note = f"floor {pause} s; Rollout Healthy at {r['healthy']:.1f} s; operator +{operator_part:.1f} s"
        rows.append((f"version {version}: registered -> modelVersion", f"{r['promoted']:.1f} s", note))
    mean = sum(r["promoted"] for r in results) / len(results)
    rows.append(("mean registered -> modelVersion / floor", f"{mean / pause:.2f}x", f"{mean:.1f} s vs {pause} s"))
    rows.append(
        ("operator API writes per promotion", f"{sum(r['writes'] for r in results) / len(results):.1f}", "own counter")
    )
    correct = 0
    for name, (phase, values) in judged.items():
        expected = SCENARIOS[name][1]
        correct += phase == expected
        rows.append((f"analysis: {name}", phase, f"expected {expected}; {values}"))
    rows.append(("analysis decisions correct", f"{100 * correct / len(judged):.0f}%", "target 100%"))
    print_table(rows)
    if correct != len(judged) and not args.smoke:
        print("some analysis decisions were wrong (see above)")


if __name__ == "__main__":
    main()
