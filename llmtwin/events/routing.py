"""Which twins an event is for: a pure function of (twins, event), plus where the twins come from.

In a cluster the gateway lists `llmtwins.llmtwin.dev` through the API (cached; a miss refreshes, so
a twin created a moment ago is found); in embedded mode the twins are given.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol
from urllib.parse import urlsplit

from pydantic import ValidationError

from llmtwin.api.names import GROUP
from llmtwin.api.v1alpha1 import PLURAL, VERSION, LLMTwin, SourceSpec
from llmtwin.events.records import ObjectEvent
from llmtwin.events.submit import Backoff, retry, transient_api_error

log = logging.getLogger(__name__)


def endpoint_identity(url: str) -> tuple[str, str, int | None]:
    """scheme, host, port: what makes two spellings of a MinIO endpoint the same server."""
    parts = urlsplit(url.strip() if "://" in url else f"http://{url.strip()}")
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or default_port


def route(twins: list[LLMTwin], event: ObjectEvent, default_endpoint: str = "") -> list[LLMTwin]:
    """Every twin with a source that holds this object: its bucket, prefix and suffix, and, when the event
    says which MinIO sent it, the same endpoint (a source without one: `default_endpoint`, the platform's).
    So two twins naming the same bucket on two MinIOs each get only their own objects, whatever namespaces
    they are in. Without an origin (the folder watcher) or an endpoint to compare, the bucket decides."""
    origin = endpoint_identity(event.origin) if event.origin else None

    def holds(source: SourceSpec) -> bool:
        if not source.matches(event.bucket, event.key):
            return False
        endpoint = source.endpoint or default_endpoint
        return origin is None or not endpoint or endpoint_identity(endpoint) == origin

    return [t for t in twins if any(holds(s) for s in t.spec.sources)]


def find_twin(twins: list[LLMTwin], namespace: str, name: str) -> LLMTwin | None:
    return next((t for t in twins if t.namespace == namespace and t.name == name), None)


class TwinDirectory(Protocol):
    def twins(self, refresh: bool = False) -> list[LLMTwin]: ...


class StaticTwins:
    def __init__(self, twins: list[LLMTwin]):
        self._twins = list(twins)

    def twins(self, refresh: bool = False) -> list[LLMTwin]:
        return self._twins


class KubernetesTwins:
    """LLMTwins from the API server, cached for `ttl` seconds; refreshes at most every `min_interval`. An empty
    vectorStore.uri is the platform's Milvus (`milvus_uri`), as the operator renders it for the steps."""

    def __init__(
        self,
        api_client,
        milvus_uri: str,
        namespaces: list[str] | None = None,
        ttl: float = 30.0,
        min_interval: float = 1.0,
        stop: threading.Event | None = None,
    ):
        from kubernetes.client import CustomObjectsApi

        self.api = CustomObjectsApi(api_client)
        self.stop = stop or threading.Event()
        self.milvus_uri = milvus_uri
        self.namespaces = namespaces or []
        self.ttl = ttl
        self.min_interval = min_interval
        self._twins: list[LLMTwin] = []
        self._loaded = float("-inf")
        self._lock = threading.Lock()

    def twins(self, refresh: bool = False) -> list[LLMTwin]:
        with self._lock:
            age = time.monotonic() - self._loaded
            if age > self.ttl or (refresh and age > self.min_interval):
                self._twins = retry("list twins", self._load, transient_api_error, self.stop, Backoff())
                self._loaded = time.monotonic()
            return self._twins

    def _load(self) -> list[LLMTwin]:
        if self.namespaces:
            items = [
                item
                for ns in self.namespaces
                for item in self.api.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
            ]
        else:
            items = self.api.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
        twins = []
        for item in items:
            if item["metadata"].get("deletionTimestamp"):
                continue  # being deleted: its events are no longer wanted
            try:
                twins.append(LLMTwin.model_validate(item).with_default_milvus(self.milvus_uri))
            except ValidationError as exc:
                log.warning("skipping invalid LLMTwin %s: %s", item["metadata"].get("name"), exc.errors()[0]["msg"])
        return twins
