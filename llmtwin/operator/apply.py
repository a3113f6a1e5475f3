"""Idempotent apply of rendered children: read, compare, and write only when something differs.

Server-side apply alone would converge, but every no-op apply is still a write request. Reading the
live object first and skipping it when it already contains everything we render keeps a no-op
reconcile at zero writes (the benchmark counts them), while a manual edit to a field we own is
still put back on the next reconcile.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError
from kubernetes.dynamic.resource import Resource
from prometheus_client import Counter

FIELD_MANAGER = "llmtwin-operator"

API_WRITES = Counter(
    "llmtwin_operator_api_writes_total", "Mutating API requests made by the operator", ["kind", "verb"]
)
API_READS = Counter("llmtwin_operator_api_reads_total", "Read API requests made by the operator", ["kind"])
# The API refused the object (schema, RBAC, a missing CRD, a conflict): someone has to act; retrying
# the same request cannot help. Anything else (timeouts, 5xx, 429) is a blip worth retrying.
REJECTED_STATUSES = frozenset({400, 403, 404, 409, 422})


def rejected(exc: ApiException) -> bool:
    return exc.status in REJECTED_STATUSES


def contains(live: Any, desired: Any) -> bool:
    """True when `live` already holds every field and value of `desired` (extra live fields are fine:
    the API server adds defaults and status). An empty list or map we render is held by a missing field:
    controllers that round-trip an object through Go types drop them (`omitempty`)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            contains(live[k], v) if k in live else v in ([], {}) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(contains(lv, dv) for lv, dv in zip(live, desired, strict=True))
        )
    if isinstance(desired, bool) or isinstance(live, bool):
        return live is desired
    if isinstance(desired, int | float) and isinstance(live, int | float):
        return float(live) == float(desired)
    return live == desired


def _with_live_values(obj: dict[str, Any], live: dict[str, Any], paths: list[tuple[str, ...]]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    for path in paths:
        source, target = live, obj
        for part in path[:-1]:
            source, target = source.get(part, {}), target.setdefault(part, {})
        if path[-1] in source:
            target[path[-1]] = source[path[-1]]
    return obj


class Applier:
    """Applies objects with server-side apply under one field manager, skipping no-ops."""

    def __init__(self, api_client: client.ApiClient, field_manager: str = FIELD_MANAGER):
        self._dynamic = DynamicClient(api_client)
        self._field_manager = field_manager
        self._resources: dict[tuple[str, str], Resource] = {}
        self._lock = threading.Lock()

    def resource(self, api_version: str, kind: str) -> Resource:
        key = (api_version, kind)
        with self._lock:
            if key not in self._resources:
                self._resources[key] = self._dynamic.resources.get(api_version=api_version, kind=kind)
            return self._resources[key]

    def get(self, api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        API_READS.labels(kind).inc()
        try:
            return self.resource(api_version, kind).get(name=name, namespace=namespace).to_dict()
        except NotFoundError:
            return None

    def delete(self, api_version: str, kind: str, name: str, namespace: str) -> bool:
        """Delete an object; False if it was already gone."""
        try:
            self.resource(api_version, kind).delete(name=name, namespace=namespace)
        except NotFoundError:
            return False
        API_WRITES.labels(kind, "delete").inc()
        return True

    def apply(self, obj: dict[str, Any], keep_live: list[tuple[str, ...]] = ()) -> bool:
        """Apply `obj`; return True if a write was needed. `keep_live`: paths whose live value, once the object
        exists, is applied instead of ours (a field another controller decides after creation)."""
        meta = obj["metadata"]
        live = self.get(obj["apiVersion"], obj["kind"], meta["name"], meta["namespace"])
        if live is not None and keep_live:
            obj = _with_live_values(obj, live, keep_live)
        if live is not None and contains(live, obj):
            return False
        self.resource(obj["apiVersion"], obj["kind"]).server_side_apply(
            body=obj,
            name=meta["name"],
            namespace=meta["namespace"],
            field_manager=self._field_manager,
            force_conflicts=True,
        )
        API_WRITES.labels(obj["kind"], "apply").inc()
        return True
