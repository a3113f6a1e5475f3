"""The twin's front door on the demo corpus and `llmtwin serve` (SmolLM2-135M-Instruct): OpenAI's client
and huggingface_hub's InferenceClient ask it questions; answers come generated, with the sources
they were grounded in; streams carry the same text and end with the sources."""

from __future__ import annotations

import json
import urllib.request

import pytest
from openai import OpenAI

from llmtwin.corpus.embed import embedder_for
from llmtwin.corpus.store import store_for
from llmtwin.frontdoor.answer import FrontDoor
from llmtwin.frontdoor.http import create_app
from llmtwin.frontdoor.retrieve import Retriever
from llmtwin.serving.client import model_server_client
from llmtwin.sources.objects import FolderStore
from llmtwin.workflows.ingest.pipeline import IngestPipeline
from tests.harness.apps import served
from tests.twins import ROOT, example_twin

pytestmark = pytest.mark.slow
RINGS = "How many iron rings are on the harbour wall?"


@pytest.fixture(scope="module")
def corpus_twin(tmp_path_factory):
    """The example twin with the demo corpus ingested."""
    work = tmp_path_factory.mktemp("front-door")
    twin = example_twin(vectorStore={"uri": str(work / "milvus.db")}, sources=[{"bucket": "corpus"}])
    pipeline = IngestPipeline(
        twin, lambda source: FolderStore(ROOT / "examples"), store_for(twin), embedder_for(DEFAULT_MODEL)
    )
    for path in sorted((ROOT / "examples" / "corpus").iterdir()):
        assert pipeline.put("corpus", path.name).outcome == "ingested", path
    store_for(twin).flush()
    return twin


@pytest.fixture(scope="module")
def front_door(smollm2_server, corpus_twin):
    door = FrontDoor(corpus_twin, Retriever(corpus_twin), smollm2_server.url)
    with served(create_app(door, lambda: {})) as url:
        yield url


DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def test_openai_client_gets_a_generated_answer_and_its_sources(front_door):
    client = OpenAI(base_url=f"{front_door}/v1", api_key="unused")
    answer = client.chat.completions.create(model="twin", messages=[{"role": "user", "content": RINGS}], seed=1)
    text = answer.choices[0].message.content
    assert text.strip() and answer.usage.completion_tokens > 0
    sources = answer.model_extra["sources"]
    assert sources[0]["source"] == "corpus/harbour-walls.pdf" and "forty-one" in sources[0]["text"]

    stream = client.chat.completions.create(
        model="twin", messages=[{"role": "user", "content": RINGS}], seed=1, stream=True
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].model_extra["sources"] == sources  # the last chunk names the sources


def test_inference_client_talks_to_the_front_door_too(front_door):
    client = model_server_client(front_door)
    question = [{"role": "user", "content": "When does the winter ferry leave for the islands?"}]
    whole = client.chat_completion(question, max_tokens=40).choices[0].message.content
    streamed = "".join(
        c.choices[0].delta.content or "" for c in client.chat_completion(question, max_tokens=40, stream=True)
    )
    assert whole.strip() and streamed == whole


def test_ask_answers_with_sources_scores_and_timings(front_door):
    body = json.dumps({"question": RINGS, "top_k": 2}).encode()
    request = urllib.request.Request(f"{front_door}/ask", body, {"Content-Type": "application/json"})
    answer = json.loads(urllib.request.urlopen(request, timeout=300).read())
    assert answer["answer"].strip() and answer["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert len(answer["sources"]) == 2 and answer["sources"][0]["source"] == "corpus/harbour-walls.pdf"
    assert set(answer["timings_ms"]) == {"retrieve", "total"}
    metrics = urllib.request.urlopen(f"{front_door}/metrics", timeout=10).read().decode()
    assert 'llmtwin_frontdoor_questions_total{outcome="generated"}' in metrics


def test_query_expansion_searches_the_paraphrases_the_model_writes(smollm2_server, corpus_twin):
    twin = corpus_twin.model_copy(deep=True)
    twin.spec.serving.gateway.query_expansion = 2
    answer = FrontDoor(twin, Retriever(twin), smollm2_server.url).ask(RINGS, generate=False)
    assert 1 <= len(answer.paraphrases) <= 2, answer.paraphrases  # only the model writes them
    assert all(p.strip() and p.lower() != RINGS.lower() for p in answer.paraphrases)
    assert answer.wire()["paraphrases"] == answer.paraphrases and answer.timings["expand"] > 0
    assert "corpus/harbour-walls.pdf" in [h.source for h in answer.hits]
