"""Workflow steps report the twin's data status (documents, chunks, last ingestion, last error).

In a cluster the step patches the LLMTwin's status subresource; under `llmtwin up` it writes a JSON
file in the data directory. `LLMTWIN_STATUS_SINK` chooses: `kubernetes` or `file:<path>`.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Protocol

from llmtwin.api.v1alpha1 import GROUP, PLURAL, VERSION, LLMTwin


class StatusReporter(Protocol):
    def report(self, twin: LLMTwin, fields: dict[str, Any]) -> None: ...


class FileStatusReporter:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def read(self) -> dict[str, Any]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def report(self, twin: LLMTwin, fields: dict[str, Any]) -> None:
        with self._lock:
            status = {**self.read(), **fields}
            tmp = self.path.with_suffix(".tmp")
            tmp.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(status, indent=2, sort_keys=True))
            tmp.replace(self.path)  # atomic: a reader never sees half a file


class KubernetesStatusReporter:
    def report(self, twin: LLMTwin, fields: dict[str, Any]) -> None:
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            # Read KUBECONFIG now: the client's default path is fixed when it is first imported.
            config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
        client.CustomObjectsApi().patch_namespaced_custom_object_status(
            GROUP, VERSION, twin.namespace, PLURAL, twin.name, {"status": fields}
        )


def reporter_from_env() -> StatusReporter:
    sink = os.environ.get("LLMTWIN_STATUS_SINK", "kubernetes")
    if sink.startswith("file:"):
        return FileStatusReporter(Path(sink.removeprefix("file:")))
    if sink == "kubernetes":
        return KubernetesStatusReporter()
    raise ValueError(f"LLMTWIN_STATUS_SINK={sink!r}: expected `kubernetes` or `file:<path>`")
