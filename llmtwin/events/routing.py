"""Which twins an event is for: a pure function of (twins, event), plus where the twins come from.

In a cluster the gateway lists `llmtwins.llmtwin.dev` through the API (cached; a miss refreshes, so
a twin created a moment ago is found); in embedded mode the twins are given.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from pydantic import ValidationError

from llmtwin.api.names import GROUP
from llmtwin.api.v1alpha1 import PLURAL, VERSION, LLMTwin
from llmtwin.events.records import ObjectEvent
from llmtwin.events.submit import Backoff, retry, transient_api_error

log = logging.getLogger(__name__)


def route(twins: list[LLMTwin], event: ObjectEvent) -> list[LLMTwin]:
    """Every twin with a source (bucket, prefix, suffix) that contains this object."""
    return [t for t in twins if any(s.matches(event.bucket, event.key) for s in t.spec.sources)]


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
