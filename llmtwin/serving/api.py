"""The model server's HTTP API: TGI's routes and error shapes, OpenAI's chat route, vLLM's adapter routes.

- `POST /generate`, `POST /generate_stream` (server-sent events), `POST /` (TGI's compat route: what
  `huggingface_hub.InferenceClient.text_generation` posts to), with TGI's parameters, `adapter_id`
  included;
- `POST /v1/chat/completions` (OpenAI's schema, streamed or not; `model` names an adapter or the
  base model), `GET /v1/models`;
- `POST /v1/load_lora_adapter`, `POST /v1/unload_lora_adapter` (vLLM's names): adapters at run time,
  from a folder or `models:/<registered model>/<version>`;
- `GET /info`, `GET /health`, `GET /metrics` (TGI's metric names).

Errors have TGI's shape, `{"error": ..., "error_type": ...}`: 422 `validation` (bad parameters, an
input too long, an adapter that is not loaded), 429 `overloaded`, 500 `generation`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

import llmtwin
from llmtwin.serving import metrics
from llmtwin.serving.adapters import UnknownAdapter
from llmtwin.serving.engine import BASE, Completion, Engine, Generation, SamplingParams, Token

# What clients send when they mean "the served model" (huggingface_hub sends "dummy" to a URL, TGI's docs "tgi").
BASE_ALIASES = {"", "tgi", "base", "dummy"}


@dataclass(frozen=True)
class ServerLimits:
    model_id: str  # the base model, as /info and /v1/models name it
    max_input_tokens: int = 2048
    max_total_tokens: int = 4096
    max_new_tokens: int = 256  # when a request sets none
    max_concurrent_requests: int = 128


class ApiError(Exception):
    def __init__(self, status: int, error_type: str, message: str):
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message

    def response(self) -> JSONResponse:
        metrics.COUNTERS.inc("tgi_request_failure", err=self.error_type)
        return JSONResponse({"error": self.message, "error_type": self.error_type}, status_code=self.status)


def validation(message: str) -> ApiError:
    return ApiError(422, "validation", f"Input validation error: {message}")


# ------------------------------------------------------------------------------------------ schemas
class GenerateParameters(BaseModel):
    model_config = ConfigDict(extra="ignore")

    adapter_id: str | None = None
    best_of: int | None = None
    details: bool = False
    decoder_input_details: bool = False
    do_sample: bool = False
    max_new_tokens: int | None = None
    repetition_penalty: float | None = None
    return_full_text: bool | None = None
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    grammar: Any = None


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    inputs: str
    parameters: GenerateParameters = Field(default_factory=GenerateParameters)
    stream: bool = False


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: str | list[dict[str, Any]] | None = ""

    def text(self) -> str:
        if isinstance(self.content, list):  # OpenAI content parts: keep the text ones
            return "".join(part.get("text", "") for part in self.content if part.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    frequency_penalty: float | None = None
    n: int = 1


class LoadAdapter(BaseModel):
    lora_name: str = Field(min_length=1)
    lora_path: str = Field(min_length=1)


class UnloadAdapter(BaseModel):
    lora_name: str = Field(min_length=1)


# -------------------------------------------------------------------------------------- the server
class ModelServer:
    """Validation, prompting and response shaping around the engine (the routes stay one-liners)."""

    def __init__(self, engine: Engine, limits: ServerLimits):
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self.limits = limits

    # ------------------------------------------------------------------ request -> generation
    def adapter(self, name: str | None) -> str:
        if name is None or name in BASE_ALIASES or name == self.limits.model_id:
            return BASE
        if name not in self.engine.adapters.names():
            loaded = self.engine.adapters.names() or "none"
            raise validation(f"adapter `{name}` is not loaded (loaded: {loaded}); load it with /v1/load_lora_adapter")
        return name

    def sampling(
        self, max_new: int | None, temperature: float | None, top_p: float | None, top_k: int | None,
        repetition_penalty: float | None, do_sample: bool, seed: int | None, stop: list[str],
    ) -> SamplingParams:  # fmt: skip
        if max_new is not None and max_new < 1:
            raise validation("`max_new_tokens` must be strictly positive")
        if temperature is not None and temperature <= 0:
            raise validation("`temperature` must be strictly positive")
        if top_p is not None and not 0 < top_p <= 1:
            raise validation("`top_p` must be > 0.0 and <= 1.0")
        if top_k is not None and top_k < 1:
            raise validation("`top_k` must be strictly positive")
        if repetition_penalty is not None and repetition_penalty <= 0:
            raise validation("`repetition_penalty` must be strictly positive")
        # As TGI: any sampling parameter set away from its neutral value turns sampling on.
        sampled = do_sample or (temperature not in (None, 1.0)) or (top_p not in (None, 1.0)) or top_k is not None
        return SamplingParams(
            max_new_tokens=max_new or self.limits.max_new_tokens,
            do_sample=sampled,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            repetition_penalty=repetition_penalty,
            seed=seed,
            stop=tuple(s for s in stop if s),
        )

    def submit(self, prompt_ids: list[int], params: SamplingParams, adapter: str) -> Generation:
        if not prompt_ids:
            raise validation("`inputs` cannot be empty")
        limits = self.limits
        if len(prompt_ids) > limits.max_input_tokens:
            raise validation(f"`inputs` must have less than {limits.max_input_tokens} tokens. Given: {len(prompt_ids)}")
        if len(prompt_ids) + params.max_new_tokens > limits.max_total_tokens:
            raise validation(
                f"`inputs` tokens + `max_new_tokens` must be <= {limits.max_total_tokens}. "
                f"Given: {len(prompt_ids)} `inputs` tokens and {params.max_new_tokens} `max_new_tokens`"
            )
        if self.engine.queue_size() >= limits.max_concurrent_requests:
            raise ApiError(429, "overloaded", "Model is overloaded")
        metrics.REQUEST_INPUT_LENGTH.observe(len(prompt_ids))
        metrics.REQUEST_MAX_NEW_TOKENS.observe(params.max_new_tokens)
        return self.engine.submit(prompt_ids, params, adapter)

    def generate(self, request: GenerateRequest) -> Generation:
        p = request.parameters
        if p.best_of not in (None, 1):
            raise validation("`best_of` > 1 is not supported by this server")
        if p.grammar is not None:
            raise validation("`grammar` is not supported by this server")
        params = self.sampling(
            p.max_new_tokens, p.temperature, p.top_p, p.top_k, p.repetition_penalty, p.do_sample, p.seed, p.stop
        )
        return self.submit(self.tokenizer.encode(request.inputs), params, self.adapter(p.adapter_id))

    def chat(self, request: ChatRequest) -> tuple[Generation, str]:
        if request.n != 1:
            raise validation("`n` > 1 is not supported by this server")
        adapter = self.adapter(request.model)
        messages = [{"role": m.role, "content": m.text()} for m in request.messages]
        try:
            prompt = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception as exc:  # a template that rejects the roles given (e.g. two system messages)
            raise validation(f"the chat template refused the messages: {exc}") from exc
        stop = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
        max_new = request.max_completion_tokens or request.max_tokens
        params = self.sampling(max_new, request.temperature, request.top_p, None, None, False, request.seed, stop)
        ids = self.tokenizer.encode(prompt, add_special_tokens=False)
        return self.submit(ids, params, adapter), adapter or self.limits.model_id

    # ---------------------------------------------------------------- generation -> response
    @staticmethod
    def finished(completion: Completion, started: float) -> None:
        metrics.REQUEST_DURATION.observe(time.perf_counter() - started)
        metrics.COUNTERS.inc("tgi_request_success")

    @staticmethod
    def token(token: Token) -> dict[str, Any]:
        return {"id": token.id, "text": token.text, "logprob": token.logprob, "special": token.special}

    def generate_response(self, request: GenerateRequest, completion: Completion) -> dict[str, Any]:
        text = completion.text
        if request.parameters.return_full_text:
            text = request.inputs + text
        body: dict[str, Any] = {"generated_text": text}
        if request.parameters.details:
            body["details"] = {
                "finish_reason": completion.finish_reason,
                "generated_tokens": completion.generated_tokens,
                "seed": completion.seed,
                "prefill": [],
                "tokens": [self.token(t) for t in completion.tokens],
            }
        return body

    def generate_events(self, generation: Generation, started: float) -> Iterator[str]:
        """TGI's stream: one event per token; the last carries the whole text and the details."""
        index = 0
        pending: Token | None = None
        for token in generation:
            if pending is not None:
                yield _sse({"index": index, "token": self.token(pending), "generated_text": None, "details": None})
                index += 1
            pending = token
        completion = generation.completion
        details = {
            "finish_reason": completion.finish_reason,
            "generated_tokens": completion.generated_tokens,
            "seed": completion.seed,
            "input_length": completion.input_tokens,
        }
        last = pending or Token(0, "", 0.0, True)
        yield _sse({"index": index, "token": self.token(last), "generated_text": completion.text, "details": details})
        self.finished(completion, started)

    def chat_response(self, completion: Completion, model: str, stop: list[str]) -> dict[str, Any]:
        text, reason = _trim_stop(completion, stop)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": f"llmtwin-{llmtwin.__version__}",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": reason,
                }
            ],
            "usage": {
                "prompt_tokens": completion.input_tokens,
                "completion_tokens": completion.generated_tokens,
                "total_tokens": completion.input_tokens + completion.generated_tokens,
            },
        }

    def chat_events(self, generation: Generation, model: str, request: ChatRequest, started: float) -> Iterator[str]:
        """OpenAI's chunks: the role first, then text deltas, then the finish reason, then `[DONE]`."""
        stop = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
        chunk_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def chunk(delta: dict[str, Any], reason: str | None = None, **extra: Any) -> str:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
            body = {"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": model}
            return _sse({**body, "system_fingerprint": f"llmtwin-{llmtwin.__version__}", "choices": [choice], **extra})

        yield chunk({"role": "assistant", "content": ""})
        sent = text = ""
        for token in generation:
            # Send what is certain: text that cannot turn out to be the start of a stop sequence.
            text += token.text
            safe = _safe_prefix(text, stop)
            if len(safe) > len(sent):
                yield chunk({"content": safe[len(sent) :]})
                sent = safe
        completion = generation.completion
        text, reason = _trim_stop(completion, stop)
        if len(text) > len(sent):
            yield chunk({"content": text[len(sent) :]})
        yield chunk({}, reason)
        if (request.stream_options or {}).get("include_usage"):
            usage = {
                "prompt_tokens": completion.input_tokens,
                "completion_tokens": completion.generated_tokens,
                "total_tokens": completion.input_tokens + completion.generated_tokens,
            }
            yield _sse({"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": model,
                        "choices": [], "usage": usage})  # fmt: skip
        yield "data: [DONE]\n\n"
        self.finished(completion, started)

    def info(self) -> dict[str, Any]:
        limits = self.limits
        return {
            "model_id": limits.model_id,
            "model_sha": None,
            "model_dtype": str(self.engine.model.dtype).removeprefix("torch."),
            "model_device_type": self.engine.device,
            "model_pipeline_tag": "text-generation",
            "max_concurrent_requests": limits.max_concurrent_requests,
            "max_best_of": 1,
            "max_stop_sequences": 4,
            "max_input_tokens": limits.max_input_tokens,
            "max_total_tokens": limits.max_total_tokens,
            "max_batch_size": self.engine.max_batch,
            "validation_workers": 1,
            "max_client_batch_size": 1,
            "router": "llmtwin-serve",
            "version": llmtwin.__version__,
            "sha": None,
            "docker_label": None,
            "adapters": self.engine.adapters.names(),
            # Where each was loaded from: `models:/<registered model>/<version>` names the version served.
            "adapter_sources": dict(self.engine.adapters.sources),
        }

    def models(self) -> dict[str, Any]:
        created = int(time.time())
        names = [self.limits.model_id, *self.engine.adapters.names()]
        data = [{"id": n, "object": "model", "created": created, "owned_by": "llmtwin"} for n in names]
        return {"object": "list", "data": data}


