"""Workflow steps report the twin's data status (documents, chunks, last ingestion, last error, ...).

In a cluster the step patches the LLMTwin's status subresource; under `llmtwin up` and `llmtwin
train` it writes a JSON file in the data directory. The sink is chosen once per process
(`StepSettings.status_sink`: `kubernetes` or `file:<path>`) and handed to steps in their context.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Protocol

from llmtwin.api.names import GROUP
from llmtwin.api.v1alpha1 import PLURAL, VERSION, LLMTwin


class StatusReporter(Protocol):
    def report(self, twin: LLMTwin, fields: dict[str, Any]) -> None:
        """Merge `fields` into the twin's status (JSON merge patch: nested objects merge, None deletes)."""


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386, as the API server applies `fields` to the status subresource."""
    merged = dict(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_patch(merged[key], value)
        else:
            merged[key] = value
    return merged


class FileStatusReporter:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def read(self) -> dict[str, Any]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def report(self, twin: LLMTwin, fields: dict[str, Any]) -> None:
        with self._lock:
            status = merge_patch(self.read(), fields)
            tmp = self.path.with_suffix(".tmp")
            tmp.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(status, indent=2, sort_keys=True))
            tmp.replace(self.path)  # atomic: a reader never sees half a file


class KubernetesStatusReporter:
    """Patches `llmtwins/status` (the workflow ServiceAccount may do exactly that); connects on first use."""

    def __init__(self, kubeconfig: str | None = None):
        self.kubeconfig = kubeconfig
        self._api = None

    def report(self, twin: LLMTwin, fields: dict[str, Any]) -> None:
        from kubernetes.client import CustomObjectsApi

        from llmtwin.kube import api_client

        if self._api is None:
            self._api = CustomObjectsApi(api_client(self.kubeconfig))
        self._api.patch_namespaced_custom_object_status(
            GROUP, VERSION, twin.namespace, PLURAL, twin.name, {"status": fields}
        )


def reporter_for(sink: str, kubeconfig: str | None = None) -> StatusReporter:
    if sink.startswith("file:"):
        return FileStatusReporter(Path(sink.removeprefix("file:")))
    if sink == "kubernetes":
        return KubernetesStatusReporter(kubeconfig)
    raise ValueError(f"status sink {sink!r}: expected `kubernetes` or `file:<path>`")
