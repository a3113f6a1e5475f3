"""The `ingest-objects` workflow step (see `pipeline.py` for what it does)."""

from __future__ import annotations

from typing import Any

from llmtwin.api.timestamps import now
from llmtwin.corpus.embed import embedder_for
from llmtwin.sources.changes import decode_changes
from llmtwin.workflows.ingest.pipeline import IngestPipeline
from llmtwin.workflows.steps import StepContext, step
from llmtwin.workflows.templates import INGEST_STEP


@step(INGEST_STEP)
def ingest_objects(context: StepContext, *, twin: str = "", objects: str) -> dict[str, Any]:
    """Every change of the batch, each with its outcome; the twin's counts and last error in its status."""
    vector_store = context.twin.spec.vector_store
    pipeline = IngestPipeline(
        context.twin, context.objects.for_source, context.store(), embedder_for(vector_store.embedding_model)
    )
    outcomes = pipeline.ingest(decode_changes(objects))
    documents, chunks = pipeline.store.counts()
    fields: dict[str, Any] = {"documents": documents, "chunks": chunks, "lastIngestion": now()}
    rejected = [o for o in outcomes if o.outcome == "rejected"]
    if rejected:
        fields["lastError"] = f"{rejected[-1].bucket}/{rejected[-1].key}: {rejected[-1].reason}"
    context.status.report(context.twin, fields)
    return {"objects": [o.wire() for o in outcomes]}
