"""A registered version reaches serving through a real canary, or is rejected: the operator's promotion
(operator/promotion.py) with the real Argo Rollouts controller, kube-scheduler and KWOK nodes on the test
API server, the real Prometheus judging the canary, and versions in the real MLflow registry.

The one stand-in, named: KWOK pods run no containers, so the canary pod's server is a real `llmtwin serve`
(SmolLM2) beside the cluster, which Prometheus scrapes under the canary ReplicaSet's pod-template hash
(file_sd, as the rendered PodMonitor would label the pod's series). It serves the candidate adapter
fetched from MLflow as the pod's fetch-adapter init container would; its traffic is the test's.
"""

from __future__ import annotations

import json
import threading
import urllib.parse

import pytest
import yaml

from llmtwin.api import names
from llmtwin.api.conditions import ConditionType, Reason, find_condition
from llmtwin.api.names import ROLLOUT_HASH_METRIC_LABEL as HASH
from llmtwin.models.adapters import download_adapter
from llmtwin.models.versions import PRODUCTION_ALIAS, REJECTED_TAG
from llmtwin.serving.client import model_server_client
from tests.harness import wait_for
from tests.harness.mlflow import register_adapter
from tests.harness.operator import get_json
from tests.serving.conftest import post
from tests.twins import twin_doc

pytestmark = pytest.mark.slow
NAMESPACE = "default"
INTERVAL = "8s"  # the analysis' measurement interval and rate() window (Prometheus scrapes every second)
PAUSE = "30s"  # the canary's one step: room for a measurement or two before it completes
CANARY_TIMEOUT = 180


def apply_twin(kube_cluster, name: str, prometheus) -> None:
    serving = {
        "engine": "llmtwin",
        "resources": {"cpu": "1", "memory": "1Gi"},  # the CPU-only node: `llmtwin serve` needs no GPU
        "canary": {
            "steps": [{"setWeight": 50, "pause": PAUSE}],
            # Latency here is the shared CI machine's, not the canary's: only errors and traffic are judged.
            "analysis": {
                "interval": INTERVAL,
                "failureLimit": 0,
                "maxP95LatencySeconds": 60,
                "prometheusAddress": prometheus.url,
            },
        },
    }
    doc = twin_doc(name, NAMESPACE, serving=serving)
    kube_cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))


def twin_status(kube_cluster, name: str) -> dict:
    return get_json(kube_cluster, "llmtwin", name, "-n", NAMESPACE).get("status", {})


def rollout(kube_cluster, name: str) -> dict:
    return get_json(kube_cluster, "rollout", names.server_name(name), "-n", NAMESPACE)


def condition(kube_cluster, name: str, type_: str) -> dict:
    return find_condition(twin_status(kube_cluster, name).get("conditions", []), type_) or {}


def register_candidate(kube_cluster, name: str, version: str) -> None:
    """What the retrain's register step writes for a version that passed the gate."""
    patch = json.dumps({"status": {"candidateVersion": version}})
    kube_cluster.kubectl("patch", "llmtwin", name, "-n", NAMESPACE, "--subresource=status", "--type=merge", "-p", patch)


class CanaryStandIn:
    """The canary pod's server (see the module doc): the candidate fetched from MLflow and loaded into the
    real `llmtwin serve`, scraped under the canary's template hash, and (optionally) sent requests."""

    def __init__(self, server, prometheus, tracking_uri: str, model: str, tmp_path):
        self.server, self.prometheus = server, prometheus
        self.tracking_uri, self.model, self.tmp_path = tracking_uri, model, tmp_path
        self.address = urllib.parse.urlsplit(server.url).netloc
        self.client = model_server_client(server.url)
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def stand_in_for(self, kube_cluster, twin: str, version: str, traffic: bool) -> str:
        """Wait for the canary ReplicaSet of `version`; stand in for its pod; return its template hash."""

        def canary_hash() -> str | None:
            body = rollout(kube_cluster, twin)
            status = body.get("status", {})
            template = body["spec"]["template"]["metadata"]["annotations"][names.MODEL_VERSION_ANNOTATION]
            current, stable = status.get("currentPodHash"), status.get("stableRS")
            return current if template == version and current and current != stable else None

        pod_hash = wait_for(canary_hash, timeout=60, what=f"the canary ReplicaSet of version {version}")
        adapter = f"v{version}"
        folder = download_adapter(self.tracking_uri, self.model, version, self.tmp_path / adapter)
        loaded, body = post(f"{self.server.url}/v1/load_lora_adapter", {"lora_name": adapter, "lora_path": str(folder)})
        self.prometheus.set_targets([(self.address, {"namespace": NAMESPACE, HASH: pod_hash})])
        wait_for(lambda: self.prometheus.up(**{HASH: pod_hash}), timeout=30, what="prometheus to scrape the canary")
        if traffic:
            self.thread = threading.Thread(target=self._send, args=(adapter,), daemon=True)
            self.thread.start()
        return pod_hash if loaded == 200 else f"{pod_hash} (adapter not loaded: {body})"

    def _send(self, adapter: str) -> None:
        while not self.stop.is_set():
            post(
                f"{self.server.url}/generate",
                {"inputs": "Say yes.", "parameters": {"adapter_id": adapter, "max_new_tokens": 2}},
            )
            self.stop.wait(0.2)

    def finish(self) -> None:
        self.stop.set()
        if self.thread:
            self.thread.join(timeout=60)
        self.stop.clear()
        self.thread = None


