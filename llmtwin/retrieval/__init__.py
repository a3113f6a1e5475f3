"""RAG over a twin's collection: retrieve chunks with sources and scores, optionally generate.

Generation goes through `huggingface_hub.InferenceClient` against a TGI-compatible endpoint
(`spec.serving.gateway.generationEndpoint`), the same client code a cluster gateway uses with TGI.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Histogram

from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.corpus.embed import Embedder, embedder_for
from llmtwin.corpus.store import ChunkStore, Hit, literal, store_for

RETRIEVE_SECONDS = Histogram("llmtwin_retrieve_seconds", "Question embedding + vector search time")
GENERATE_SECONDS = Histogram("llmtwin_generate_seconds", "Generation time through the TGI API")


@dataclass
class Answer:
    question: str
    hits: list[Hit]
    prompt: str
    answer: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def wire(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.answer,
            "sources": [h.wire() for h in self.hits],
            "timings_ms": {k: round(v * 1000, 1) for k, v in self.timings.items()},
        }


def source_filter(bucket: str | None = None, key_prefix: str | None = None, since: int | None = None) -> str:
    terms = []
    if bucket:
        terms.append(f"bucket == {literal(bucket)}")
    if key_prefix:
        terms.append(f"key like {literal(key_prefix.replace('%', '') + '%')}")
    if since:
        terms.append(f"ingested_at >= {int(since)}")
    return " and ".join(terms)


class Retriever:
    def __init__(self, twin: LLMTwin, store: ChunkStore | None = None, embedder: Embedder | None = None):
        self.twin = twin
        self.store = store or store_for(twin)
        self.embedder = embedder or embedder_for(twin.spec.vector_store.embedding_model)

    def retrieve(self, question: str, top_k: int | None = None, filter: str = "") -> list[Hit]:
        with RETRIEVE_SECONDS.time():
            vector = self.embedder.embed([question])[0]
            return self.store.search(vector, top_k or self.twin.spec.serving.gateway.top_k, filter)

    def prompt(self, question: str, hits: list[Hit]) -> str:
        context = "\n\n".join(f"[{i + 1}] {h.title}: {h.text}" for i, h in enumerate(hits))
        return self.twin.spec.serving.gateway.prompt_template.format(
            author=self.twin.spec.author.name,
            style=self.twin.spec.author.style_notes,
            context=context,
            question=question,
        )

    def ask(self, question: str, top_k: int | None = None, filter: str = "", generate: bool = True) -> Answer:
        started = time.perf_counter()
        hits = self.retrieve(question, top_k, filter)
        answer = Answer(
            question, hits, self.prompt(question, hits), timings={"retrieve": time.perf_counter() - started}
        )
        endpoint = self.twin.spec.serving.gateway.generation_endpoint
        if generate and endpoint:
            from huggingface_hub import InferenceClient

            started = time.perf_counter()
            with GENERATE_SECONDS.time():
                answer.answer = InferenceClient(endpoint).text_generation(
                    answer.prompt, max_new_tokens=self.twin.spec.serving.max_new_tokens
                )
            answer.timings["generate"] = time.perf_counter() - started
        return answer
