"""The generation engine behind `llmtwin serve`: one model, its LoRA adapters, a queue, and batches.

Requests wait in a queue; a scheduler thread takes the oldest one and every other waiting request
that can share its batch (same adapter and the same sampling; greedy requests always can, a sampled
request with its own seed runs alone so its seed reproduces it), waits a few milliseconds for more to
arrive, and runs them as one `model.generate` call with left padding. Every request gets its own
stream of tokens (with log-probabilities) and its own stop: its `max_new_tokens`, its stop sequences,
or the end-of-sequence token. transformers' continuous batching would admit requests mid-batch, but
it cannot switch LoRA adapters per request, which this server exists to do; a short gather window
gets most of the batching gain for bursts of concurrent questions.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from llmtwin.serving import metrics
from llmtwin.serving.adapters import AdapterRegistry

log = logging.getLogger(__name__)
BASE = ""  # adapter name of the base model


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int
    do_sample: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def batch_key(self) -> tuple | None:
        """Requests with equal keys can share a batch (max_new_tokens and stop are per request); None:
        a seeded sample, which must not depend on what it was batched with, runs alone."""
        if self.do_sample and self.seed is not None:
            return None
        return (self.do_sample, self.temperature, self.top_p, self.top_k, self.repetition_penalty)

    def generate_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"do_sample": self.do_sample}
        if self.do_sample:
            kwargs.update(temperature=self.temperature or 1.0, top_p=self.top_p or 1.0, top_k=self.top_k or 0)
        else:
            # Greedy: no sampling warpers (the model's generation config may set some).
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if self.repetition_penalty:
            kwargs["repetition_penalty"] = self.repetition_penalty
        return kwargs


@dataclass(frozen=True)
class Token:
    id: int
    text: str
    logprob: float
    special: bool


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # length | eos_token | stop_sequence
    generated_tokens: int
    input_tokens: int
    seed: int | None
    tokens: list[Token]


class Generation:
    """One request's handle: iterate for its tokens as they come, or wait for the whole completion."""

    def __init__(self, prompt_ids: list[int], params: SamplingParams, adapter: str):
        self.prompt_ids = prompt_ids
        self.params = params
        self.adapter = adapter
        self.batch_key = (adapter, params.batch_key() or ("alone", id(self)))
        self.queued_at = time.perf_counter()
        self.started_at: float | None = None
        self._events: queue.Queue[Token | Completion | BaseException] = queue.Queue()
        self._completion: Completion | None = None

    def __iter__(self) -> Iterator[Token]:
        while True:
            event = self._events.get()
            if isinstance(event, BaseException):
                raise event
            if isinstance(event, Completion):
                self._completion = event
                return
            yield event

    def result(self) -> Completion:
        for _ in self:
            pass
        assert self._completion is not None
        return self._completion

    @property
    def completion(self) -> Completion | None:
        """The completion, once the iteration has ended."""
        return self._completion

    def emit(self, event: Token | Completion | BaseException) -> None:
        self._events.put(event)


@dataclass
class _Row:
    """A request inside a running batch: what it produced so far and why it stopped."""

    request: Generation
    ids: list[int] = field(default_factory=list)
    tokens: list[Token] = field(default_factory=list)
    text: str = ""
    finish_reason: str | None = None


class _StepScores:
    """A logits processor that keeps the final scores of each step (after temperature, top-k, top-p),
    from which the streamer reads the chosen tokens' log-probabilities."""

    def __init__(self) -> None:
        self.latest: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.latest = scores
        return scores


class _BatchStreamer:
    """transformers' streamer protocol for a batch: `put` receives each step's tokens for every row."""

    def __init__(self, engine: Engine, rows: list[_Row], scores: _StepScores):
        self.engine = engine
        self.rows = rows
        self.scores = scores
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # generate first hands over the prompt itself
            self._prompt_seen = True
            return
        logprobs = torch.log_softmax(self.scores.latest.float(), dim=-1) if self.scores.latest is not None else None
        for index, token_id in enumerate(value.view(-1).tolist()):
            row = self.rows[index]
            if row.finish_reason is None:
                logprob = float(logprobs[index, token_id]) if logprobs is not None else 0.0
                self.engine._advance(row, token_id, logprob)

    def end(self) -> None:
        for row in self.rows:
            if row.finish_reason is None:
                row.finish_reason = "length"


class _RowsDone:
    """Stopping criterion: per row, whether its own stop (length, stop sequence, EOS) was reached."""

    def __init__(self, rows: list[_Row]):
        self.rows = rows

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return torch.tensor([row.finish_reason is not None for row in self.rows], device=input_ids.device)


