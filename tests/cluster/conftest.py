"""The operator under test: `llmtwin operator` as a real process, authenticated as the
ServiceAccount from manifests/operator/rbac.yaml (so the RBAC we ship is proven sufficient)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.harness import free_port

ROOT = Path(__file__).resolve().parents[2]
RESYNC_SECONDS = 2


class OperatorProcess:
    def __init__(self, kubeconfig: Path, log_dir: Path):
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        port = free_port()
        self.starts += 1
        log = open(self.log_dir / f"operator-{self.starts}.log", "wb")
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "LLMTWIN_RESYNC_SECONDS": str(RESYNC_SECONDS),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llmtwin.cli", "operator", f"--liveness=http://127.0.0.1:{port}/healthz"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited: {self.log_tail()}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"operator not live after 60 s: {self.log_tail()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def log_tail(self, lines: int = 40) -> str:
        log = self.log_dir / f"operator-{self.starts}.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


@pytest.fixture(scope="session")
def operator_sa_kubeconfig(kube_cluster) -> Path:
    for manifest in ("namespace.yaml", "rbac.yaml", "workflow-rbac.yaml"):
        kube_cluster.kubectl("apply", "-f", str(ROOT / "manifests/operator" / manifest))
    return kube_cluster.service_account_kubeconfig("llmtwin-system", "llmtwin-operator")


@pytest.fixture(scope="session")
def operator(operator_sa_kubeconfig, tmp_path_factory):
    proc = OperatorProcess(operator_sa_kubeconfig, tmp_path_factory.mktemp("operator"))
    proc.start()
    yield proc
    proc.kill(signal.SIGTERM)


def get_json(kube_cluster, *args) -> dict:
    return json.loads(kube_cluster.kubectl("get", *args, "-o", "json").stdout)