def _sse(body: dict[str, Any]) -> str:
    return f"data:{json.dumps(body)}\n\n"


def _trim_stop(completion: Completion, stop: list[str]) -> tuple[str, Literal["stop", "length"]]:
    """OpenAI's convention: the stop sequence is not part of the content; EOS and stops are `stop`."""
    text = completion.text
    for sequence in stop:
        if sequence and sequence in text:
            text = text[: text.index(sequence)]
    return text, "length" if completion.finish_reason == "length" else "stop"


def _safe_prefix(text: str, stop: list[str]) -> str:
    """The part of `text` that no stop sequence can still claim."""
    cut = len(text)
    for sequence in stop:
        if not sequence:
            continue
        if sequence in text:
            cut = min(cut, text.index(sequence))
            continue
        for length in range(min(len(sequence) - 1, len(text)), 0, -1):
            if text.endswith(sequence[:length]):
                cut = min(cut, len(text) - length)
                break
    return text[:cut]


async def _result(generation: Generation) -> Completion:
    try:
        return await run_in_threadpool(generation.result)
    except Exception as exc:  # the batch failed (a bug, an adapter unloaded meanwhile): the request failed
        raise ApiError(500, "generation", f"generation failed: {exc}") from exc


def _guarded(events: Iterator[str]) -> Iterator[str]:
    """A stream that fails mid-way ends with TGI's error event instead of a cut connection."""
    try:
        yield from events
    except Exception as exc:
        metrics.COUNTERS.inc("tgi_request_failure", err="generation")
        yield _sse({"error": f"generation failed: {exc}", "error_type": "generation"})


