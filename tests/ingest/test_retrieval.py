"""Retrieval: filters, and the messages the front door sends to the model server."""

import pytest

from llmtwin.frontdoor.retrieve import Retriever, source_filter
from tests.ingest.conftest import drop


@pytest.fixture
def retriever(pipeline, inbox, embedder):
    drop(inbox, "2025/fog.md", "# Fog\n\nFog took the town street by street; the foghorn sounds two notes.")
    drop(inbox, "2026/ferry.md", "# Ferry\n\nThe winter ferry leaves at eight and at four.")
    for key in ("2025/fog.md", "2026/ferry.md"):
        assert pipeline.put("essays", key).outcome == "ingested"
    return Retriever(pipeline.twin, pipeline.store, embedder)


def test_filters_restrict_sources(retriever):
    question = "What sound does the foghorn make?"
    assert retriever.retrieve(question)[0].key == "2025/fog.md"
    only_2026 = retriever.retrieve(question, filter=source_filter(key_prefix="2026/"))
    assert [h.key for h in only_2026] == ["2026/ferry.md"]
    assert retriever.retrieve(question, filter=source_filter(bucket="other")) == []
    assert retriever.retrieve(question, filter=source_filter(since=4_000_000_000)) == []


def test_the_prompt_speaks_as_the_author_and_carries_the_passages(retriever):
    hits = retriever.retrieve("When does the winter ferry leave?", top_k=1)
    system, user = retriever.messages("When does the winter ferry leave?", hits)
    assert system["role"] == "system" and system["content"].startswith("You are Mara Quill")
    assert retriever.twin.spec.author.style_notes in system["content"]
    assert user["role"] == "user" and "The winter ferry leaves at eight" in user["content"]
    assert user["content"].endswith("When does the winter ferry leave?")
