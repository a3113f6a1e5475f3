"""Tenancy: which twin a named collection belongs to, and an empty Milvus uri made concrete per platform."""

import pytest
from pydantic import ValidationError

from llmtwin.api.conditions import Reason
from llmtwin.operator.tenancy import Claim, claim, collection_conflict, collection_key
from tests.twins import example_twin

PLATFORM_MILVUS = "http://milvus.platform:19530"


def twin(name: str, namespace: str, created: str, collection: str | None = None):
    spec = {"vectorStore": {"collection": collection}} if collection else {}
    made = example_twin(name, namespace, **spec).with_default_milvus(PLATFORM_MILVUS)
    made.metadata.creation_timestamp = created
    return made


class TestCollectionConflict:
    def test_the_first_twin_to_name_a_collection_owns_it(self):
        first = twin("alice", "team-a", "2026-12-01T10:00:00Z", collection="shared")
        second = twin("bob", "team-b", "2026-12-01T11:00:00Z", collection="shared")
        claims = [claim(first), claim(second)]
        assert collection_key(first) == collection_key(second) == (PLATFORM_MILVUS, "shared")
        assert collection_conflict(first, claims) is None
        problem = collection_conflict(second, claims)
        assert problem.reason == Reason.COLLECTION_TAKEN
        assert "'shared'" in problem.message and "belongs to LLMTwin team-a/alice" in problem.message

    def test_same_name_different_milvus_or_derived_names_do_not_collide(self):
        here = twin("demo", "team-a", "2026-12-01T10:00:00Z")
        there = twin("demo", "team-b", "2026-12-01T09:00:00Z")
        assert collection_key(here) != collection_key(there)  # derived from namespace and name
        elsewhere = example_twin("x", "team-a", vectorStore={"uri": "http://other:19530", "collection": "shared"})
        assert collection_key(elsewhere) != collection_key(twin("y", "team-b", "t", collection="shared"))

    def test_a_tie_goes_to_the_lower_namespace_and_name_so_every_replica_agrees(self):
        ann, bob = twin("ann", "ns", "2026-12-01T10:00:00Z", "c"), twin("bob", "ns", "2026-12-01T10:00:00Z", "c")
        assert collection_conflict(bob, [claim(ann), claim(bob)]) is not None
        assert collection_conflict(ann, [claim(ann), claim(bob)]) is None
        assert min(Claim("2026", "z", "z"), Claim("2025", "a", "a")).created == "2025"


class TestDefaultMilvus:
    def test_an_empty_uri_is_the_platforms_and_an_explicit_one_stays(self):
        assert example_twin().spec.vector_store.uri == ""  # examples/twin.yaml names no Milvus
        assert example_twin().with_default_milvus(PLATFORM_MILVUS).spec.vector_store.uri == PLATFORM_MILVUS
        named = example_twin(vectorStore={"uri": "http://mine:19530"})
        assert named.with_default_milvus(PLATFORM_MILVUS).spec.vector_store.uri == "http://mine:19530"

    def test_a_filled_in_file_is_checked_as_milvus_lite(self):
        hnsw = example_twin(vectorStore={"indexType": "HNSW"})  # fine for the platform's Milvus server
        assert hnsw.with_default_milvus(PLATFORM_MILVUS).spec.vector_store.index_type == "HNSW"
        with pytest.raises(ValidationError, match="no HNSW"):
            hnsw.with_default_milvus("/data/demo/milvus.db")
