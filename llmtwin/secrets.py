"""Reading values out of Secrets in a twin's namespace, never out of the spec: through the API by name
(the operator and the gateway: get, never list or watch) or from files mounted the way the kubelet mounts
Secrets (workflow pods, the front door, and `llmtwin up`'s `<data dir>/secrets`).

The spec names a Secret and a key; what reads it depends on the process, so every consumer takes a
`Secrets` and asks for `value(name, key)`: S3 credentials of a source, the Milvus token and CA bundle.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Protocol

from kubernetes.client import CoreV1Api
from kubernetes.client.exceptions import ApiException

from llmtwin.api.conditions import Reason
from llmtwin.api.errors import ReasonedError


class SecretError(ReasonedError):
    """A Secret that is missing (reason SecretMissing) or lacks a key (SecretInvalid)."""


class Secrets(Protocol):
    def value(self, name: str, key: str) -> str: ...


class SecretFiles:
    """Secrets mounted as `<root>/<secret name>/<key>` (one file per key, the value as its content)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def value(self, name: str, key: str) -> str:
        folder = self.root / name
        if not folder.is_dir():
            raise SecretError(Reason.SECRET_MISSING, f"Secret {name} is not mounted at {folder}")
        path = folder / key
        value = path.read_text().strip() if path.is_file() else ""
        if not value:
            raise SecretError(Reason.SECRET_INVALID, f"Secret {name} has no key {key} ({path})")
        return value


class KubernetesSecrets:
    """The Secrets of one namespace through the API, each read once per instance (one reconcile, one lookup)."""

    def __init__(self, api: CoreV1Api, namespace: str):
        self.api = api
        self.namespace = namespace
        self._data: dict[str, dict[str, str]] = {}

    def value(self, name: str, key: str) -> str:
        if name not in self._data:
            try:
                self._data[name] = self.api.read_namespaced_secret(name, self.namespace).data or {}
            except ApiException as exc:
                if exc.status == 404:
                    raise SecretError(Reason.SECRET_MISSING, f"Secret {self.namespace}/{name} not found") from exc
                raise
        encoded = self._data[name].get(key)
        if not encoded:
            raise SecretError(Reason.SECRET_INVALID, f"Secret {self.namespace}/{name} has no key {key}")
        return base64.b64decode(encoded).decode().strip()
