"""HTTP face of the retriever: `POST /ask`, `GET /healthz`, `GET /metrics`, `GET /status`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from llmtwin.retrieval import Retriever, source_filter


class AskRequest(BaseModel):
    question: str = Field(min_length=1, max_length=4000)
    top_k: int | None = Field(default=None, ge=1, le=100)
    bucket: str | None = None
    key_prefix: str | None = None
    since: int | None = Field(default=None, description="Only chunks ingested at or after this unix time.")
    generate: bool = True


def create_app(retriever: Retriever, status: Callable[[], dict[str, Any]]) -> FastAPI:
    app = FastAPI(title=f"llmtwin {retriever.twin.name}", version="v1alpha1")

    @app.post("/ask")
    def ask(request: AskRequest) -> dict[str, Any]:
        flt = source_filter(request.bucket, request.key_prefix, request.since)
        return retriever.ask(request.question, request.top_k, flt, request.generate).wire()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/status")
    def get_status() -> dict[str, Any]:
        return status()

    @app.get("/metrics")
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
