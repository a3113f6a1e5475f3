"""The twin's chunks in Milvus (Milvus Lite for a file path URI, a Milvus server for http(s))."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tempfile
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymilvus import AnnSearchRequest, DataType, Function, FunctionType, MilvusClient, RRFRanker

from llmtwin.api.conditions import Reason
from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.secrets import SecretError, Secrets

# milvus-lite 2.5 imports pkg_resources (setuptools < 81 is pinned for it): its deprecation notice is ours to
# act on, not every user's to read.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

OUTPUT_FIELDS = ["id", "text", "bucket", "key", "document_id", "chunk_index", "title", "published_at", "meta"]
# Fields this version writes; a collection created without them (an older llmtwin) is refused with the fix.
REQUIRED_FIELDS = {"document_id", "published_at", "meta", "sparse"}
TEXT_ANALYZER = {"type": "english"}  # stems and drops stop words: "gulls" finds "gull"
SCAN_BATCH = 1000
UPSERT_ROWS = 1000  # rows per upsert request: a batch of large files stays far below gRPC's message limits
INDEX_PARAMS = {"HNSW": {"M": 16, "efConstruction": 200}, "IVF_FLAT": {"nlist": 128}}
SEARCH_PARAMS = {"HNSW": {"ef": 64}, "IVF_FLAT": {"nprobe": 16}}


@dataclass(frozen=True)
class MilvusAccess:
    """Where a Milvus is and how to get in (the values, read from the twin's Secrets by `milvus_access`)."""

    uri: str
    token: str = field(default="", repr=False)  # `user:password` or an API key; empty: no authentication
    tls: bool = False  # TLS even where the uri does not say https:// (the platform's uri with the twin's tls)
    ca_pem: str = field(default="", repr=False)  # the CA bundle to trust; empty: the system's roots
    server_name: str = ""  # the name the server's certificate must carry, if not the uri's host


def milvus_access(twin: LLMTwin, secrets: Secrets | None = None) -> MilvusAccess:
    """The twin's Milvus with its token and TLS options; `secrets` reads the Secrets the spec names (the
    mounted files in a pod, the API in the operator and the gateway)."""
    vs = twin.spec.vector_store
    refs = [ref for ref in (vs.token_secret_ref, vs.tls and vs.tls.ca_secret_ref) if ref]
    if refs and secrets is None:
        raise SecretError(Reason.SECRET_MISSING, f"Secret {refs[0].name}: this process has no Secrets to read")
    return MilvusAccess(
        uri=vs.uri,
        token=secrets.value(vs.token_secret_ref.name, vs.token_secret_ref.key) if vs.token_secret_ref else "",
        tls=vs.tls is not None,
        ca_pem=secrets.value(vs.tls.ca_secret_ref.name, vs.tls.ca_secret_ref.key)
        if vs.tls and vs.tls.ca_secret_ref
        else "",
        server_name=(vs.tls and vs.tls.server_name) or "",
    )


def _pem_file(pem: str) -> Path:
    """A CA bundle as a file (gRPC reads it by path, again on every reconnect): one per content, kept."""
    path = Path(tempfile.gettempdir()) / f"llmtwin-milvus-ca-{hashlib.sha256(pem.encode()).hexdigest()[:16]}.pem"
    if not path.exists():
        partial = path.with_suffix(f".{os.getpid()}.partial")
        partial.write_text(pem.strip() + "\n")
        partial.replace(path)
    return path


def milvus_client(access: MilvusAccess | str) -> MilvusClient:
    """A client for a Milvus server (http/https) or a Milvus Lite file.

    No keepalive pings on an idle connection: a server on gRPC's default policy (Milvus Lite's) answers
    pymilvus' 10 s pings with GOAWAY "too_many_pings" and the next call of a long-lived client fails. A
    connection that died while idle is dialled again by the next call.

    Its own connection (`dedicated`): pymilvus shares one per address and token whatever the TLS options, so
    a client could otherwise talk over another's channel (another CA, another server name, or none)."""
    access = MilvusAccess(access) if isinstance(access, str) else access
    options: dict[str, Any] = {"token": access.token}
    if access.tls or access.uri.startswith("https://"):
        options["secure"] = True
    if access.ca_pem:
        options["server_pem_path"] = str(_pem_file(access.ca_pem))
    if access.server_name:
        options["server_name"] = access.server_name
    grpc_options = {"grpc.keepalive_permit_without_calls": False}
    return MilvusClient(access.uri, grpc_options=grpc_options, dedicated=True, **options)


def literal(value: str) -> str:
    """A Milvus filter string literal (keys are untrusted: quotes and backslashes are escaped)."""
    return json.dumps(value, ensure_ascii=False)


def object_filter(bucket: str, key: str) -> str:
    return f"bucket == {literal(bucket)} and key == {literal(key)}"


def chunk_id(bucket: str, key: str, document_id: str, index: int, text: str) -> str:
    """The same chunk of the same document always has the same id: re-ingesting writes the same rows."""
    content = hashlib.sha1(text.encode()).hexdigest()
    return hashlib.sha1(f"{bucket}/{key}#{document_id}#{index}:{content}".encode()).hexdigest()


def chunk_row(
    bucket: str,
    key: str,
    index: int,
    text: str,
    *,
    document_id: str = "",
    title: str = "",
    etag: str = "",
    published_at: int = 0,
    meta: dict[str, Any] | None = None,
    ingested_at: int = 0,
    vector: list[float] | None = None,
) -> dict[str, Any]:
    """One chunk as the collection stores it (its vector may be set later)."""
    row = {
        "id": chunk_id(bucket, key, document_id, index, text),
        "text": text,
        "bucket": bucket,
        "key": key,
        "document_id": document_id,
        "etag": etag,
        "chunk_index": index,
        "title": title[:500],
        "published_at": published_at,
        "meta": meta or {},
        "ingested_at": ingested_at,
    }
    return row | ({"vector": vector} if vector is not None else {})


@dataclass(frozen=True)
class Hit:
    id: str
    text: str
    bucket: str
    key: str
    title: str
    chunk_index: int
    score: float
    document_id: str = ""
    published_at: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """Where the chunk came from: the object, and the post within it for an export."""
        return f"{self.bucket}/{self.key}" + (f"#{self.document_id}" if self.document_id else "")

    def wire(self) -> dict[str, Any]:
        published = dt.datetime.fromtimestamp(self.published_at, dt.UTC).isoformat() if self.published_at else None
        return {
            "id": self.id,
            "text": self.text,
            "source": self.source,
            "title": self.title,
            "chunk": self.chunk_index,
            "published": published,
            "meta": self.meta,
            "score": round(self.score, 4),
        }


def _hit(result: dict[str, Any]) -> Hit:
    entity = result["entity"]
    return Hit(
        id=entity["id"],
        text=entity["text"],
        bucket=entity["bucket"],
        key=entity["key"],
        title=entity["title"],
        chunk_index=entity["chunk_index"],
        score=float(result["distance"]),
        document_id=entity["document_id"],
        published_at=entity["published_at"],
        meta=entity["meta"] or {},
    )


class CollectionMissing(LookupError):
    pass


class CollectionOutdated(RuntimeError):
    """The collection lacks fields this version writes: it must be re-created and the corpus re-ingested."""


class CollectionTaken(PermissionError):
    """The collection was created for another twin: reading or writing it would mix two authors."""


# A collection records the twin it was created for in its description: the finalizer drops only its own.
OWNER_PREFIX = "llmtwin twin "


def owner_of(description: str) -> str | None:
    """The `namespace/name` a collection was created for; None for one llmtwin did not create (or an older one)."""
    return description[len(OWNER_PREFIX) :] if description.startswith(OWNER_PREFIX) else None


class ChunkStore:
    def __init__(
        self,
        access: MilvusAccess | str,
        collection: str,
        dimension: int,
        index_type: str = "AUTOINDEX",
        metric: str = "COSINE",
        create: bool = True,
        owner: str | None = None,
    ):
        """`owner`: the twin (`namespace/name`) using the collection; recorded when it is created, and a
        collection recorded for another twin is refused (CollectionTaken). `access`: a Milvus Lite file, a
        server's uri, or a `MilvusAccess` with a token and TLS options."""
        uri = access if isinstance(access, str) else access.uri
        if "://" not in uri:
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        self.client = milvus_client(access)
        self.collection = collection
        self.index_type = index_type
        self.metric = metric
        self._lock = threading.Lock()  # Milvus Lite is not safe for concurrent writers in one process
        if not self.client.has_collection(collection):
            if not create:
                self.client.close()
                raise CollectionMissing(collection)
            self._create(dimension, owner)
        self._check_fields(uri)
        self._check_owner(uri, owner)
        self.client.load_collection(collection)

    def _check_fields(self, uri: str) -> None:
        fields = {f["name"] for f in self.client.describe_collection(self.collection)["fields"]}
        missing = sorted(REQUIRED_FIELDS - fields)
        if missing:
            self.client.close()
            raise CollectionOutdated(
                f"collection {self.collection!r} at {uri} has no field(s) {missing}: it was created by an older "
                "llmtwin. Drop it (Milvus Lite: delete the file) or set spec.vectorStore.collection to a new name, "
                "and the corpus is ingested again."
            )

    def _check_owner(self, uri: str, owner: str | None) -> None:
        recorded = owner_of(self.client.describe_collection(self.collection).get("description", ""))
        if owner and recorded and recorded != owner:
            self.client.close()
            raise CollectionTaken(
                f"collection {self.collection!r} at {uri} belongs to LLMTwin {recorded}: set "
                "spec.vectorStore.collection to a name of this twin's own"
            )

    def _create(self, dimension: int, owner: str | None) -> None:
        description = f"{OWNER_PREFIX}{owner}" if owner else ""
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False, description=description)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dimension)
        # BM25 over the text, computed by Milvus on insert (the keyword half of hybrid search).
        schema.add_field(
            "text", DataType.VARCHAR, max_length=65535, enable_analyzer=True, analyzer_params=TEXT_ANALYZER
        )
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(
            Function(
                name="text_bm25",
                function_type=FunctionType.BM25,
                input_field_names=["text"],
                output_field_names=["sparse"],
            )
        )
        schema.add_field("bucket", DataType.VARCHAR, max_length=128)
        schema.add_field("key", DataType.VARCHAR, max_length=1024)
        schema.add_field("etag", DataType.VARCHAR, max_length=128)
        schema.add_field("document_id", DataType.VARCHAR, max_length=160)  # a post within an export; "" a file
        schema.add_field("chunk_index", DataType.INT64)
        schema.add_field("title", DataType.VARCHAR, max_length=512)
        schema.add_field("published_at", DataType.INT64)  # the document's date (since/until filters)
        schema.add_field("meta", DataType.JSON)  # encoding, front matter, a post's url and tags
        schema.add_field("ingested_at", DataType.INT64)
        index = self.client.prepare_index_params()
        index.add_index(
            "vector", index_type=self.index_type, metric_type=self.metric, params=INDEX_PARAMS.get(self.index_type, {})
        )
        index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        self.client.create_collection(self.collection, schema=schema, index_params=index)

    def object_chunks(self, bucket: str, key: str) -> list[dict[str, Any]]:
        with self._lock:
            return self.client.query(
                self.collection, filter=object_filter(bucket, key), output_fields=["id", "etag", "document_id"]
            )

    def vectors(self, ids: list[str]) -> dict[str, list[float]]:
        """The stored vectors of these chunks (an unchanged chunk is not embedded again)."""
        if not ids:
            return {}
        with self._lock:
            rows = self.client.get(self.collection, ids=ids, output_fields=["id", "vector"])
        return {r["id"]: [float(x) for x in r["vector"]] for r in rows}

    def replace_objects(self, objects: list[tuple[list[dict[str, Any]], set[str]]]) -> None:
        """For each object (its rows, the ids of its previous version's rows): upsert the new chunks, then
        drop those the previous versions had and the new ones do not. One upsert and one delete for a whole
        batch: a request per object cost a third of the pipeline's time beside embedding."""
        rows = [row for object_rows, _ in objects for row in object_rows]
        stale = sorted({i for object_rows, previous in objects for i in previous - {r["id"] for r in object_rows}})
        with self._lock:
            for first in range(0, len(rows), UPSERT_ROWS):
                self.client.upsert(self.collection, rows[first : first + UPSERT_ROWS])
            if stale:
                self.client.delete(self.collection, ids=stale)

    def delete_object(self, bucket: str, key: str) -> int:
        with self._lock:
            ids = [
                r["id"]
                for r in self.client.query(self.collection, filter=object_filter(bucket, key), output_fields=["id"])
            ]
            if ids:
                self.client.delete(self.collection, ids=ids)
            return len(ids)

    def objects(self) -> dict[tuple[str, str], str]:
        """(bucket, key) -> etag of every ingested object."""
        with self._lock:
            rows = self.client.query(
                self.collection, filter="chunk_index == 0", output_fields=["bucket", "key", "etag"]
            )
        return {(r["bucket"], r["key"]): r["etag"] for r in rows}

    def counts(self) -> tuple[int, int]:
        """(documents, chunks)."""
        with self._lock:
            chunks = self.client.query(self.collection, filter="", output_fields=["count(*)"])[0]["count(*)"]
            docs = self.client.query(self.collection, filter="chunk_index == 0", output_fields=["count(*)"])[0][
                "count(*)"
            ]
        return int(docs), int(chunks)

    def search(self, vector: list[float], top_k: int, filter: str = "") -> list[Hit]:
        """Dense: the chunks nearest to the question's embedding."""
        return self._search(vector, "vector", self._dense_params(), top_k, filter)

    def keyword_search(self, text: str, top_k: int, filter: str = "") -> list[Hit]:
        """BM25: the chunks that share the question's (stemmed) words, rarer words weighing more."""
        return self._search(text, "sparse", {"metric_type": "BM25"}, top_k, filter)

    def _search(
        self, query: list[float] | str, field: str, params: dict[str, Any], top_k: int, filter: str
    ) -> list[Hit]:
        with self._lock:
            results = self.client.search(
                self.collection,
                data=[query],
                anns_field=field,
                limit=top_k,
                filter=filter,
                output_fields=OUTPUT_FIELDS,
                search_params=params,
            )[0]
        return [_hit(r) for r in results]

    def fused_search(
        self,
        texts: list[str],
        vectors: list[list[float]],
        top_k: int,
        filter: str = "",
        candidates: int = 20,
        rrf_k: int = 60,
    ) -> list[Hit]:
        """BM25 candidates for each text and dense candidates for each vector, fused by reciprocal rank (score =
        sum of 1/(rrf_k + rank)): a chunk any list ranks high comes first, whatever the scores' scales. Hybrid
        retrieval is one text and its vector; query expansion adds the paraphrases' lists."""
        limit = max(candidates, top_k)
        dense = self._dense_params()
        requests = [
            AnnSearchRequest(data=[v], anns_field="vector", param=dense, limit=limit, expr=filter) for v in vectors
        ]
        requests += [
            AnnSearchRequest(data=[t], anns_field="sparse", param={"metric_type": "BM25"}, limit=limit, expr=filter)
            for t in texts
        ]
        with self._lock:
            results = self.client.hybrid_search(
                self.collection, requests, RRFRanker(rrf_k), limit=top_k, output_fields=OUTPUT_FIELDS
            )[0]
        return [_hit(r) for r in results]

    def _dense_params(self) -> dict[str, Any]:
        return {"metric_type": self.metric, "params": SEARCH_PARAMS.get(self.index_type, {})}

    def scan(self, fields: list[str], batch_size: int = SCAN_BATCH) -> Iterator[list[dict[str, Any]]]:
        """Every chunk of the collection, `fields` of each, in batches (a snapshot for the dataset step).

        Each batch is fetched under the store's lock, so a scan interleaves safely with the writes of
        an ingest running in the same process."""
        with self._lock:
            iterator = self.client.query_iterator(
                self.collection, batch_size=batch_size, filter="", output_fields=fields
            )
        try:
            while True:
                with self._lock:
                    batch = iterator.next()
                if not batch:
                    return
                yield batch
        finally:
            with self._lock:
                iterator.close()

    def sample_vectors(self, limit: int) -> list[list[float]]:
        """Up to `limit` chunk vectors spread over the whole collection (a reference sample)."""
        total = self.counts()[1]
        stride = max(1, -(-total // limit))  # ceil: every stride-th chunk
        vectors: list[list[float]] = []
        seen = 0
        for batch in self.scan(["vector"]):
            for row in batch:
                if seen % stride == 0 and len(vectors) < limit:
                    vectors.append(row["vector"])
                seen += 1
        return vectors

    def flush(self) -> None:
        """Seal what was written (after a burst of ingests), so searches read indexed segments."""
        with self._lock:
            self.client.flush(self.collection)

    def drop(self) -> None:
        with self._lock:
            if self.client.has_collection(self.collection):
                self.client.drop_collection(self.collection)


def drop_collection(access: MilvusAccess | str, collection: str, owner: str) -> str:
    """Remove a twin's collection (deletionPolicy Delete), only if it was created for `owner`: "dropped",
    "absent", or whose it is ("other namespace/name", or "unrecorded": not created by this llmtwin)."""
    client = milvus_client(access)
    try:
        if not client.has_collection(collection):
            return "absent"
        recorded = owner_of(client.describe_collection(collection).get("description", ""))
        if recorded != owner:
            return recorded or "unrecorded"
        client.drop_collection(collection)
        return "dropped"
    finally:
        client.close()


_stores: dict[tuple, ChunkStore] = {}
_stores_lock = threading.Lock()


def _store(twin: LLMTwin, secrets: Secrets | None, create: bool) -> ChunkStore:
    """One store per Milvus and collection in a process: Milvus Lite allows one process per data file."""
    vs = twin.spec.vector_store
    key = (milvus_access(twin, secrets), twin.collection, vs.dimension, vs.index_type, vs.metric)
    with _stores_lock:
        if key not in _stores:
            _stores[key] = ChunkStore(*key, create=create, owner=twin_owner(twin))
        return _stores[key]


def twin_owner(twin: LLMTwin) -> str:
    return f"{twin.namespace}/{twin.name}"


def store_for(twin: LLMTwin, secrets: Secrets | None = None) -> ChunkStore:
    """The twin's store, its collection created on first use (the writers' and the readers' way in);
    `secrets` reads the token and CA bundle the spec names (needed only if it names them)."""
    return _store(twin, secrets, create=True)


def existing_store(twin: LLMTwin, secrets: Secrets | None = None) -> ChunkStore | None:
    """The twin's store if its collection exists (for readers that must not create one: the drift monitor)."""
    try:
        return _store(twin, secrets, create=False)
    except CollectionMissing:
        return None
