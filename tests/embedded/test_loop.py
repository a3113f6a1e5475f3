"""The whole loop, no human: `llmtwin up` on the demo corpus -> questions that leave the corpus -> the drift
alert -> a retrain of SmolLM2-135M-Instruct (a few steps) -> the gate against production (the base model
here) -> promotion -> the next answers are generated with the new adapter, which the answer and the model
server's /info both name. Everything is the real thing: the process a user starts, the real models, the
local MLflow registry."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request

import pytest
import yaml

from llmtwin.api import names
from tests.drift.questions import OFF_TOPIC
from tests.embedded.test_up import CLI
from tests.harness import free_port, wait_for
from tests.twins import ROOT, twin_doc

pytestmark = [pytest.mark.slow, pytest.mark.models]


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


def test_drift_retrains_promotes_and_serves_the_new_adapter_without_a_human(tmp_path):
    doc = twin_doc()
    doc["spec"]["vectorStore"]["uri"] = str(tmp_path / "milvus.db")
    # A short window and `for`, and a retrain of a few steps: the loop in minutes, not hours.
    doc["spec"]["drift"] = {"detector": "embedding-centroid", "window": "5m", "for": "2s", "minQuestions": 8}
    doc["spec"]["training"].update(
        {"maxSteps": 4, "batchSize": 2, "maxSeqLength": 128, "learningRate": 0.001, "resources": {}}
    )
    twin_file = tmp_path / "twin.yaml"
    twin_file.write_text(yaml.safe_dump(doc))
    data_dir, port, model_port = tmp_path / "data", free_port(), free_port()
    log = open(tmp_path / "up.log", "w")
    env = {**os.environ, "LLMTWIN_DRIFT_EVALUATE_SECONDS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)  # the local registry in the data directory
    args = ["--data-dir", str(data_dir), "--port", str(port), "--model-port", str(model_port)]
    up = subprocess.Popen(
        [*CLI, "up", "-f", str(twin_file), *args, "--seed", str(ROOT / "examples/corpus")],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )

    def status() -> dict:
        return json.loads((data_dir / "status.json").read_text())

    try:
        wait_for(lambda: (data_dir / "state.json").exists() or up.poll() is not None, 300, what="llmtwin up")
        assert up.poll() is None, (tmp_path / "up.log").read_text()
        before = post(f"http://127.0.0.1:{port}/ask", {"question": "Why do gulls wait?", "generate": True})
        assert before["model"] == doc["spec"]["baseModel"]["id"] and before["model_version"] is None

        for question in OFF_TOPIC[:12]:
            post(f"http://127.0.0.1:{port}/ask", {"question": question, "generate": False})
        promoted = wait_for(
            lambda: status().get("modelVersion"),
            timeout=900,
            interval=2,
            what=f"drift -> retrain -> promotion (llmtwin up's log: {tmp_path / 'up.log'})",
        )
        training = status()["lastTraining"]
        assert training["result"] == "Succeeded" and training["promoted"] and training["version"] == promoted
        assert not training["episode"].startswith("manual/")  # started by the drift alert, not by hand

        # The status records the promotion first; the running server then loads the adapter (a download
        # from the registry and a load, about a second) and the answers switch to it.
        registered = names.registered_model_name("default", "demo")

        def served() -> dict | None:
            with urllib.request.urlopen(f"http://127.0.0.1:{model_port}/info", timeout=10) as response:
                info = json.loads(response.read())
            return info if info["adapter_sources"] else None

        info = wait_for(served, timeout=60, what="the model server to load the promoted adapter")
        assert info["adapter_sources"] == {"demo": f"models:/{registered}/{promoted}"}, info
        after = wait_for(
            lambda: (
                (a := post(f"http://127.0.0.1:{port}/ask", {"question": "Why do gulls wait?"}))["model_version"] and a
            ),
            timeout=30,
            what="an answer from the promoted version",
        )
        assert after["model"] == "demo" and after["model_version"] == promoted, after
        assert after["answer"].strip()
        os.killpg(up.pid, signal.SIGINT)
        assert up.wait(timeout=120) == 0
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
    shown = subprocess.run(
        [*CLI, "status", "-f", str(twin_file), "--data-dir", str(data_dir)], capture_output=True, text=True, env=env
    )
    assert f"production: version {promoted}" in shown.stdout, shown.stdout + shown.stderr
