"""Object changes → the twin's chunks in Milvus: fetch, parse, clean, chunk, embed, upsert/delete.

Idempotent: chunk ids are `sha1(bucket/key#document#index:sha1(text))`, so re-ingesting the same content
writes the same rows; an object whose stored etag matches is skipped before it is even read; an
overwrite upserts the new chunks (embedding only those not stored already) and deletes the ones that no
longer exist, so an export with an edited post changes that post's chunks and a removed post's go; a
delete removes them all.
A document that cannot be ingested is recorded with its reason and never stops the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from llama_index.core.node_parser import SentenceSplitter
from prometheus_client import Counter, Histogram

from llmtwin.api.v1alpha1 import LLMTwin, SourceSpec, file_type_of
from llmtwin.corpus.embed import Embedder
from llmtwin.corpus.store import ChunkStore, chunk_row
from llmtwin.sources.changes import ObjectChange
from llmtwin.sources.objects import ObjectMissing, ObjectStore, ObjectTooLarge, UnsafeKey
from llmtwin.workflows.ingest.clean import clean
from llmtwin.workflows.ingest.parse import DocumentRejected, parse

STAGE_SECONDS = Histogram("llmtwin_ingest_stage_seconds", "Time per ingest stage", ["stage"])
OBJECTS = Counter("llmtwin_ingest_objects_total", "Objects processed by outcome", ["outcome", "reason"])
CHUNKS = Counter("llmtwin_ingest_chunks_total", "Chunks written to the vector store")


@dataclass(frozen=True)
class Outcome:
    bucket: str
    key: str
    outcome: str  # ingested | unchanged | deleted | rejected | missing
    reason: str = ""
    chunks: int = 0
    documents: int = 0  # an export's posts with text; 1 for a file
    embedded: int = 0  # chunks whose text was new or edited (the others kept their stored vectors)

    def wire(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if v not in ("", None)}


@dataclass
class _Prepared:
    """An object read and chunked, waiting for the embeddings of its `new_rows`."""

    bucket: str
    key: str
    rows: list[dict[str, Any]]
    new_rows: list[dict[str, Any]]  # the rows whose vector is still to be computed
    previous: set[str]  # the ids stored for the object before
    documents: int


def source_for(twin: LLMTwin, bucket: str, key: str) -> SourceSpec | None:
    return next((s for s in twin.spec.sources if s.matches(bucket, key)), None)


class IngestPipeline:
    """`objects` opens the object store of a source (each source with its own endpoint and Secret)."""

    def __init__(
        self, twin: LLMTwin, objects: Callable[[SourceSpec], ObjectStore], store: ChunkStore, embedder: Embedder
    ):
        vs = twin.spec.vector_store
        self.twin = twin
        self.objects = objects
        self.store = store
        self.embedder = embedder
        self.splitter = SentenceSplitter(
            chunk_size=vs.chunk_size, chunk_overlap=vs.chunk_overlap, tokenizer=embedder.count_tokens
        )

    def delete(self, bucket: str, key: str) -> Outcome:
        with STAGE_SECONDS.labels("delete").time():
            removed = self.store.delete_object(bucket, key)
        OBJECTS.labels("deleted", "").inc()
        return Outcome(bucket, key, "deleted", chunks=removed)

    def put(self, bucket: str, key: str) -> Outcome:
        return self.ingest([ObjectChange(bucket, key)])[0]

    def ingest(self, changes: list[ObjectChange]) -> list[Outcome]:
        """Each change's outcome, in order. Every object is fetched, parsed and chunked first; then the new
        chunks of all of them are embedded together (full embedding batches across small files); then each
        object's rows replace its previous ones."""
        outcomes: list[Outcome | None] = []
        prepared: list[tuple[int, _Prepared]] = []
        for change in changes:
            if change.event_type == "delete":
                routed = source_for(self.twin, change.bucket, change.key) is not None
                outcomes.append(
                    self.delete(change.bucket, change.key) if routed else self._unrouted(change.bucket, change.key)
                )
                continue
            result = self._prepare(change.bucket, change.key)
            if isinstance(result, Outcome):
                outcomes.append(result)
            else:
                prepared.append((len(outcomes), result))
                outcomes.append(None)
        new = [row for _, ready in prepared for row in ready.new_rows]
        with STAGE_SECONDS.labels("embed").time():
            vectors = self.embedder.embed([r["text"] for r in new], self.twin.spec.vector_store.embed_batch_size)
        for row, vector in zip(new, vectors, strict=True):
            row["vector"] = vector
        with STAGE_SECONDS.labels("upsert").time():
            self.store.replace_objects([(ready.rows, ready.previous) for _, ready in prepared])
        for index, ready in prepared:
            CHUNKS.inc(len(ready.rows))
            OBJECTS.labels("ingested", "").inc()
            outcomes[index] = Outcome(
                ready.bucket,
                ready.key,
                "ingested",
                chunks=len(ready.rows),
                documents=ready.documents,
                embedded=len(ready.new_rows),
            )
        return [o for o in outcomes if o is not None]

    def _prepare(self, bucket: str, key: str) -> Outcome | _Prepared:
        """The object's rows, those already stored carrying their vectors; or why there is nothing to write."""
        source = source_for(self.twin, bucket, key)
        if source is None:
            return self._unrouted(bucket, key)
        if file_type_of(key) not in source.file_types:
            return self._rejected(bucket, key, "unsupported", f"file type not in {list(source.file_types)}")
        try:
            with STAGE_SECONDS.labels("fetch").time():
                objects = self.objects(source)
                info = objects.stat(bucket, key)
                if info.size > source.max_object_bytes:
                    raise ObjectTooLarge(f"{info.size} bytes > maxObjectBytes {source.max_object_bytes}")
                stored = self.store.object_chunks(bucket, key)
                previous = {r["id"] for r in stored}
                if stored and all(r["etag"] == info.etag for r in stored):
                    OBJECTS.labels("unchanged", "").inc()
                    return Outcome(bucket, key, "unchanged", chunks=len(stored))
                data = objects.read(bucket, key, source.max_object_bytes)
            with STAGE_SECONDS.labels("parse").time():
                documents = parse(key, data, list(source.file_types))
            with STAGE_SECONDS.labels("clean").time():
                scrub = self.twin.spec.vector_store.pii_scrub
                cleaned = [(doc, text) for doc in documents if (text := clean(doc.text, scrub_pii=scrub))]
            if not cleaned:
                raise DocumentRejected("empty", "nothing left after cleaning")
        except ObjectMissing:
            # Deleted between the event and now: the removal event will follow (or already ran).
            OBJECTS.labels("missing", "").inc()
            return Outcome(bucket, key, "missing", "object no longer exists")
        except ObjectTooLarge as exc:
            return self._rejected(bucket, key, "too-large", str(exc))
        except UnsafeKey as exc:
            return self._rejected(bucket, key, "unsafe-key", str(exc))
        except DocumentRejected as exc:
            return self._rejected(bucket, key, exc.reason, exc.detail)
        now = int(time.time())
        rows = []
        with STAGE_SECONDS.labels("chunk").time():
            for doc, text in cleaned:
                rows += [
                    chunk_row(
                        bucket,
                        key,
                        i,
                        piece,
                        document_id=doc.document_id,
                        title=doc.title,
                        etag=info.etag,
                        published_at=doc.published_at or info.modified,
                        meta={**doc.meta, "type": doc.file_type},
                        ingested_at=now,
                    )
                    for i, piece in enumerate(self.splitter.split_text(text))
                ]
        # A chunk already stored (same document, place and text: same id) keeps its vector; only new or
        # edited text is embedded, so an export with one edited post embeds that post alone.
        known = self.store.vectors([r["id"] for r in rows if r["id"] in previous])
        for row in rows:
            if row["id"] in known:
                row["vector"] = known[row["id"]]
        new_rows = [r for r in rows if "vector" not in r]
        return _Prepared(bucket, key, rows, new_rows, previous, len(cleaned))

    def _unrouted(self, bucket: str, key: str) -> Outcome:
        return self._rejected(bucket, key, "unrouted", "no source of this twin matches the key")

    def _rejected(self, bucket: str, key: str, reason: str, detail: str) -> Outcome:
        OBJECTS.labels("rejected", reason).inc()
        return Outcome(bucket, key, "rejected", f"{reason}: {detail}")
