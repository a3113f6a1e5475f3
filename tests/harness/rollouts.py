"""The real Argo Rollouts controller (`rollouts-controller`, built by `infra/build.sh rollouts`) against
the test API server: it reconciles the Rollouts the operator renders and exports `rollout_info`."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

from tests.harness import free_port, log_tail, spawn, stop_process_group, wait_for
from tests.harness.kube import BIN, InfraMissing

BINARY = BIN / "rollouts-controller"


class RolloutsController:
    def __init__(self, kubeconfig: Path):
        self.kubeconfig = kubeconfig
        self.workdir = Path(tempfile.mkdtemp(prefix="llmtwin-rollouts-"))
        self.log = self.workdir / "rollouts-controller.log"
        self.metrics_port = free_port()
        self.healthz_port = free_port()
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.proc: subprocess.Popen | None = None

    def start(self) -> RolloutsController:
        if not BINARY.exists():
            raise InfraMissing(f"{BINARY} missing: run infra/build.sh rollouts (or `make test`)")
        self.proc = spawn(
            [
                BINARY,
                f"--kubeconfig={self.kubeconfig}",
                f"--metricsport={self.metrics_port}",
                f"--healthzPort={self.healthz_port}",
                "--leader-elect=false",  # one controller
                "--loglevel=warn",
            ],
            self.log,
        )
        wait_for(self._ready, timeout=60, what="the Argo Rollouts controller's metrics")
        return self

    def _ready(self) -> bool:
        if self.proc and self.proc.poll() is not None:
            raise RuntimeError(self.log_tail())
        try:
            return urllib.request.urlopen(self.metrics_url, timeout=1).status == 200
        except OSError:
            return False

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log, lines)

    def stop(self) -> None:
        stop_process_group(self.proc)
        shutil.rmtree(self.workdir, ignore_errors=True)
