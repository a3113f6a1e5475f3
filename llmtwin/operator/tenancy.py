"""Which twin a Milvus collection belongs to, when two twins name the same one.

Every twin's (Milvus uri, collection) is kept in a kopf index (`main.twin_collections`: in memory, fed by
the watch, no API call per reconcile). The collection belongs to the twin created first (then the
lower namespace/name); any other twin naming it is Degraded, with the owner in the message, and gets
no children: its Workflows would read and write another author's chunks. The collection itself also
records the twin it was created for (`corpus.store`), which the ingest steps and the finalizer check.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from llmtwin.api.conditions import Reason
from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.operator.status import Failure


@dataclass(frozen=True, order=True)
class Claim:
    """A twin naming a collection; ordered by who came first."""

    created: str  # metadata.creationTimestamp (RFC 3339 in UTC: sorts as text)
    namespace: str
    name: str


def collection_key(twin: LLMTwin) -> tuple[str, str]:
    """What identifies the stored chunks: the Milvus (resolved: an empty uri is the platform's) and the collection."""
    return twin.spec.vector_store.uri, twin.collection


def claim(twin: LLMTwin) -> Claim:
    return Claim(twin.metadata.creation_timestamp or "", twin.namespace, twin.name)


def collection_conflict(twin: LLMTwin, claims: Iterable[Claim]) -> Failure | None:
    """A problem when another twin holds this twin's collection; None when it is this twin's own."""
    owner = min([*claims, claim(twin)])
    if (owner.namespace, owner.name) == (twin.namespace, twin.name):
        return None
    uri, collection = collection_key(twin)
    return Failure(
        Reason.COLLECTION_TAKEN,
        f"spec.vectorStore.collection: {collection!r} at {uri} belongs to LLMTwin {owner.namespace}/{owner.name}; "
        "set spec.vectorStore.collection to a name of this twin's own",
    )