@pytest.fixture
def canary_cluster(kube_cluster, simulated_nodes, rollouts_controller, operator, mlflow_server, prometheus):
    return kube_cluster


@pytest.fixture
def stand_in(smollm2_server, prometheus, mlflow_server, tmp_path):
    def make(twin: str) -> CanaryStandIn:
        model = names.registered_model_name(NAMESPACE, twin)
        return CanaryStandIn(smollm2_server, prometheus, mlflow_server.tracking_uri, model, tmp_path)

    return make


def production_alias(tracking_uri: str, twin: str) -> str:
    from mlflow import MlflowClient

    model = names.registered_model_name(NAMESPACE, twin)
    return str(MlflowClient(tracking_uri).get_model_version_by_alias(model, PRODUCTION_ALIAS).version)


def serving_ready(kube_cluster, twin: str) -> dict:
    ready = condition(kube_cluster, twin, ConditionType.SERVING_READY)
    return ready if ready.get("status") == "True" else None


def broken_adapter(tmp_path):
    folder = tmp_path / "broken-adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{ not json")
    (folder / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    return folder


def test_a_healthy_candidate_is_promoted_and_a_failing_one_rejected(
    canary_cluster, mlflow_server, prometheus, stand_in, adapters, tmp_path
):
    kube, twin, uri = canary_cluster, "promoted", mlflow_server.tracking_uri
    healthy = register_adapter(uri, NAMESPACE, twin, adapters["terse"])
    failing = register_adapter(uri, NAMESPACE, twin, broken_adapter(tmp_path))
    apply_twin(kube, twin, prometheus)
    wait_for(lambda: serving_ready(kube, twin), timeout=120, what="the base model's Rollout to be available")
    server = stand_in(twin)

    # A healthy candidate: its canary runs under the real controller, the analysis passes, it is promoted.
    register_candidate(kube, twin, healthy)
    wait_for(lambda: condition(kube, twin, ConditionType.PROMOTING).get("status") == "True", 60, what="Promoting")
    try:
        pod_hash = server.stand_in_for(kube, twin, healthy, traffic=True)
        status = wait_for(
            lambda: (s := twin_status(kube, twin)).get("modelVersion") == healthy and s,
            timeout=CANARY_TIMEOUT,
            what=f"version {healthy} to be promoted",
        )
    finally:
        server.finish()
    promoted = find_condition(status["conditions"], ConditionType.PROMOTED)
    assert promoted["status"] == "True" and promoted["reason"] == Reason.CANARY_SUCCEEDED, promoted
    assert production_alias(uri, twin) == healthy
    body = rollout(kube, twin)
    assert body["status"]["stableRS"] == pod_hash and body["status"]["phase"] == "Healthy"
    [run] = [r for r in get_json(kube, "analysisruns", "-n", NAMESPACE)["items"] if pod_hash in r["metadata"]["name"]]
    assert run["status"]["phase"] == "Successful", run["status"]  # judged on real measurements, not skipped
    events = kube.kubectl("get", "events", "-n", NAMESPACE, "--field-selector", f"involvedObject.name={twin}").stdout
    assert Reason.CANARY_SUCCEEDED in events

    # A candidate whose server fails its requests: the analysis fails, the Rollout aborts, the version is
    # rejected with the AnalysisRun's reason, and production goes on serving the healthy version.
    register_candidate(kube, twin, failing)
    try:
        failing_hash = server.stand_in_for(kube, twin, failing, traffic=True)
        assert "adapter not loaded" in failing_hash
        status = wait_for(
            lambda: (s := twin_status(kube, twin)).get("rejectedVersions") and s,
            timeout=CANARY_TIMEOUT,
            what=f"version {failing} to be rejected",
        )
    finally:
        server.finish()
    [rejected] = status["rejectedVersions"]
    assert rejected["version"] == failing and "error-ratio" in rejected["reason"], rejected
    assert status["modelVersion"] == healthy and production_alias(uri, twin) == healthy
    promoted = find_condition(status["conditions"], ConditionType.PROMOTED)
    assert promoted["status"] == "False" and promoted["reason"] == Reason.CANARY_ABORTED, promoted

    from mlflow import MlflowClient

    assert "error-ratio" in MlflowClient(uri).get_model_version(server.model, failing).tags[REJECTED_TAG]

    def back_on_production() -> dict | None:
        body = rollout(kube, twin)
        annotations = body["spec"]["template"]["metadata"]["annotations"]
        status = body.get("status", {})
        back = annotations[names.MODEL_VERSION_ANNOTATION] == healthy and status.get("phase") == "Healthy"
        return body if back and not status.get("abort") else None

    body = wait_for(back_on_production, timeout=60, what="the Rollout to return to production")
    assert body["status"]["stableRS"] == pod_hash  # the same stable pods all along
    # Never retried: the twin stays on production across resyncs.
    assert condition(kube, twin, ConditionType.PROMOTING).get("status") == "False"
    assert rollout(kube, twin)["spec"]["template"]["metadata"]["annotations"][names.MODEL_VERSION_ANNOTATION] == healthy
    kube.kubectl("delete", "llmtwin", twin, "-n", NAMESPACE, "--wait=false")


def test_no_traffic_is_not_promoted_and_a_restarted_operator_finishes_the_canary(
    canary_cluster, operator, mlflow_server, prometheus, stand_in, adapters
):
    kube, twin, uri = canary_cluster, "restarted", mlflow_server.tracking_uri
    idle = register_adapter(uri, NAMESPACE, twin, adapters["florid"])
    healthy = register_adapter(uri, NAMESPACE, twin, adapters["terse"])
    apply_twin(kube, twin, prometheus)
    wait_for(lambda: serving_ready(kube, twin), timeout=120, what="the base model's Rollout to be available")
    server = stand_in(twin)

    # Scraped, but nobody sends the canary a request: no measurement passes, the version is rejected.
    register_candidate(kube, twin, idle)
    server.stand_in_for(kube, twin, idle, traffic=False)
    status = wait_for(
        lambda: (s := twin_status(kube, twin)).get("rejectedVersions") and s,
        timeout=CANARY_TIMEOUT,
        what=f"idle version {idle} to be rejected",
    )
    assert status["rejectedVersions"][0]["version"] == idle and not status.get("modelVersion"), status
    wait_for(
        lambda: rollout(kube, twin)["status"].get("phase") == "Healthy", timeout=60, what="the Rollout back on base"
    )

    # The operator is down while the canary runs and the controller finishes it; started again, it reads
    # the Rollout and promotes the version: the same outcome as if it had watched throughout.
    register_candidate(kube, twin, healthy)
    wait_for(lambda: condition(kube, twin, ConditionType.PROMOTING).get("status") == "True", 60, what="Promoting")
    with operator.paused():
        try:
            pod_hash = server.stand_in_for(kube, twin, healthy, traffic=True)
            wait_for(
                lambda: (
                    (s := rollout(kube, twin)["status"]).get("phase") == "Healthy" and s.get("stableRS") == pod_hash
                ),
                timeout=CANARY_TIMEOUT,
                what="the controller to complete the canary",
            )
        finally:
            server.finish()
        assert not twin_status(kube, twin).get("modelVersion")  # nobody has recorded it yet
    status = wait_for(
        lambda: (s := twin_status(kube, twin)).get("modelVersion") == healthy and s,
        timeout=60,
        what="the restarted operator to promote the version",
    )
    assert production_alias(uri, twin) == healthy
    assert [r["version"] for r in status["rejectedVersions"]] == [idle]
    kube.kubectl("delete", "llmtwin", twin, "-n", NAMESPACE, "--wait=false")
