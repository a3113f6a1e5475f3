"""Retrieval over a twin's collection: the question embedded, the nearest chunks with sources and scores."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from prometheus_client import Histogram

from llmtwin.api.timestamps import unix_seconds
from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.corpus.embed import Embedder, embedder_for
from llmtwin.corpus.store import ChunkStore, Hit, literal, store_for
from llmtwin.frontdoor.selfquery import date_window

RETRIEVE_SECONDS = Histogram(
    "llmtwin_retrieve_seconds", "Question embedding + search time, by retrieval mode", ["mode"]
)


def source_filter(
    bucket: str | None = None,
    key_prefix: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> str:
    """A Milvus filter: the chunks of one bucket, under a key prefix, of documents dated in [since, until)."""
    terms = []
    if bucket:
        terms.append(f"bucket == {literal(bucket)}")
    if key_prefix:
        terms.append(f"key like {literal(key_prefix.replace('%', '') + '%')}")
    if since:
        terms.append(f"published_at >= {unix_seconds(since)}")
    if until:
        terms.append(f"published_at < {unix_seconds(until)}")
    return " and ".join(terms)


class Retriever:
    def __init__(
        self,
        twin: LLMTwin,
        store: ChunkStore | None = None,
        embedder: Embedder | None = None,
        today: Callable[[], dt.date] = dt.date.today,
    ):
        self.twin = twin
        self.today = today  # what "in March" means: the latest March up to today
        self.store = store or store_for(twin)
        self.embedder = embedder or embedder_for(twin.spec.vector_store.embedding_model)

    def retrieve(self, question: str, top_k: int | None = None, filter: str = "", mode: str | None = None) -> list[Hit]:
        return self.retrieve_with_vector(question, top_k, filter, mode)[0]

    def retrieve_with_vector(
        self, question: str, top_k: int | None = None, filter: str = "", mode: str | None = None
    ) -> tuple[list[Hit], list[float]]:
        """The hits (by `spec.serving.gateway.retrieval`, unless `mode` says otherwise), and the question's
        embedding (the drift monitor's input, whatever the mode)."""
        gateway = self.twin.spec.serving.gateway
        k, mode = top_k or gateway.top_k, mode or gateway.retrieval
        if gateway.self_query and (window := date_window(question, self.today())):
            filter = " and ".join(f"({f})" for f in (filter, source_filter(since=window[0], until=window[1])) if f)
        with RETRIEVE_SECONDS.labels(mode).time():
            vector = self.embedder.embed([question])[0]
            if mode == "bm25":
                return self.store.keyword_search(question, k, filter), vector
            if mode == "dense":
                return self.store.search(vector, k, filter), vector
            return self.store.hybrid_search(question, vector, k, filter), vector

    def messages(self, question: str, hits: list[Hit]) -> list[dict[str, str]]:
        """The spec's system prompt and prompt template, filled with the author, their style notes, the
        retrieved passages and the question."""
        gateway = self.twin.spec.serving.gateway
        values = {
            "author": self.twin.spec.author.name,
            "style": self.twin.spec.author.style_notes,
            # Plain passages: numbered or titled ones were copied back verbatim by a small model.
            "context": "\n\n".join(h.text.strip() for h in hits),
            "question": question,
        }
        return [
            {"role": "system", "content": gateway.system_prompt.format(**values).strip()},
            {"role": "user", "content": gateway.prompt_template.format(**values)},
        ]
