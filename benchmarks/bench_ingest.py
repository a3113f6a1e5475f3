"""Ingestion and retrieval benchmark, all baselines measured in the same run.

1. Throughput on one generated corpus: our pipeline (parse, clean, chunk, embed, upsert into Milvus
   Lite) against (a) the raw embedding throughput of exactly the same chunks (the physical limit on
   CPU) and (b) the naive LlamaIndex `VectorStoreIndex.from_documents` approach BigBertha used, with
   the same embedding model.
2. Drop -> searchable latency in embedded mode (watchdog, queue, local runner, ingest step) for a
   10 KB file.
3. Retrieval latency (question embedding + HNSW search) at 10k and 100k chunks (synthetic vectors
   for the bulk, real ones for the questions).

Usage: .venv/bin/python benchmarks/bench_ingest.py [--docs 120] [--sizes 10000,100000] [--smoke]

--smoke: the same code paths at the smallest size that still fills every row (a few documents, three
dropped files, one collection of a few thousand chunks, few queries), to prove in seconds that the
benchmark still runs. Its figures mean nothing; it exits non-zero if any step fails or times out.
"""

from __future__ import annotations

import argparse
import os
import random
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
from llmtwin.corpus.store import ChunkStore, chunk_row, object_filter, store_for  # noqa: E402
from llmtwin.sources.objects import FolderStore  # noqa: E402
from llmtwin.workflows.ingest.pipeline import IngestPipeline  # noqa: E402
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


def throughput(docs: int, work: Path) -> list[tuple[str, str, str]]:
    inbox = work / "inbox"
    make_corpus(inbox, docs)
    twin = twin_for(work / "ours.db")
    embedder = embedder_for(twin.spec.vector_store.embedding_model)
    embedder.embed(["warm up"])
    store = ChunkStore(str(work / "ours.db"), twin.collection, 384)
    pipeline = IngestPipeline(twin, lambda source: FolderStore(inbox), store, embedder)
    keys = sorted(p.name for p in (inbox / "essays").iterdir())

    started = time.perf_counter()
    for key in keys:
        outcome = pipeline.put("essays", key)
        if outcome.outcome != "ingested":
            raise RuntimeError(f"essays/{key} not ingested: {outcome}")
    ours_s = time.perf_counter() - started
    _, chunks = store.counts()

    texts = [pipeline.splitter.split_text((inbox / "essays" / k).read_text()) for k in keys]
    flat = [t for doc in texts for t in doc]
    started = time.perf_counter()
    embedder.embed(flat, twin.spec.vector_store.embed_batch_size)
    raw_s = time.perf_counter() - started

    naive_s, naive_chunks = naive_llamaindex(inbox, embedder)
    return [
        ("corpus", f"{docs} docs", f"{sum(len(t) for t in flat) / 1024:.0f} KiB of text"),
        ("raw embedding of the same chunks (limit)", f"{len(flat) / raw_s:.1f} chunks/s", f"{len(flat)} chunks"),
        ("our pipeline, end to end", f"{chunks / ours_s:.1f} chunks/s", f"{chunks} chunks in {ours_s:.1f} s"),
        ("ours / raw embedding", f"{(chunks / ours_s) / (len(flat) / raw_s):.2f}", "target >= 0.8"),
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


def retrieval_latency(work: Path, sizes: list[int], queries: int = 100) -> list[tuple[str, str, str]]:
    twin = twin_for(work / "retrieval.db")
    embedder = embedder_for(twin.spec.vector_store.embedding_model)
    questions = [f"What does Mara say about {w}?" for w in ("gulls", "bread", "fog", "the ferry", "tides")]
    rows = []
    rng = np.random.default_rng(11)
    store = ChunkStore(str(work / "retrieval.db"), "bench", 384)
    inserted = 0
    for size in sizes:
        while inserted < size:
            n = min(5000, size - inserted)
            vectors = rng.normal(size=(n, 384)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            store.client.insert(
                "bench",
                [
                    chunk_row(
                        "b", f"doc-{(inserted + j) // 20}", (inserted + j) % 20, f"synthetic chunk {inserted + j}"
                    )
                    | {"vector": vectors[j].tolist()}
                    for j in range(n)
                ],
            )
            inserted += n
        store.flush()  # a bulk load is sealed once, as `llmtwin up` does after each burst
        search, total = [], []
        for i in range(queries):
            started = time.perf_counter()
            vector = embedder.embed([questions[i % len(questions)]])[0]
            embedded_at = time.perf_counter()
            store.search(vector, 4)
            done = time.perf_counter()
            search.append(done - embedded_at)
            total.append(done - started)
        rows.append(
            (
                f"retrieval at {size // 1000}k chunks, search p50/p95",
                f"{pct(search, 50) * 1000:.1f}/{pct(search, 95) * 1000:.1f} ms",
                "HNSW, top-4; target p95 < 50 ms",
            )
        )
        rows.append(
            (
                f"retrieval at {size // 1000}k chunks, with question embedding p50/p95",
                f"{pct(total, 50) * 1000:.1f}/{pct(total, 95) * 1000:.1f} ms",
                "",
            )
        )
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
        rows = throughput(docs, work)
        rows += drop_latency(work, drops)
        rows += retrieval_latency(work, sizes, queries)
    print_table(rows)


if __name__ == "__main__":
    main()
