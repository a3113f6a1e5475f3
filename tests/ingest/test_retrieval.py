"""Retrieval: filters, and the messages the front door sends to the model server."""

import datetime as dt
import socket

import numpy as np
import pytest
from prometheus_client import REGISTRY

from llmtwin.frontdoor.answer import FrontDoor
from llmtwin.frontdoor.retrieve import Retriever, source_filter
from tests.ingest.conftest import drop


@pytest.fixture
def retriever(pipeline, inbox, embedder):
    dated = "---\ndate: 2025-11-02\n---\n"  # front matter: the document's date; the ferry note has its file's
    drop(inbox, "2025/fog.md", dated + "# Fog\n\nFog took the town street by street; the foghorn sounds two notes.")
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
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    assert retriever.retrieve(question, filter=source_filter(since=future)) == []


def test_since_and_until_select_documents_by_their_date(retriever):
    question = "What sound does the foghorn make?"
    november = dt.datetime(2025, 11, 1)
    in_2025 = retriever.retrieve(question, filter=source_filter(since=november, until=dt.datetime(2026, 1, 1)))
    assert [(h.key, h.wire()["published"]) for h in in_2025] == [("2025/fog.md", "2025-11-02T00:00:00+00:00")]
    # The undated note is dated by its file (today): after the fog essay, inside a window ending tomorrow.
    recent = retriever.retrieve(question, filter=source_filter(since=dt.datetime(2025, 11, 3)))
    assert [h.key for h in recent] == ["2026/ferry.md"]


def test_self_query_filters_by_the_dates_the_question_names(retriever):
    question = "What sound does the foghorn make, in what I wrote since December 2025?"
    assert retriever.retrieve(question)[0].key == "2025/fog.md"  # off by default: the date is only words
    twin = retriever.twin.model_copy(deep=True)
    twin.spec.serving.gateway.self_query = True
    asking = Retriever(twin, retriever.store, retriever.embedder)
    assert [h.key for h in asking.retrieve(question)] == ["2026/ferry.md"]  # dated by its file: today
    assert [h.key for h in asking.retrieve("What did I note about fog in November 2025?")] == ["2025/fog.md"]


def test_self_query_filters_by_the_sources_the_question_names(retriever):
    twin = retriever.twin.model_copy(deep=True)
    twin.spec.serving.gateway.self_query = True
    asking = Retriever(twin, retriever.store, retriever.embedder)
    foghorn = "What sound does the foghorn make"
    assert retriever.retrieve(f"{foghorn}, in ferry.md?")[0].key == "2025/fog.md"  # off: only words
    assert [h.key for h in asking.retrieve(f"{foghorn}, in ferry.md?")] == ["2026/ferry.md"]
    assert [h.key for h in asking.retrieve(f'{foghorn}, in "Ferry"?')] == ["2026/ferry.md"]  # by title
    # A name this twin has no file of filters nothing: the question is answered from its words.
    assert asking.retrieve(f"{foghorn}, in harbour.md?")[0].key == "2025/fog.md"


def test_paraphrases_fuse_their_lists_with_the_questions(retriever):
    fog = "What sound does the foghorn make?"
    ferry = ["When does the winter ferry leave?", "What time is the boat to the islands?"]
    assert retriever.retrieve(fog, top_k=1)[0].key == "2025/fog.md"
    hits, vector = retriever.retrieve_with_vector(fog, top_k=1, paraphrases=ferry)
    assert [h.key for h in hits] == ["2026/ferry.md"]  # two lists of three rank the ferry first
    # The drift monitor sees the question's embedding, not a paraphrase's (batched, so equal to float error).
    assert np.allclose(vector, retriever.embedder.embed([fog])[0], atol=1e-5)


def test_a_failing_model_server_costs_the_expansion_not_the_answer(retriever):
    twin = retriever.twin.model_copy(deep=True)
    twin.spec.serving.gateway.query_expansion = 2
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        door = FrontDoor(
            twin,
            Retriever(twin, retriever.store, retriever.embedder),
            f"http://{closed.getsockname()[0]}:{closed.getsockname()[1]}",
        )
        failures = REGISTRY.get_sample_value("llmtwin_query_expansion_failures_total") or 0.0
        answer = door.ask("What sound does the foghorn make?", generate=False)
    assert answer.hits[0].key == "2025/fog.md" and answer.paraphrases == []
    assert REGISTRY.get_sample_value("llmtwin_query_expansion_failures_total") == failures + 1
    assert "expand" in answer.timings


def test_the_prompt_speaks_as_the_author_and_carries_the_passages(retriever):
    hits = retriever.retrieve("When does the winter ferry leave?", top_k=1)
    system, user = retriever.messages("When does the winter ferry leave?", hits)
    assert system["role"] == "system" and system["content"].startswith("You are Mara Quill")
    assert retriever.twin.spec.author.style_notes in system["content"]
    assert user["role"] == "user" and "The winter ferry leaves at eight" in user["content"]
    assert user["content"].endswith("When does the winter ferry leave?")
