"""Nodes that are not there, scheduled onto for real: KWOK (`kwok`, built by `infra/build.sh kwok`) keeps
simulated Node objects Ready and moves the pods bound to them to Running; the real kube-scheduler binds
pods by their requests, nodeSelector and tolerations; a second kube-controller-manager runs the workload
controllers (deployment, replicaset) that the session cluster leaves off, and the node lifecycle controller
(it lifts the not-ready taint a new node carries once the node is Ready). The stand-in, named: the pods'
containers never run (a test that needs a pod's metrics starts the real process beside it)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.harness import free_port, log_tail, spawn, stop_process_group, wait_for
from tests.harness.kube import BIN, CACHE, InfraMissing, KubeCluster

STAGES = CACHE / "kwok-stages"
MANAGED = ("kwok.x-k8s.io/node", "fake")  # the annotation KWOK manages nodes by
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
GPU = "nvidia.com/gpu"  # the extended resource, and the taint key of GPU pools
A100, T4 = "NVIDIA-A100-SXM4-80GB", "Tesla-T4"  # nvidia.com/gpu.product, as the GPU operator labels nodes


@dataclass(frozen=True)
class SimulatedNode:
    name: str
    gpus: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()
    cpu: str = "16"
    memory: str = "128Gi"
    pods: str = "110"

    def manifest(self) -> dict:
        capacity = {"cpu": self.cpu, "memory": self.memory, "pods": self.pods}
        if self.gpus:
            capacity[GPU] = str(self.gpus)
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {"kubernetes.io/hostname": self.name, "type": "kwok", **self.labels},
                "annotations": {MANAGED[0]: MANAGED[1], "node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": {"taints": list(self.taints)},
            "status": {"capacity": capacity, "allocatable": capacity},
        }


def gpu_node(name: str, product: str, gpus: int = 1) -> SimulatedNode:
    """A GPU pool's node as the NVIDIA GPU operator labels it, tainted so only GPU workloads land there."""
    labels = {f"{GPU}.present": "true", f"{GPU}.product": product}
    return SimulatedNode(name, gpus, labels, ({"key": GPU, "value": "present", "effect": "NoSchedule"},))


class SimulatedNodes:
    def __init__(self, cluster: KubeCluster, nodes: list[SimulatedNode]):
        self.cluster = cluster
        self.nodes = nodes
        self.workdir = Path(tempfile.mkdtemp(prefix="llmtwin-kwok-"))
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self) -> SimulatedNodes:
        for binary in ("kwok", "kube-scheduler", "kube-controller-manager"):
            if not (BIN / binary).exists():
                raise InfraMissing(f"{BIN / binary} missing: run infra/build.sh kubernetes kwok (or `make test`)")
        stages = sorted(STAGES.glob("*.yaml"))
        if not stages:
            raise InfraMissing(f"no KWOK stages in {STAGES}: run infra/build.sh kwok")
        config = self.workdir / "stages.yaml"
        config.write_text("\n---\n".join(p.read_text() for p in stages))
        kubeconfig = self.cluster.kubeconfig
        self._spawn(
            "kube-scheduler",
            [BIN / "kube-scheduler", f"--kubeconfig={kubeconfig}", "--leader-elect=false",
             "--bind-address=127.0.0.1", f"--secure-port={free_port()}"],
        )  # fmt: skip
        self._spawn(
            "workload-controllers",
            [BIN / "kube-controller-manager", f"--kubeconfig={kubeconfig}", "--leader-elect=false",
             "--bind-address=127.0.0.1", f"--secure-port={free_port()}",
             "--controllers=deployment,replicaset,nodelifecycle", "--use-service-account-credentials=false"],
        )  # fmt: skip
        self._spawn(
            "kwok",
            [BIN / "kwok", f"--kubeconfig={kubeconfig}", f"--config={config}", "--manage-all-nodes=false",
             f"--manage-nodes-with-annotation-selector={MANAGED[0]}={MANAGED[1]}",
             "--cidr=10.0.0.1/24", "--node-ip=10.0.0.1", f"--server-address=127.0.0.1:{free_port()}"],
        )  # fmt: skip
        docs = yaml.safe_dump_all([node.manifest() for node in self.nodes])
        self.cluster.kubectl("apply", "-f", "-", input=docs)
        wait_for(self._all_ready, timeout=60, what="the simulated nodes to be Ready")
        return self

    def _spawn(self, name: str, argv: list) -> None:
        self.procs[name] = spawn(argv, self.workdir / f"{name}.log")

    def _all_ready(self) -> bool:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited:\n{self.log_tail(name)}")
        listed = json.loads(self.cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
        # Ready, and the node lifecycle controller has lifted the not-ready taint new nodes are created with.
        ready = {
            n["metadata"]["name"]
            for n in listed
            if any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))
            and not any(t["key"] == NOT_READY_TAINT for t in n["spec"].get("taints", []))
        }
        return {node.name for node in self.nodes} <= ready

    def log_tail(self, name: str, lines: int = 30) -> str:
        return log_tail(self.workdir / f"{name}.log", lines)

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_process_group(proc)
        shutil.rmtree(self.workdir, ignore_errors=True)
