"""A kubelet stand-in for one container of a rendered WorkflowTemplate: the one piece that cannot run
here (no container runtime). It does what the kubelet and Argo's executor would do for that container,
from the API server's own objects: mounts the ConfigMap and Secret volumes as files (one file per key),
substitutes the Workflow's parameters into the arguments, and runs the container's command
(`llmtwin step ...`) as a local process with the container's environment, its mount paths mapped to
the local folders. Everything the step then reads comes through the wiring the operator rendered."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

PARAMETER = re.compile(r"\{\{\s*inputs\.parameters\.([\w-]+)\s*\}\}")


def _get(kube_cluster, kind: str, name: str, namespace: str) -> dict[str, Any]:
    return json.loads(kube_cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout)


def mount_volume(kube_cluster, volume: dict[str, Any], namespace: str, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    if "configMap" in volume:
        for key, value in _get(kube_cluster, "configmap", volume["configMap"]["name"], namespace)["data"].items():
            (target / key).write_text(value)
    elif "secret" in volume:
        secret = _get(kube_cluster, "secret", volume["secret"]["secretName"], namespace)
        for key, value in secret.get("data", {}).items():
            (target / key).write_bytes(base64.b64decode(value))
    # emptyDir (the workspace): the folder itself.


def run_container(
    kube_cluster,
    template: dict[str, Any],
    workflow: dict[str, Any],
    container_name: str,
    workdir: Path,
    kubeconfig: Path,
    python: str = sys.executable,
) -> subprocess.CompletedProcess:
    """Run `container_name` of `template` for `workflow` (its parameters) as a local process, with
    `python` (an image's interpreter; default the tests') outside the checkout."""
    namespace = template["metadata"]["namespace"]
    spec = template["spec"]
    step = next(t for t in spec["templates"] if t["name"] == container_name)
    container = step["container"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    rootfs = workdir / "rootfs"  # the container's filesystem: each volume at its mount path
    mount_paths = []
    for mount in container.get("volumeMounts", []):
        mount_volume(kube_cluster, volumes.get(mount["name"], {}), namespace, rootfs / mount["mountPath"].lstrip("/"))
        mount_paths.append(mount["mountPath"])

    def local_path(value: str) -> str:
        """A path in the container (a mount, inside one, or a folder holding mounts) as the local path."""
        inside = any(value == m or value.startswith(m + "/") or m.startswith(value + "/") for m in mount_paths)
        return str(rootfs / value.lstrip("/")) if value.startswith("/") and inside else value

    params = {p["name"]: p.get("value", "") for p in workflow["spec"]["arguments"]["parameters"]}
    args = [PARAMETER.sub(lambda m: params[m.group(1)], a) for a in container.get("args", [])]
    env = {e["name"]: local_path(e["value"]) for e in container.get("env", []) if "value" in e}
    command = container["command"]
    assert command[0] == "llmtwin", command
    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [python, "-m", "llmtwin.cli", *command[1:], *args],
        cwd=workdir,
        env={"PATH": os.environ["PATH"], "HOME": os.environ["HOME"], "KUBECONFIG": str(kubeconfig), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