async def _body(request: Request, model: type[BaseModel]) -> Any:
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise validation(f"{where}: {error['msg']}") from exc


def create_app(server: ModelServer) -> FastAPI:
    app = FastAPI(title="llmtwin serve", version=llmtwin.__version__, docs_url=None, redoc_url=None)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    async def generate(request: Request, stream: bool | None) -> Response:
        started = time.perf_counter()
        metrics.COUNTERS.inc("tgi_request_count")
        body: GenerateRequest = await _body(request, GenerateRequest)
        stream = body.stream if stream is None else stream
        generation = server.generate(body)
        if stream:
            events = iterate_in_threadpool(_guarded(server.generate_events(generation, started)))
            return StreamingResponse(events, media_type="text/event-stream")
        completion = await _result(generation)
        server.finished(completion, started)
        return JSONResponse(server.generate_response(body, completion))

    @app.post("/generate")
    async def generate_route(request: Request) -> Response:
        return await generate(request, stream=False)

    @app.post("/generate_stream")
    async def generate_stream_route(request: Request) -> Response:
        return await generate(request, stream=True)

    @app.post("/")
    async def compat_route(request: Request) -> Response:
        return await generate(request, stream=None)

    @app.post("/v1/chat/completions")
    async def chat_route(request: Request) -> Response:
        started = time.perf_counter()
        metrics.COUNTERS.inc("tgi_request_count")
        body: ChatRequest = await _body(request, ChatRequest)
        generation, model = server.chat(body)
        if body.stream:
            events = iterate_in_threadpool(_guarded(server.chat_events(generation, model, body, started)))
            return StreamingResponse(events, media_type="text/event-stream")
        completion = await _result(generation)
        server.finished(completion, started)
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        return JSONResponse(server.chat_response(completion, model, stop))

    @app.get("/v1/models")
    def models_route() -> dict[str, Any]:
        return server.models()

    @app.post("/v1/load_lora_adapter")
    async def load_adapter_route(request: Request) -> Response:
        body: LoadAdapter = await _body(request, LoadAdapter)
        try:
            await run_in_threadpool(server.engine.adapters.load, body.lora_name, body.lora_path)
        except (ValueError, OSError) as exc:
            raise validation(str(exc)) from exc
        return JSONResponse({"loaded": body.lora_name, "adapters": server.engine.adapters.names()})

    @app.post("/v1/unload_lora_adapter")
    async def unload_adapter_route(request: Request) -> Response:
        body: UnloadAdapter = await _body(request, UnloadAdapter)
        try:
            await run_in_threadpool(server.engine.adapters.unload, body.lora_name)
        except UnknownAdapter as exc:
            raise ApiError(404, "validation", f"adapter `{body.lora_name}` is not loaded") from exc
        return JSONResponse({"unloaded": body.lora_name, "adapters": server.engine.adapters.names()})

    @app.get("/info")
    def info_route() -> dict[str, Any]:
        return server.info()

    @app.get("/health")
    def health_route() -> Response:
        return Response(status_code=200)

    @app.get("/metrics")
    def metrics_route() -> Response:
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app
