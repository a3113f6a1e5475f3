"""A registered version reaches serving through a real canary, or is rejected: the operator's promotion
(operator/promotion.py) with the real Argo Rollouts controller, kube-scheduler and KWOK nodes on the test
API server, the real Prometheus judging the canary, and versions in the real MLflow registry.

The one stand-in, named (tests/harness/canary.py): KWOK pods run no containers, so the canary pod's server
is a real `llmtwin serve` (SmolLM2) beside the cluster, scraped by Prometheus under the canary ReplicaSet's
pod-template hash and serving the candidate adapter fetched from MLflow; its traffic is the test's.
"""

from __future__ import annotations

import json
import signal

import pytest
import yaml

from llmtwin.api import names
from llmtwin.api.conditions import ConditionType, Reason, find_condition
from llmtwin.models.versions import PRODUCTION_ALIAS, REJECTED_TAG
from tests.harness import wait_for
from tests.harness.canary import CanaryStandIn, Traffic, generate
from tests.harness.mlflow import register_adapter
from tests.harness.operator import get_json
from tests.twins import twin_doc

pytestmark = pytest.mark.slow
NAMESPACE = "default"
INTERVAL = "8s"  # the analysis' measurement interval and rate() window (Prometheus scrapes every second)
PAUSE = "30s"  # the canary's one step: room for three measurements, two of them failing aborts it
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
                # The API's default: the stand-in is scraped as the canary only once its ReplicaSet exists (a
                # real pod, once discovered), so on a loaded machine the first measurement may find nothing.
                "failureLimit": 1,
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


def explained(kube_cluster, name: str, predicate, timeout: float, what: str):
    """wait_for, failing with the twin's promotion state and the Rollout's as the controller reports it."""
    try:
        return wait_for(predicate, timeout=timeout, what=what)
    except AssertionError as exc:
        status = twin_status(kube_cluster, name)
        body = rollout(kube_cluster, name)
        keys = ("phase", "message", "abort", "currentPodHash", "stableRS", "currentStepIndex", "canary")
        state = {
            "twin": {k: status.get(k) for k in ("modelVersion", "candidateVersion", "rejectedVersions", "conditions")},
            "rollout": {k: body.get("status", {}).get(k) for k in keys},
            "template": body["spec"]["template"]["metadata"]["annotations"],
        }
        raise AssertionError(f"{exc}\n{json.dumps(state, indent=1)}") from None


def outcome(kube_cluster, name: str, field: str, what: str, value: str | None = None) -> dict:
    """The twin's status once `field` is set (to `value`, when given): a canary's outcome."""

    def reached() -> dict | None:
        status = twin_status(kube_cluster, name)
        found = status.get(field)
        return status if found and (value is None or found == value) else None

    return explained(kube_cluster, name, reached, timeout=CANARY_TIMEOUT, what=what)


def register_candidate(kube_cluster, name: str, version: str) -> None:
    """What the retrain's register step writes for a version that passed the gate."""
    patch = json.dumps({"status": {"candidateVersion": version}})
    kube_cluster.kubectl("patch", "llmtwin", name, "-n", NAMESPACE, "--subresource=status", "--type=merge", "-p", patch)


@pytest.fixture
def canary_cluster(kube_cluster, simulated_nodes, rollouts_controller, operator, mlflow_server, prometheus):
    return kube_cluster


@pytest.fixture
def stand_in(kube_cluster, smollm2_server, prometheus, mlflow_server):
    def make(twin: str) -> CanaryStandIn:
        return CanaryStandIn(
            kube_cluster.kubectl, smollm2_server.url, prometheus, mlflow_server.tracking_uri, NAMESPACE, twin
        )

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
    # The stand-in serves the adapter and has traffic before the canary starts (its pod would, once Ready).
    adapter = server.load(healthy, tmp_path)
    assert adapter, "the healthy candidate's adapter did not load"
    with Traffic(generate(server.server_url, adapter)):
        register_candidate(kube, twin, healthy)
        pod_hash = server.label_canary(healthy)
        status = outcome(kube, twin, "modelVersion", f"version {healthy} to be promoted", healthy)
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
    assert server.load(failing, tmp_path) is None  # the broken adapter does not load: its requests fail
    with Traffic(generate(server.server_url, f"{twin}-v{failing}")):
        register_candidate(kube, twin, failing)
        server.label_canary(failing)
        status = outcome(kube, twin, "rejectedVersions", f"version {failing} to be rejected")
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
    canary_cluster, operator, mlflow_server, prometheus, stand_in, adapters, tmp_path
):
    kube, twin, uri = canary_cluster, "restarted", mlflow_server.tracking_uri
    idle = register_adapter(uri, NAMESPACE, twin, adapters["florid"])
    healthy = register_adapter(uri, NAMESPACE, twin, adapters["terse"])
    apply_twin(kube, twin, prometheus)
    wait_for(lambda: serving_ready(kube, twin), timeout=120, what="the base model's Rollout to be available")
    server = stand_in(twin)

    base_hash = rollout(kube, twin)["status"]["stableRS"]
    # Scraped, but nobody sends the canary a request: no measurement passes, the version is rejected.
    server.load(idle, tmp_path)
    register_candidate(kube, twin, idle)
    server.label_canary(idle)
    status = outcome(kube, twin, "rejectedVersions", f"idle version {idle} to be rejected")
    assert status["rejectedVersions"][0]["version"] == idle and not status.get("modelVersion"), status
    back = wait_for(
        lambda: (b := rollout(kube, twin))["status"].get("phase") == "Healthy" and b,
        60,
        what="the Rollout back on base",
    )
    # The same pods as before the canary, and a template with nothing of the rejected version left.
    assert back["status"]["stableRS"] == base_hash and not back["spec"]["template"]["spec"].get("initContainers")

    # The operator is killed while the canary runs and the controller finishes it; started again, it reads
    # the Rollout and promotes the version: the same outcome as if it had watched throughout.
    adapter = server.load(healthy, tmp_path)
    with Traffic(generate(server.server_url, adapter)):
        register_candidate(kube, twin, healthy)
        pod_hash = server.label_canary(healthy)  # the operator has rendered the candidate: the canary runs
        with operator.paused(signal.SIGKILL):
            wait_for(
                lambda: (
                    (s := rollout(kube, twin)["status"]).get("phase") == "Healthy" and s.get("stableRS") == pod_hash
                ),
                timeout=CANARY_TIMEOUT,
                what="the controller to complete the canary",
            )
            assert not twin_status(kube, twin).get("modelVersion")  # nobody has recorded it yet
    status = wait_for(
        lambda: (s := twin_status(kube, twin)).get("modelVersion") == healthy and s,
        timeout=60,
        what="the restarted operator to promote the version",
    )
    assert production_alias(uri, twin) == healthy
    assert [r["version"] for r in status["rejectedVersions"]] == [idle]
    kube.kubectl("delete", "llmtwin", twin, "-n", NAMESPACE, "--wait=false")
