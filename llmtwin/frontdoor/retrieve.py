"""Retrieval over a twin's collection: the question embedded, the nearest chunks with sources and scores."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from prometheus_client import Histogram

from llmtwin.api.timestamps import unix_seconds
from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.corpus.embed import Embedder, embedder_for
from llmtwin.corpus.store import ChunkStore, Hit, literal, store_for
from llmtwin.frontdoor.selfquery import NamedSources, date_window, named_sources

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


def named_filter(named: NamedSources) -> str:
    """A Milvus filter: the chunks of any file (its key, or the key's last part) or title the question names."""
    terms = []
    for name in named.files:
        name = name.replace("%", "")
        terms += [f"key == {literal(name)}", f"key like {literal('%/' + name)}"]
    terms += [f"title like {literal('%' + title.replace('%', '') + '%')}" for title in named.titles]
    return " or ".join(terms)


def all_of(*filters: str) -> str:
    return " and ".join(f"({f})" for f in filters if f)


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
        self,
        question: str,
        top_k: int | None = None,
        filter: str = "",
        mode: str | None = None,
        paraphrases: Sequence[str] = (),
    ) -> tuple[list[Hit], list[float]]:
        """The hits (by `spec.serving.gateway.retrieval`, unless `mode` says otherwise; with the paraphrases'
        lists fused in), and the question's embedding (the drift monitor's input, whatever the mode)."""
        gateway = self.twin.spec.serving.gateway
        k, mode = top_k or gateway.top_k, mode or gateway.retrieval
        named = ""
        if gateway.self_query:
            if window := date_window(question, self.today()):
                filter = all_of(filter, source_filter(since=window[0], until=window[1]))
            if sources := named_sources(question):
                named = named_filter(sources)
        queries = [question, *paraphrases]
        with RETRIEVE_SECONDS.labels(mode).time():
            vectors = self.embedder.embed(queries)
            hits = self._search(queries, vectors, k, all_of(filter, named), mode)
            if named and not hits:  # a file or title this twin does not have: the question's words, not a filter
                hits = self._search(queries, vectors, k, filter, mode)
        return hits, vectors[0]

    def _search(self, queries: list[str], vectors: list[list[float]], k: int, filter: str, mode: str) -> list[Hit]:
        if len(queries) == 1 and mode == "bm25":
            return self.store.keyword_search(queries[0], k, filter)
        if len(queries) == 1 and mode == "dense":
            return self.store.search(vectors[0], k, filter)
        texts = queries if mode in ("bm25", "hybrid") else []
        return self.store.fused_search(texts, vectors if mode in ("dense", "hybrid") else [], k, filter)

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
