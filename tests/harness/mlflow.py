"""A real `mlflow server` (the venv's own) on loopback: SQLite backend, local artifact store."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from tests.harness import free_port, stop_process_group, wait_for

STARTUP_SECONDS = 120


class MlflowServer:
    def __init__(self):
        self.workdir = Path(tempfile.mkdtemp(prefix="llmtwin-mlflow-"))
        self.proc: subprocess.Popen | None = None
        self.tracking_uri = ""

    def start(self) -> MlflowServer:
        port = free_port()
        self.tracking_uri = f"http://127.0.0.1:{port}"
        log = open(self.workdir / "mlflow.log", "wb")
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "mlflow"),
                "server",
                "--backend-store-uri",
                f"sqlite:///{self.workdir / 'mlflow.db'}",
                "--artifacts-destination",
                str(self.workdir / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the server forks workers: stop the whole group
        )
        wait_for(self._healthy, timeout=STARTUP_SECONDS, what=f"mlflow server at {self.tracking_uri}")
        return self

    def _healthy(self) -> bool:
        if self.proc and self.proc.poll() is not None:
            raise RuntimeError((self.workdir / "mlflow.log").read_text(errors="replace")[-2000:])
        try:
            return urllib.request.urlopen(f"{self.tracking_uri}/health", timeout=1).status == 200
        except OSError:
            return False

    def stop(self) -> None:
        stop_process_group(self.proc)
        shutil.rmtree(self.workdir, ignore_errors=True)


def register_adapter(tracking_uri: str, namespace: str, twin: str, folder: Path) -> str:
    """`folder` registered as a new version of the twin's model, as the retrain's register step lays it out
    (a run's `adapter/` artifacts); returns the version."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from llmtwin.api import names

    client = MlflowClient(tracking_uri)
    model = names.registered_model_name(namespace, twin)
    try:
        client.get_registered_model(model)
    except MlflowException:
        client.create_registered_model(model)
    experiment_name = names.experiment_name(namespace, twin)
    experiment = client.get_experiment_by_name(experiment_name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(experiment_name)
    run = client.create_run(experiment_id)
    client.log_artifacts(run.info.run_id, str(folder), "adapter")
    client.set_terminated(run.info.run_id)
    return str(client.create_model_version(model, f"runs:/{run.info.run_id}/adapter", run.info.run_id).version)
