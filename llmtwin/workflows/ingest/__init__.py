"""The `ingest-object` workflow step (see `pipeline.py` for what it does)."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.settings import Settings
from llmtwin.workflows.ingest.embed import embedder_for
from llmtwin.workflows.ingest.objects import store_for_source
from llmtwin.workflows.ingest.pipeline import IngestPipeline, inbox_from_env, source_for
from llmtwin.workflows.ingest.store import store_for
from llmtwin.workflows.status import reporter_from_env
from llmtwin.workflows.steps import StepContext, step


@functools.cache
def _pipeline(twin_json: str, bucket: str, settings: Settings) -> IngestPipeline:
    twin = LLMTwin.model_validate_json(twin_json)
    source = source_for(twin, bucket, "") or next(s for s in twin.spec.sources if s.bucket == bucket)
    vs = twin.spec.vector_store
    return IngestPipeline(
        twin, store_for_source(source, settings, inbox_from_env()), store_for(twin), embedder_for(vs.embedding_model)
    )


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
    pipeline = _pipeline(context.twin.model_dump_json(by_alias=True), bucket, context.settings)
    outcome = pipeline.delete(bucket, key) if event_type == "delete" else pipeline.put(bucket, key)
    documents, chunks = pipeline.store.counts()
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    fields: dict[str, Any] = {"documents": documents, "chunks": chunks, "lastIngestion": now}
    if outcome.outcome == "rejected":
        fields["lastError"] = f"{bucket}/{key}: {outcome.reason}"
    reporter_from_env().report(context.twin, fields)
    return outcome.wire()
