"""Retrieval quality on the labelled set over the demo corpus (examples/retrieval-set.yaml): hit@1 and MRR
for dense, BM25 and hybrid retrieval through the real embedding model and Milvus Lite, with floors; the
mode a twin uses by default is the one that scores best; the spec's mode is the one the front door uses."""

from pathlib import Path

import pytest

from llmtwin.api.v1alpha1 import GatewaySpec
from llmtwin.corpus.evaluation import load_retrieval_set, score
from llmtwin.frontdoor.retrieve import Retriever
from tests.ingest.test_pipeline import CORPUS, load_corpus

ROOT = Path(__file__).resolve().parents[2]
FLOORS = {"dense": (0.7, 0.8), "bm25": (0.55, 0.7), "hybrid": (0.6, 0.75)}  # (hit@1, MRR), a few points below


@pytest.fixture
def ingested(pipeline, inbox):
    load_corpus(inbox)
    for path in CORPUS.iterdir():
        assert pipeline.put("essays", path.name).outcome == "ingested"
    return pipeline


def test_each_mode_clears_its_floor_and_the_default_scores_best(ingested, embedder):
    retriever = Retriever(ingested.twin, ingested.store, embedder)
    items = load_retrieval_set(ROOT / "examples/retrieval-set.yaml")
    scores = {mode: score(lambda q, m=mode: retriever.retrieve(q, top_k=10, mode=m), items) for mode in FLOORS}
    for mode, (hit_floor, mrr_floor) in FLOORS.items():
        assert scores[mode].hit_at_1 >= hit_floor and scores[mode].mrr >= mrr_floor, (mode, scores[mode])
    default = GatewaySpec().retrieval
    best = max(scores, key=lambda m: (scores[m].hit_at_1, scores[m].mrr))
    assert (scores[default].hit_at_1, scores[default].mrr) == (scores[best].hit_at_1, scores[best].mrr), scores


def test_the_twins_retrieval_mode_is_the_one_used(ingested, embedder):
    question = "What can you eat at the pub on Skerry?"
    for mode, search in [
        ("bm25", lambda k: ingested.store.keyword_search(question, k)),
        ("dense", lambda k: ingested.store.search(embedder.embed([question])[0], k)),
        ("hybrid", lambda k: ingested.store.fused_search([question], embedder.embed([question]), k)),
    ]:
        twin = ingested.twin.model_copy(deep=True)
        twin.spec.serving.gateway.retrieval = mode
        hits = Retriever(twin, ingested.store, embedder).retrieve(question)
        assert [h.id for h in hits] == [h.id for h in search(twin.spec.serving.gateway.top_k)], mode
    bm25 = ingested.store.keyword_search(question, 3)
    assert bm25[0].title == "The ferry timetable" and bm25[0].score > 0  # the rare word "Skerry" decides
