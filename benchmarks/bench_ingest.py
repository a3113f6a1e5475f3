"""Ingestion and retrieval benchmark, all baselines measured in the same run.

1. Throughput on one generated corpus: our pipeline (parse, clean, chunk, embed, upsert into Milvus
   Lite) against (a) the raw embedding throughput of exactly the same chunks (the physical limit on
   CPU) and (b) the naive LlamaIndex `VectorStoreIndex.from_documents` approach BigBertha used, with
   the same embedding model.
2. Drop -> searchable latency in embedded mode (watchdog, queue, local runner, ingest step) for a
   10 KB file.
3. Retrieval latency at 10k and 100k chunks (clustered synthetic vectors and texts of corpus words),
   dense / BM25 / hybrid, right after a bulk load and at steady state, with dense recall@10 against exact
   search; the question embedding on top.
4. Retrieval quality: hit@1 and MRR per mode on the labelled set over the demo corpus, and with query
   expansion by SmolLM2-135M-Instruct (`llmtwin serve`, started here).

Usage: .venv/bin/python benchmarks/bench_ingest.py [--docs 120] [--sizes 10000,100000] [--smoke]

--smoke: the same code paths at the smallest size that still fills every row (a few documents, three
dropped files, one collection of a few thousand chunks, few queries), to prove in seconds that the
benchmark still runs. Its figures mean nothing; it exits non-zero if any step fails or times out.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # this process's own Hugging Face hub access: the cached model
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from report import Worker, exit_on_sigterm, print_table  # noqa: E402

from llmtwin.api.v1alpha1 import LLMTwin  # noqa: E402
from llmtwin.config import EmbeddedSettings  # noqa: E402
from llmtwin.corpus.embed import embedder_for  # noqa: E402
from llmtwin.corpus.evaluation import load_retrieval_set, score  # noqa: E402
from llmtwin.corpus.store import ChunkStore, chunk_row, object_filter, store_for  # noqa: E402
from llmtwin.frontdoor.expand import QueryExpander  # noqa: E402
from llmtwin.frontdoor.retrieve import Retriever  # noqa: E402
from llmtwin.serving.client import model_server_client  # noqa: E402
from llmtwin.sources.changes import ObjectChange  # noqa: E402
from llmtwin.sources.objects import FolderStore  # noqa: E402
from llmtwin.workflows.ingest.pipeline import IngestPipeline  # noqa: E402
from tests.harness.process import SMOLLM2, smollm2_serve  # noqa: E402
from tests.twins import twin_doc  # noqa: E402

CORPUS = ROOT / "examples" / "corpus"
SEARCHABLE_TIMEOUT = 60  # seconds a dropped file may take to become searchable before the run fails
# --smoke: every row, smallest sizes.
SMOKE = {"docs": 6, "sizes": [3000], "drops": 3, "queries": 10}


def twin_for(uri: Path) -> LLMTwin:
    doc = twin_doc()
    doc["spec"]["vectorStore"]["uri"] = str(uri)
    return LLMTwin.model_validate(doc)


def sentences() -> list[str]:
    text = " ".join(p.read_text() for p in CORPUS.glob("*.md")) + " " + (CORPUS / "sourdough.txt").read_text()
    return [s.strip() + "." for s in text.replace("\n", " ").split(".") if len(s.strip()) > 20]


def make_corpus(inbox: Path, docs: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    pool = sentences()
    (inbox / "essays").mkdir(parents=True, exist_ok=True)
    for i in range(docs):
        body = " ".join(rng.choice(pool) for _ in range(rng.randint(20, 60)))
        (inbox / "essays" / f"essay-{i:04d}.md").write_text(f"# Essay {i}\n\n{body}\n")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def throughput(docs: int, work: Path, rounds: int = 3) -> list[tuple[str, str, str]]:
    """Our pipeline and the raw embedding of the same chunks, alternating for `rounds` (each round into a
    fresh collection); the medians, so one slow stretch of a shared machine does not decide the ratio."""
    inbox = work / "inbox"
    make_corpus(inbox, docs)
    twin = twin_for(work / "ours.db")
    embedder = embedder_for(twin.spec.vector_store.embedding_model)
    embedder.embed(["warm up"])
    keys = sorted(p.name for p in (inbox / "essays").iterdir())
    changes = [ObjectChange("essays", key) for key in keys]
    size = twin.spec.ingest.batch_size  # as the gateway batches them into Workflows
    ours, raw = [], []
    for round_ in range(rounds):
        store = ChunkStore(str(work / "ours.db"), f"{twin.collection}_{round_}", 384)
        pipeline = IngestPipeline(twin, lambda source: FolderStore(inbox), store, embedder)
        # As the embedder is warmed: NLTK loads once per process, at the first text longer than a chunk.
        pipeline.splitter.split_text((inbox / "essays" / keys[0]).read_text())
        started = time.perf_counter()
        for first in range(0, len(changes), size):
            for outcome in pipeline.ingest(changes[first : first + size]):
                if outcome.outcome != "ingested":
                    raise RuntimeError(f"essays/{outcome.key} not ingested: {outcome}")
        ours.append(time.perf_counter() - started)
        _, chunks = store.counts()

        texts = [pipeline.splitter.split_text((inbox / "essays" / k).read_text()) for k in keys]
        flat = [t for doc in texts for t in doc]
        started = time.perf_counter()
        embedder.embed(flat, twin.spec.vector_store.embed_batch_size)
        raw.append(time.perf_counter() - started)
    ours_s, raw_s = float(np.median(ours)), float(np.median(raw))
    naive_s, naive_chunks = naive_llamaindex(inbox, embedder)
    return [
        ("corpus", f"{docs} docs", f"{sum(len(t) for t in flat) / 1024:.0f} KiB of text"),
        ("raw embedding of the same chunks (limit)", f"{len(flat) / raw_s:.1f} chunks/s", f"{len(flat)} chunks"),
        (
            "our pipeline, end to end",
            f"{chunks / ours_s:.1f} chunks/s",
            f"{chunks} chunks in {ours_s:.1f} s, batches of {size} files",
        ),
        (
            "ours / raw embedding",
            f"{(chunks / ours_s) / (len(flat) / raw_s):.2f}",
            f"target >= 0.9; medians of {rounds} alternating rounds",
        ),
        (
            "naive VectorStoreIndex.from_documents",
            f"{naive_chunks / naive_s:.1f} chunks/s",
            f"{naive_chunks} chunks in {naive_s:.1f} s (in-memory store, default splitter)",
        ),
        ("ours / naive (chunks/s)", f"{(chunks / ours_s) / (naive_chunks / naive_s):.2f}", ""),
        ("our pipeline, documents/s", f"{docs / ours_s:.2f} docs/s", "256-token chunks, Milvus Lite"),
        ("naive, documents/s", f"{docs / naive_s:.2f} docs/s", "1024-token chunks (default), no database"),
    ]


def naive_llamaindex(inbox: Path, embedder) -> tuple[float, int]:
    from llama_index.core import Settings as LlamaSettings
    from llama_index.core import SimpleDirectoryReader, VectorStoreIndex
    from llama_index.core.embeddings import BaseEmbedding

    class SameModel(BaseEmbedding):
        def _get_text_embedding(self, text: str) -> list[float]:
            return embedder.embed([text])[0]

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return embedder.embed(texts)

        def _get_query_embedding(self, query: str) -> list[float]:
            return embedder.embed([query])[0]

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

    LlamaSettings.embed_model = SameModel()
    started = time.perf_counter()
    documents = SimpleDirectoryReader(str(inbox / "essays")).load_data()
    index = VectorStoreIndex.from_documents(documents)
    seconds = time.perf_counter() - started
    return seconds, len(index.docstore.docs)


def drop_latency(work: Path, runs: int = 12) -> list[tuple[str, str, str]]:
    from llmtwin.embedded.twin import EmbeddedTwin

    twin = twin_for(work / "embedded.db")
    embedded = EmbeddedTwin(twin, work / "embedded", EmbeddedSettings())
    failures: list[dict] = []  # a file that failed or was dead-lettered is never searchable: stop at once

    def on_result(result: dict) -> None:
        if result.get("outcome") not in ("ingested", "unchanged"):
            failures.append(result)

    embedded.on_result = on_result
    embedder = embedder_for(twin.spec.vector_store.embedding_model)
    stop = threading.Event()
    observer = embedded.watch()
    worker = Worker(embedded.drain, stop, name="embedded drain")
    worker.start()
    pool = sentences()
    rng = random.Random(3)
    latencies = []
    store = store_for(twin)
    try:
        for i in range(runs):
            marker = f"zebra-lantern-{i}"
            body = f"# Note {i}\n\nThe {marker} glows. " + " ".join(rng.choice(pool) for _ in range(60))
            body = body[:10_240]
            question = embedder.embed([f"What glows? {marker}"])[0]
            started = time.perf_counter()
            (embedded.inbox / "essays" / f"note-{i}.md").write_text(body)
            while True:
                # Searchable = the question finds this file's chunks (filtered: earlier notes look alike).
                if store.search(question, 1, object_filter("essays", f"note-{i}.md")):
                    break
                worker.check()
                if failures:
                    raise RuntimeError(f"embedded ingest failed: {failures}")
                if time.perf_counter() - started > SEARCHABLE_TIMEOUT:
                    raise SystemExit(f"note-{i}.md not searchable after {SEARCHABLE_TIMEOUT} s")
                time.sleep(0.02)
            latencies.append(time.perf_counter() - started)
    finally:
        stop.set()
        observer.stop()
        observer.join()
        worker.join(timeout=30)
    worker.check()
    return [
        ("drop -> searchable, 10 KB file, p50", f"{pct(latencies, 50):.2f} s", f"{runs} files"),
        (
            "drop -> searchable, 10 KB file, p95",
            f"{pct(latencies, 95):.2f} s",
            f"target < 2 s (includes the {0.3:.1f} s burst-coalescing window)",
        ),
    ]


def clustered_unit_vectors(rng: np.random.Generator, centers: np.ndarray, n: int) -> np.ndarray:
    """Vectors around topic centres (real embeddings cluster; isotropic noise would be an unfair worst case)."""
    vectors = centers[rng.integers(0, len(centers), n)] + 0.7 * rng.normal(size=(n, centers.shape[1]))
    vectors = vectors.astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def retrieval_latency(work: Path, sizes: list[int], queries: int = 100) -> list[tuple[str, str, str]]:
    """Dense (the default), BM25 and hybrid search at each size, right after a bulk load (inserted, flushed)
    and at steady state (then 500 more chunks upserted one document at a time, unflushed, as ingests leave
    them); recall@10 of dense search against exact search (NumPy over every stored vector)."""
    twin = twin_for(work / "retrieval.db")
    embedder = embedder_for(twin.spec.vector_store.embedding_model)
    words = " ".join(sentences()).replace(".", "").split()
    rng = np.random.default_rng(11)
    centers = rng.normal(size=(256, 384))
    store = ChunkStore(str(work / "retrieval.db"), "bench", 384)
    stored = np.zeros((0, 384), dtype=np.float32)

    def insert(vectors: np.ndarray, document: str) -> None:
        nonlocal stored
        first = len(stored)
        rows = [
            chunk_row("b", document, first + j, " ".join(rng.choice(words, 40))) | {"vector": vectors[j].tolist()}
            for j in range(len(vectors))
        ]
        store.client.insert("bench", rows)
        stored = np.vstack([stored, vectors])

    def measure(size: int, state: str) -> list[tuple[str, str, str]]:
        questions = clustered_unit_vectors(rng, centers, queries)
        texts = [" ".join(rng.choice(words, 6)) for _ in range(queries)]
        dense, keyword, hybrid, recall = [], [], [], []
        for vector, text in zip(questions, texts, strict=True):
            started = time.perf_counter()
            found = store.search(vector.tolist(), 10)
            dense.append(time.perf_counter() - started)
            exact = set(np.argsort(-(stored @ vector))[:10].tolist())
            recall.append(len(exact & {h.chunk_index for h in found}) / 10)
            started = time.perf_counter()
            store.keyword_search(text, 10)
            keyword.append(time.perf_counter() - started)
            started = time.perf_counter()
            store.fused_search([text], [vector.tolist()], 10)
            hybrid.append(time.perf_counter() - started)
        label = f"at {size // 1000}k chunks, {state}"
        return [
            (
                f"dense search {label}, p50/p95",
                f"{pct(dense, 50) * 1000:.1f}/{pct(dense, 95) * 1000:.1f} ms",
                f"top-10, AUTOINDEX; target p95 < 50 ms; recall@10 vs exact {np.mean(recall):.3f} (target >= 0.95)",
            ),
            (f"BM25 search {label}, p50/p95", f"{pct(keyword, 50) * 1000:.1f}/{pct(keyword, 95) * 1000:.1f} ms", ""),
            (f"hybrid search {label}, p50/p95", f"{pct(hybrid, 50) * 1000:.1f}/{pct(hybrid, 95) * 1000:.1f} ms", "RRF"),
        ]

    rows = []
    for size in sizes:
        # chunk_index is the row's position in `stored`: the exact top-10 is compared by it.
        while len(stored) < size:
            insert(clustered_unit_vectors(rng, centers, min(5000, size - len(stored))), "bulk")
        store.flush()  # a bulk load is sealed once, as `llmtwin up` does after each burst
        rows += measure(size, "after bulk load")
        for document in range(100):
            insert(clustered_unit_vectors(rng, centers, 5), f"steady-{size}-{document}")
        rows += measure(size, "steady state")
    question = "What does Mara say about the gulls?"
    totals = []
    for _ in range(queries):
        started = time.perf_counter()
        store.search(embedder.embed([question])[0], 4)
        totals.append(time.perf_counter() - started)
    rows.append(
        (
            f"question embedding + dense search at {len(stored) // 1000}k chunks, p50/p95",
            f"{pct(totals, 50) * 1000:.1f}/{pct(totals, 95) * 1000:.1f} ms",
            "what a question costs before generation",
        )
    )
    return rows


def retrieval_quality(work: Path) -> list[tuple[str, str, str]]:
    """hit@1 and MRR per retrieval mode on the labelled set over the demo corpus."""
    twin = twin_for(work / "quality.db")
    (work / "quality" / "essays").mkdir(parents=True)
    for path in CORPUS.iterdir():
        (work / "quality" / "essays" / path.name).write_bytes(path.read_bytes())
    embedder = embedder_for(twin.spec.vector_store.embedding_model)
    store = ChunkStore(str(work / "quality.db"), twin.collection, 384)
    pipeline = IngestPipeline(twin, lambda source: FolderStore(work / "quality"), store, embedder)
    for path in CORPUS.iterdir():
        pipeline.put("essays", path.name)
    retriever = Retriever(twin, store, embedder)
    items = load_retrieval_set(ROOT / "examples" / "retrieval-set.yaml")
    rows = []
    for mode in ("dense", "bm25", "hybrid"):
        result = score(lambda q, m=mode: retriever.retrieve(q, top_k=10, mode=m), items)
        default = " (the default)" if mode == twin.spec.serving.gateway.retrieval else ""
        rows.append((f"retrieval quality, {mode}{default}", result.row(), f"{len(items)} labelled paraphrases"))
    # Query expansion: SmolLM2-135M-Instruct (`llmtwin serve`) writes 2 paraphrases of each question.
    server = smollm2_serve(work)
    try:
        expand = QueryExpander(model_server_client(server.url), 2)
        paraphrases = {item.question: expand(item.question, SMOLLM2) for item in items}
    finally:
        server.kill(signal.SIGTERM)
    for mode in ("dense", "hybrid"):
        result = score(
            lambda q, m=mode: retriever.retrieve_with_vector(q, top_k=10, mode=m, paraphrases=paraphrases[q])[0], items
        )
        written = sum(map(len, paraphrases.values()))
        rows.append((f"retrieval quality, {mode} + query expansion", result.row(), f"{written} paraphrases by SmolLM2"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=120)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--smoke", action="store_true", help="smallest sizes: proves the benchmark runs")
    args = parser.parse_args()
    exit_on_sigterm()
    if args.smoke:
        docs, sizes, drops, queries = SMOKE["docs"], SMOKE["sizes"], SMOKE["drops"], SMOKE["queries"]
    else:
        docs, sizes, drops, queries = args.docs, [int(s) for s in args.sizes.split(",")], 12, 100
    with tempfile.TemporaryDirectory(prefix="llmtwin-bench-") as tmp:
        work = Path(tmp)
        rows = throughput(docs, work, rounds=1 if args.smoke else 3)
        rows += drop_latency(work, drops)
        rows += retrieval_latency(work, sizes, queries)
        rows += retrieval_quality(work)
    print_table(rows)


if __name__ == "__main__":
    main()
