"""The `ingest-object` workflow step (see `pipeline.py` for what it does)."""

from __future__ import annotations

from typing import Any

from llmtwin.api.timestamps import now
from llmtwin.corpus.embed import embedder_for
from llmtwin.corpus.store import store_for
from llmtwin.workflows.ingest.pipeline import IngestPipeline
from llmtwin.workflows.steps import StepContext, step


@step("ingest-object")
def ingest_object(
    context: StepContext,
    *,
    twin: str = "",
    bucket: str,
    key: str,
    event_type: str = "put",
    etag: str = "",
    version_id: str = "",
    event_id: str = "",
) -> dict[str, Any]:
    if not any(s.bucket == bucket for s in context.twin.spec.sources):
        return {"outcome": "rejected", "reason": f"unrouted: bucket {bucket!r} is not a source of this twin"}
    vector_store = context.twin.spec.vector_store
    pipeline = IngestPipeline(
        context.twin, context.objects.for_source, store_for(context.twin), embedder_for(vector_store.embedding_model)
    )
    outcome = pipeline.delete(bucket, key) if event_type == "delete" else pipeline.put(bucket, key)
    documents, chunks = pipeline.store.counts()
    fields: dict[str, Any] = {"documents": documents, "chunks": chunks, "lastIngestion": now()}
    if outcome.outcome == "rejected":
        fields["lastError"] = f"{bucket}/{key}: {outcome.reason}"
    context.status.report(context.twin, fields)
    return outcome.wire()
