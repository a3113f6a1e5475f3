"""The canary analysis the operator renders, run against a real Prometheus (Debian 2.42) scraping a real
`llmtwin serve`: every query returns a number, the numbers are what the server did, and the real Argo
Rollouts controller passes a healthy canary and fails one whose requests fail, that gets no traffic, or
that Prometheus never scraped."""

from __future__ import annotations

import math
import urllib.parse

import pytest

from llmtwin.api.names import ROLLOUT_HASH_METRIC_LABEL as HASH
from llmtwin.operator.serving import CANARY_HASH_ARG, analysis_template
from llmtwin.serving.client import model_server_client
from tests.harness import wait_for
from tests.harness.canary import Traffic, analysis_outcome, generate, measured, start_analysis_run
from tests.serving.conftest import post
from tests.twins import example_twin

pytestmark = pytest.mark.slow


def test_the_analysis_queries_return_the_servers_numbers(smollm2_server, prometheus):
    twin = example_twin(serving={"engine": "llmtwin"})
    canary = "5d8f9c7b6a"  # the canary pods' template hash, as the PodMonitor labels their series
    address = urllib.parse.urlsplit(smollm2_server.url).netloc
    prometheus.set_targets([(address, {"namespace": twin.namespace, HASH: canary})])
    wait_for(lambda: prometheus.up(**{HASH: canary}), timeout=30, what="prometheus to scrape the server")

    def fail() -> None:
        status, _ = post(f"{smollm2_server.url}/generate", {"inputs": "hi", "parameters": {"adapter_id": "nowhere"}})
        assert status == 422

    # A counter's first appearance is no increase to rate(): let the failure series exist first.
    fail()
    wait_for(lambda: prometheus.query(f'tgi_request_failure{{{HASH}="{canary}"}}'), 30, what="the failure series")
    client = model_server_client(smollm2_server.url)
    for subject in ("nets", "oars", "buoys"):
        client.text_generation(f"Write about {subject}.", max_new_tokens=4)
    fail()

    metrics = {
        m["name"]: m["provider"]["prometheus"]["query"].replace(f"{{{{args.{CANARY_HASH_ARG}}}}}", canary)
        for m in analysis_template(twin)["spec"]["metrics"]
    }

    def values() -> dict[str, float] | None:
        results = {name: prometheus.query(query) for name, query in metrics.items()}
        if not all(len(r) == 1 for r in results.values()):
            return None
        numbers = {name: float(r[0]["value"][1]) for name, r in results.items()}
        return numbers if numbers["error-ratio"] > 0 else None  # the failure reached two scrapes

    numbers = wait_for(values, timeout=60, what="every analysis query to return a number")
    assert all(math.isfinite(v) for v in numbers.values()), numbers
    assert 0 < numbers["error-ratio"] < 1  # one failed request among several
    assert 0 < numbers["p95-latency"] < 60


# ------------------------------------------------------------ judged by the real Argo Rollouts controller
# The rendered analysis, run as an AnalysisRun by the real Argo Rollouts controller against the real
# Prometheus scraping `llmtwin serve` (standing for the canary pod: KWOK-less here, the pod itself does
# not run). In a Rollout the analysis runs in the background until the canary ends; a test run takes
# one measurement (`count: 1`) instead, so it ends with a phase.
INTERVAL = "8s"  # the rate() window too: several scrapes and requests even on a loaded machine
# Latency is the machine's, not the canary's, here (CI shares two cores): only errors and traffic are judged.
LATENCY_BOUND_SECONDS = 60.0


def analysis_run(kube_cluster, prometheus, canary_hash: str, name: str) -> dict:
    twin = example_twin(
        serving={
            "engine": "llmtwin",
            "canary": {
                "analysis": {"interval": INTERVAL, "failureLimit": 0, "maxP95LatencySeconds": LATENCY_BOUND_SECONDS}
            },
        }
    )
    twin.spec.serving.canary.analysis.prometheus_address = prometheus.url
    metrics = analysis_template(twin)["spec"]["metrics"]
    for metric in metrics:
        metric["count"] = 1
    return start_analysis_run(kube_cluster.kubectl, metrics, name, twin.namespace, canary_hash)


def test_the_controller_passes_a_healthy_canary_and_fails_one_whose_requests_fail(
    kube_cluster, rollouts_controller, smollm2_server, prometheus
):
    address = urllib.parse.urlsplit(smollm2_server.url).netloc
    healthy = generate(smollm2_server.url)
    failing = generate(smollm2_server.url, adapter="gone")
    for scenario, request, expected in (("healthy", healthy, "Successful"), ("failing", failing, "Failed")):
        canary = f"{scenario}-hash"
        prometheus.set_targets([(address, {"namespace": "default", HASH: canary})])
        with Traffic(request):
            wait_for(lambda c=canary: prometheus.up(**{HASH: c}), timeout=30, what=f"prometheus to scrape {canary}")
            run = analysis_run(kube_cluster, prometheus, canary, f"{scenario}-run")
            status = analysis_outcome(kube_cluster.kubectl, run)
        values = measured(status)
        assert status["phase"] == expected, (status.get("message"), values)
        if scenario == "healthy":
            assert all(float(v.strip("[]")) < 0.05 for v in values["error-ratio"]), values
        else:
            assert "[1]" in values["error-ratio"], values  # every request failed


def test_a_canary_without_traffic_or_without_metrics_is_not_promoted(
    kube_cluster, rollouts_controller, smollm2_server, prometheus
):
    address = urllib.parse.urlsplit(smollm2_server.url).netloc
    # Scraped, but nobody sends it a request: 0/0 is NaN. And a canary Prometheus never scraped: no result.
    prometheus.set_targets([(address, {"namespace": "default", HASH: "idle-hash"})])
    wait_for(lambda: prometheus.up(**{HASH: "idle-hash"}), timeout=30, what="prometheus to scrape idle-hash")
    idle = analysis_run(kube_cluster, prometheus, "idle-hash", "idle-run")
    unscraped = analysis_run(kube_cluster, prometheus, "unscraped-hash", "unscraped-run")
    for run in (idle, unscraped):
        status = analysis_outcome(kube_cluster.kubectl, run)
        assert status["phase"] == "Failed", status
        assert all(phase == "Failed" for phase in (m["phase"] for m in status["metricResults"])), status