class Engine:
    def __init__(
        self,
        tokenizer: Any,
        adapters: AdapterRegistry,
        device: str = "cpu",
        max_batch: int = 8,
        gather_seconds: float = 0.02,
    ):
        self.tokenizer = tokenizer
        self.adapters = adapters
        self.device = device
        self.max_batch = max_batch
        self.gather_seconds = gather_seconds
        self.eos_ids = self._eos_ids()
        self._waiting: list[Generation] = []
        self._condition = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="generate", daemon=True)

    @property
    def model(self) -> Any:
        """The served model: the base model, or the PeftModel holding it once adapters are loaded."""
        return self.adapters.model

    def _eos_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        ids = set(ids if isinstance(ids, list) else [ids]) if ids is not None else set()
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    # ------------------------------------------------------------------------------- public
    def start(self) -> Engine:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        self._thread.join(timeout=30)

    def submit(self, prompt_ids: list[int], params: SamplingParams, adapter: str = BASE) -> Generation:
        request = Generation(prompt_ids, params, adapter)
        with self._condition:
            self._waiting.append(request)
            metrics.QUEUE_SIZE.set(len(self._waiting))
            self._condition.notify_all()
        return request

    def queue_size(self) -> int:
        with self._condition:
            return len(self._waiting)

    # ---------------------------------------------------------------------------- scheduler
    def _next_batch(self) -> list[Generation] | None:
        """The oldest waiting request and those that can share its batch; None once stopping."""
        with self._condition:
            while not self._waiting and not self._stopping:
                self._condition.wait()
            if self._stopping:
                return None
        time.sleep(self.gather_seconds)  # let a burst of concurrent requests arrive together
        with self._condition:
            key = self._waiting[0].batch_key
            batch = [r for r in self._waiting if r.batch_key == key][: self.max_batch]
            self._waiting = [r for r in self._waiting if r not in batch]
            metrics.QUEUE_SIZE.set(len(self._waiting))
            return batch

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            metrics.BATCH_SIZE.set(len(batch))
            metrics.BATCH_NEXT_SIZE.observe(len(batch))
            try:
                with metrics.BATCH_INFERENCE_DURATION.time():
                    self._generate(batch)
            except Exception as exc:  # a failed batch fails its requests, never the server
                log.exception("generation failed")
                for request in batch:
                    request.emit(exc)
            finally:
                metrics.BATCH_SIZE.set(0)

    def _generate(self, batch: list[Generation]) -> None:
        from transformers import LogitsProcessorList, StoppingCriteriaList

        rows = [_Row(request) for request in batch]
        params = batch[0].params
        width = max(len(r.prompt_ids) for r in batch)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.tensor([[pad] * (width - len(r.prompt_ids)) + r.prompt_ids for r in batch])
        attention = torch.tensor([[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in batch])
        seed = params.seed if params.seed is not None else random.randrange(2**31) if params.do_sample else None
        if seed is not None:
            torch.manual_seed(seed)
        scores = _StepScores()
        now = time.perf_counter()
        for request in batch:
            request.started_at = now
            metrics.REQUEST_QUEUE_DURATION.observe(now - request.queued_at)
        with self.adapters.active(batch[0].adapter), torch.inference_mode():
            self.model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention.to(self.device),
                max_new_tokens=max(r.params.max_new_tokens for r in batch),
                logits_processor=LogitsProcessorList([scores]),
                stopping_criteria=StoppingCriteriaList([_RowsDone(rows)]),
                streamer=_BatchStreamer(self, rows, scores),
                pad_token_id=pad,
                **params.generate_kwargs(),
            )
        for row in rows:
            self._finish(row, seed)

    # ---------------------------------------------------------------------------------- rows
    def _advance(self, row: _Row, token_id: int, logprob: float) -> None:
        """One new token for a row: decoded, checked against the row's stops, streamed."""
        request = row.request
        if token_id in self.eos_ids:
            row.finish_reason = "eos_token"
            # No text: a stream's tokens join to exactly the completion's text.
            token = Token(token_id, "", logprob, True)
            row.ids.append(token_id)
            row.tokens.append(token)
            request.emit(token)
            return
        row.ids.append(token_id)
        # Decode the whole text each time: a multi-byte character may span tokens.
        text = self.tokenizer.decode(row.ids, skip_special_tokens=True)
        delta = text[len(row.text) :] if not text.endswith("\ufffd") else ""
        if delta:
            row.text += delta
        token = Token(token_id, delta, logprob, token_id in self.tokenizer.all_special_ids)
        row.tokens.append(token)
        request.emit(token)
        # As TGI: a stop sequence ends the generation when the text ends with it.
        stop = next((s for s in request.params.stop if s and row.text.endswith(s)), None)
        if stop is not None:
            row.finish_reason = "stop_sequence"
        elif len(row.ids) >= request.params.max_new_tokens:
            row.finish_reason = "length"

    def _finish(self, row: _Row, seed: int | None) -> None:
        request = row.request
        text = self.tokenizer.decode([i for i in row.ids if i not in self.eos_ids], skip_special_tokens=True)
        completion = Completion(
            text=text,
            finish_reason=row.finish_reason or "length",
            generated_tokens=len(row.ids),
            input_tokens=len(request.prompt_ids),
            seed=seed,
            tokens=row.tokens,
        )
        done = time.perf_counter()
        metrics.REQUEST_INFERENCE_DURATION.observe(done - (request.started_at or done))
        if completion.generated_tokens:
            metrics.REQUEST_TIME_PER_TOKEN.observe((done - (request.started_at or done)) / completion.generated_tokens)
        metrics.REQUEST_GENERATED_TOKENS.observe(completion.generated_tokens)
        request.emit(completion)
