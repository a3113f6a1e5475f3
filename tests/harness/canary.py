"""A canary judged for real: the one stand-in, and AnalysisRuns through the real Argo Rollouts controller.

KWOK pods run no containers, so the canary pod's server is a real `llmtwin serve` beside the cluster which
the real Prometheus scrapes under the canary ReplicaSet's pod-template hash (file_sd labels, as the rendered
PodMonitor would label the pod's series). It serves the candidate adapter fetched from MLflow as the pod's
fetch-adapter init container would; its traffic is the caller's (`Traffic`).
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import yaml

from llmtwin.api import names
from llmtwin.api.names import ROLLOUT_HASH_METRIC_LABEL as HASH
from llmtwin.models.adapters import download_adapter
from llmtwin.operator.serving import CANARY_HASH_ARG
from tests.harness import wait_for

FINISHED = ("Successful", "Failed", "Error", "Inconclusive")


def post(url: str, body: dict) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class Traffic:
    """Requests sent to the stand-in in a loop until stopped: `request()` is one of them."""

    def __init__(self, request: Callable[[], object], pause: float = 0.2):
        self.request, self.pause = request, pause
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.is_set():
            self.request()
            self.stop.wait(self.pause)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stop.set()
        self.thread.join(timeout=120)


def generate(
    server_url: str, adapter: str = "", max_new_tokens: int = 2, prompt: str = "Say yes."
) -> Callable[[], int]:
    """One generation request (status code returned): with `adapter`, as the candidate's traffic."""
    parameters = {"max_new_tokens": max_new_tokens, **({"adapter_id": adapter} if adapter else {})}
    return lambda: post(f"{server_url}/generate", {"inputs": prompt, "parameters": parameters})[0]


class CanaryStandIn:
    """The canary pod's server for one twin's Rollout (see the module doc)."""

    def __init__(self, kubectl: Callable, server_url: str, prometheus, tracking_uri: str, namespace: str, twin: str):
        self.kubectl, self.server_url, self.prometheus = kubectl, server_url, prometheus
        self.tracking_uri, self.namespace, self.twin = tracking_uri, namespace, twin
        self.model = names.registered_model_name(namespace, twin)
        self.address = urllib.parse.urlsplit(server_url).netloc

    def rollout(self) -> dict:
        name = names.server_name(self.twin)
        return json.loads(self.kubectl("get", "rollout", name, "-n", self.namespace, "-o", "json").stdout)

    def canary_hash(self, version: str) -> str | None:
        """The template hash of `version`'s canary ReplicaSet, once the controller has created it."""
        body = self.rollout()
        status = body.get("status", {})
        template = body["spec"]["template"]["metadata"]["annotations"][names.MODEL_VERSION_ANNOTATION]
        current, stable = status.get("currentPodHash"), status.get("stableRS")
        return current if template == version and current and current != stable else None

    def load(self, version: str, workdir: Path) -> str | None:
        """`version`'s adapter fetched from MLflow and loaded into the server, as the canary pod's init container
        and server would; returns its name on the server (None: it did not load). Done before the canary
        starts, so the canary's first measurement finds traffic."""
        adapter = f"{self.twin}-v{version}"
        folder = download_adapter(self.tracking_uri, self.model, version, workdir / adapter)
        loaded, _ = post(f"{self.server_url}/v1/load_lora_adapter", {"lora_name": adapter, "lora_path": str(folder)})
        return adapter if loaded == 200 else None

    def label_canary(self, version: str) -> str:
        """Wait for `version`'s canary ReplicaSet; have Prometheus scrape the server as that canary's pod."""
        pod_hash = wait_for(lambda: self.canary_hash(version), timeout=90, what=f"the canary of version {version}")
        self.scrape_as(pod_hash)
        return pod_hash

    def scrape_as(self, pod_hash: str) -> None:
        self.prometheus.set_targets([(self.address, {"namespace": self.namespace, HASH: pod_hash})])
        wait_for(lambda: self.prometheus.up(**{HASH: pod_hash}), timeout=30, what=f"prometheus to scrape {pod_hash}")


# ------------------------------------------------------------------------------- standalone AnalysisRuns
def start_analysis_run(kubectl: Callable, metrics: list[dict], name: str, namespace: str, canary_hash: str) -> dict:
    """The rendered AnalysisTemplate's metrics as an AnalysisRun for one canary hash (what a Rollout creates)."""
    run = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisRun",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"args": [{"name": CANARY_HASH_ARG, "value": canary_hash}], "metrics": metrics},
    }
    kubectl("apply", "-f", "-", input=yaml.safe_dump(run))
    return run


def analysis_outcome(kubectl: Callable, run: dict, timeout: float = 120) -> dict:
    """The AnalysisRun's status once the controller has decided it."""
    name, namespace = run["metadata"]["name"], run["metadata"]["namespace"]

    def status() -> dict | None:
        body = json.loads(kubectl("get", "analysisrun", name, "-n", namespace, "-o", "json").stdout)
        current = body.get("status", {})
        return current if current.get("phase") in FINISHED else None

    return wait_for(status, timeout=timeout, what=f"AnalysisRun {name} to finish")


def measured(status: dict) -> dict[str, list[str]]:
    return {m["name"]: [x.get("value", "") for x in m.get("measurements", [])] for m in status["metricResults"]}
