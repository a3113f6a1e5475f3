"""The front door over HTTP: OpenAI's chat route (so any OpenAI client talks to the twin) and `/ask`.

- `POST /v1/chat/completions`: the last user message is the question; the answer is generated from
  the retrieved context in the author's voice. The response carries the usual OpenAI fields plus
  `sources` (document, title, chunk, score); a stream ends with one chunk holding `sources`, then
  `[DONE]`.
- `POST /ask`: `{question, top_k, bucket, key_prefix, since, until, generate}` -> answer, sources, timings.
  A document's date is the one it declares (front matter, a post's date, the page's published date),
  else its object's last modification.
- `POST /feedback`: `{answer_id, rating: 1 | -1}`, onto the queries topic with the questions.
- `GET /v1/models`, `GET /healthz`, `GET /status`, `GET /metrics`.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from huggingface_hub.errors import HfHubHTTPError
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from llmtwin.frontdoor.answer import QUESTIONS, Answer, FrontDoor, Sampling
from llmtwin.frontdoor.retrieve import source_filter


class AskRequest(BaseModel):
    question: str = Field(min_length=1, max_length=4000)
    top_k: int | None = Field(default=None, ge=1, le=100)
    bucket: str | None = None
    key_prefix: str | None = None
    since: dt.datetime | None = Field(
        default=None, description="Only documents dated at or after this (ISO 8601 or unix time; UTC if no zone)."
    )
    until: dt.datetime | None = Field(default=None, description="Only documents dated before this.")
    generate: bool = True
    stream: bool = Field(default=False, description="Server-sent events: {delta} per text piece, then the answer.")


class FeedbackRequest(BaseModel):
    answer_id: str = Field(min_length=1, max_length=200, description="The `id` of an answer.")
    rating: int = Field(description="1: a good answer, -1: a bad one.")


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: str | list[dict[str, Any]] | None = ""

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.get("text", "") for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, gt=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False

    def question(self) -> tuple[str, list[dict[str, str]]]:
        """The last user message, and the conversation before it."""
        for index in range(len(self.messages) - 1, -1, -1):
            if self.messages[index].role == "user":
                history = [{"role": m.role, "content": m.text()} for m in self.messages[:index]]
                return self.messages[index].text(), history
        raise ValueError("no user message")

    def sampling(self) -> Sampling:
        stop = [self.stop] if isinstance(self.stop, str) else self.stop
        return Sampling(self.max_completion_tokens or self.max_tokens, self.temperature, self.top_p, self.seed, stop)


FEEDBACK = Counter("llmtwin_frontdoor_feedback_total", "Answers rated through POST /feedback", ["rating"])


def _completion(answer: Answer, created: int) -> dict[str, Any]:
    usage = answer.usage or {"prompt_tokens": 0, "completion_tokens": 0}
    return {
        "id": answer.id,
        "object": "chat.completion",
        "created": created,
        "model": answer.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.text or ""},
                "logprobs": None,
                "finish_reason": answer.finish_reason or "stop",
            }
        ],
        "usage": {**usage, "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]},
        "sources": answer.sources(),
    }


def _chunks(door: FrontDoor, request: ChatRequest) -> Iterator[str]:
    question, history = request.question()
    created, model, chunk_id = int(time.time()), door.model, f"chatcmpl-{uuid.uuid4().hex}"
    yield _event(chunk_id, created, model, {"role": "assistant", "content": ""})
    answer: Answer | None = None
    for item in door.stream(question, history=history, sampling=request.sampling()):
        if isinstance(item, Answer):
            answer = item
            break
        yield _event(chunk_id, created, model, {"content": item})
    assert answer is not None
    if answer.text is None:  # no model server: the context is the answer
        yield _event(chunk_id, created, model, {"content": ""})
    # The last chunk: the finish reason, and the sources the answer came from.
    yield _event(
        chunk_id, created, model, {}, answer.finish_reason or "stop", sources=answer.sources(), answer_id=answer.id
    )
    yield "data: [DONE]\n\n"


def _ask_events(door: FrontDoor, question: str, top_k: int | None, flt: str) -> Iterator[str]:
    for item in door.stream(question, top_k, flt):
        body = item.wire() if isinstance(item, Answer) else {"delta": item}
        yield f"data: {json.dumps(body)}\n\n"


def _event(chunk_id: str, created: int, model: str, delta: dict, reason: str | None = None, **extra: Any) -> str:
    body = {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}],
        **extra,
    }
    return f"data: {json.dumps(body)}\n\n"


def _model_server_error(exc: HfHubHTTPError) -> JSONResponse:
    """The model server's own 4xx (a too-long question, ...) passed on; anything else is a 502."""
    status = exc.response.status_code if exc.response is not None else 502
    QUESTIONS.labels("failed").inc()
    return JSONResponse(
        {"error": {"message": str(exc).splitlines()[-1], "type": "model_server"}},
        status_code=status if 400 <= status < 500 else 502,
    )


def create_app(door: FrontDoor, status: Callable[[], dict[str, Any]]) -> FastAPI:
    app = FastAPI(title=f"llmtwin {door.twin.namespace}/{door.twin.name}", version="v1alpha1")

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: ChatRequest) -> JSONResponse | StreamingResponse:
        try:
            question, history = request.question()
        except ValueError:
            return JSONResponse({"error": {"message": "no user message", "type": "invalid_request"}}, 422)
        try:
            if request.stream:
                return StreamingResponse(iterate_in_threadpool(_chunks(door, request)), media_type="text/event-stream")
            answer = await run_in_threadpool(lambda: door.ask(question, history=history, sampling=request.sampling()))
        except HfHubHTTPError as exc:
            return _model_server_error(exc)
        return JSONResponse(_completion(answer, int(time.time())))

    @app.post("/ask", response_model=None)
    async def ask(request: AskRequest) -> JSONResponse | StreamingResponse:
        flt = source_filter(request.bucket, request.key_prefix, request.since, request.until)
        if request.stream:
            return StreamingResponse(
                iterate_in_threadpool(_ask_events(door, request.question, request.top_k, flt)),
                media_type="text/event-stream",
            )
        try:
            answer = await run_in_threadpool(
                lambda: door.ask(request.question, request.top_k, flt, generate=request.generate)
            )
        except HfHubHTTPError as exc:
            return _model_server_error(exc)
        return JSONResponse(answer.wire())

    @app.post("/feedback")
    def feedback(request: FeedbackRequest) -> JSONResponse:
        """A rating of an answer: the `feedback` drift detector's input."""
        if request.rating not in (-1, 1):
            return JSONResponse({"error": {"message": "rating must be 1 or -1", "type": "invalid_request"}}, 422)
        if door.recorder is None:
            return JSONResponse({"error": {"message": "this front door records nothing", "type": "unavailable"}}, 503)
        door.recorder.feedback(request.answer_id, request.rating)
        FEEDBACK.labels("up" if request.rating > 0 else "down").inc()
        return JSONResponse({"recorded": request.answer_id})

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": door.model, "object": "model", "owned_by": "llmtwin"}]}

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
