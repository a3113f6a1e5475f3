"""The shipped event-plane manifests are accepted by the real API server (with the real CRD
schemas) and by Alertmanager's own config checker."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.cluster
@pytest.mark.parametrize(
    "manifest",
    [
        "manifests/gateway/rbac.yaml",
        "manifests/gateway/deployment.yaml",
        "manifests/gateway/alertmanager.yaml",
        "manifests/gateway/servicemonitor.yaml",
        "manifests/operator/podmonitor.yaml",
        "manifests/monitoring/argo-rollouts-servicemonitor.yaml",
    ],
)
def test_gateway_manifests_pass_server_side_validation(kube_cluster, manifest):
    kube_cluster.kubectl("apply", "-f", str(ROOT / "manifests/operator/namespace.yaml"))
    result = kube_cluster.kubectl("apply", "--dry-run=server", "-f", str(ROOT / manifest), check=False)
    assert result.returncode == 0, result.stderr


def test_plain_alertmanager_config_is_valid():
    result = subprocess.run(
        ["amtool", "check-config", str(ROOT / "manifests/gateway/alertmanager/alertmanager.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 receivers" in result.stdout
