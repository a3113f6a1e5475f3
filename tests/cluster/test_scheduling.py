"""Where the model server lands, decided by the real kube-scheduler: the Rollout the operator renders, its
ReplicaSet (the real Argo Rollouts controller) and pods (the real replicaset controller), bound to KWOK's
simulated nodes (two GPU nodes, an A100 and a T4, tainted as GPU pools are, and a CPU-only node) by their
GPU request, nodeSelector and tolerations. KWOK's pods run no containers: placement is what is tested."""

from __future__ import annotations

import json

import pytest
import yaml

from llmtwin.api import names
from tests.harness import wait_for
from tests.harness.kwok import A100, GPU
from tests.twins import twin_doc

pytestmark = pytest.mark.slow
GPU_TOLERATION = {"key": GPU, "operator": "Exists", "effect": "NoSchedule"}


def serve_on_gpus(kube_cluster, twin: str, **resources) -> None:
    doc = twin_doc(twin, "default", serving={"engine": "tgi", "resources": {"gpu": 1, **resources}})
    kube_cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))


def server_pods(kube_cluster, twin: str) -> list[dict]:
    selector = f"{names.TWIN_LABEL}={twin},{names.COMPONENT_LABEL}=server"
    return json.loads(kube_cluster.kubectl("get", "pods", "-n", "default", "-l", selector, "-o", "json").stdout)[
        "items"
    ]


def scheduling_failure(kube_cluster, twin: str) -> str:
    """The scheduler's FailedScheduling message for the twin's (single) server pod, once it has one."""

    def message() -> str | None:
        pods = server_pods(kube_cluster, twin)
        if not pods:
            return None
        name = pods[0]["metadata"]["name"]
        events = json.loads(
            kube_cluster.kubectl(
                "get", "events", "-n", "default", "--field-selector", f"involvedObject.name={name}", "-o", "json"
            ).stdout
        )["items"]
        failed = [e["message"] for e in events if e["reason"] == "FailedScheduling"]
        return failed[-1] if failed else None

    return wait_for(message, timeout=60, what=f"{twin}'s FailedScheduling event")


def test_the_model_server_lands_only_on_a_gpu_node_that_fits(
    kube_cluster, operator, rollouts_controller, simulated_nodes
):
    selector = {f"{GPU}.product": A100}
    serve_on_gpus(kube_cluster, "on-a100", nodeSelector=selector, tolerations=[GPU_TOLERATION])

    def running() -> dict | None:
        pods = server_pods(kube_cluster, "on-a100")
        return pods[0] if pods and pods[0]["status"].get("phase") == "Running" else None

    pod = wait_for(running, timeout=90, what="the server pod to run")
    assert pod["spec"]["nodeName"] == "gpu-a100-0"
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"

    # The A100's only GPU is taken: the T4 and the CPU-only node do not match the selector.
    serve_on_gpus(kube_cluster, "wants-a100", nodeSelector=selector, tolerations=[GPU_TOLERATION])
    message = scheduling_failure(kube_cluster, "wants-a100")
    assert "0/3 nodes are available" in message, message
    assert "1 Insufficient nvidia.com/gpu" in message, message
    assert "2 node(s) didn't match Pod's node affinity/selector" in message, message

    # No toleration: the GPU nodes' taint keeps it off them, and the CPU-only node has no GPU to give.
    serve_on_gpus(kube_cluster, "no-toleration")
    message = scheduling_failure(kube_cluster, "no-toleration")
    assert "1 Insufficient nvidia.com/gpu" in message, message
    assert "2 node(s) had untolerated taint" in message, message
    for twin in ("wants-a100", "no-toleration"):
        assert all(not p["spec"].get("nodeName") for p in server_pods(kube_cluster, twin))
    kube_cluster.kubectl("delete", "llmtwin", "on-a100", "wants-a100", "no-toleration", "--wait=false")
