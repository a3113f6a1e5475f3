"""A question answered: retrieved context, the spec's prompt, generation by the model server.

The model server is reached through `huggingface_hub.InferenceClient`'s chat route, which TGI, vLLM
and `llmtwin serve` all speak; `model` names the production adapter (served under the twin's name)
when there is one, else the base model. Without a model server the answer is the context alone.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from prometheus_client import Counter, Histogram

from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.corpus.store import Hit
from llmtwin.drift.records import FeedbackRecord, QuestionRecord, key
from llmtwin.frontdoor.expand import QueryExpander
from llmtwin.frontdoor.retrieve import Retriever
from llmtwin.serving.client import model_server_client

QUESTIONS = Counter("llmtwin_frontdoor_questions_total", "Questions answered, by outcome", ["outcome"])
FIRST_TOKEN_SECONDS = Histogram(
    "llmtwin_frontdoor_first_token_seconds",
    "From the question to the first generated token (retrieval included)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
RECORD_FAILURES = Counter("llmtwin_frontdoor_record_failures_total", "Question records that could not be sent")
ANSWER_SECONDS = Histogram(
    "llmtwin_frontdoor_answer_seconds", "From the question to the whole answer", buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60)
)


def record_failed(exc: Exception) -> None:
    """A record the producer could not deliver (counted: the drift signal thins, the user is served)."""
    RECORD_FAILURES.inc()


class Producer(Protocol):
    """Where records go: Kafka (llmtwin.events.broker) or the in-process queue (`llmtwin up`)."""

    def send(self, topic: str, value: bytes, key: bytes | None = None, headers: dict | None = None) -> None: ...


class Recorder:
    """Every answered question (and every rating of an answer) onto the queries topic, for the drift
    monitor. Sending is asynchronous (the producer batches), so it costs the answer almost nothing."""

    def __init__(self, twin: LLMTwin, producer: Producer, topic: str, clock: Callable[[], float] = time.time):
        self.twin = twin
        self.producer = producer
        self.topic = topic
        self.clock = clock  # the records' time, which the drift window is measured in

    def question(self, answer: Answer, vector: list[float]) -> None:
        record = QuestionRecord(
            self.twin.namespace, self.twin.name, answer.id, self.clock(), answer.timings.get("total", 0.0),
            np.asarray(vector, dtype=np.float32),
        )  # fmt: skip
        self._send(record.encode())

    def feedback(self, answer_id: str, rating: int) -> None:
        self._send(FeedbackRecord(self.twin.namespace, self.twin.name, answer_id, rating, self.clock()).encode())

    def _send(self, value: bytes) -> None:
        try:
            self.producer.send(self.topic, value, key=key(self.twin.namespace, self.twin.name))
        except Exception as exc:  # an answer is never lost to its record
            record_failed(exc)


@dataclass
class Answer:
    question: str
    hits: list[Hit]
    model: str
    model_version: str | None = None  # the production adapter's MLflow version; None: the base model
    id: str = field(default_factory=lambda: f"ans-{uuid.uuid4().hex}")
    text: str | None = None  # None: no model server, the sources are the answer
    finish_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    paraphrases: list[str] = field(default_factory=list)  # what query expansion searched besides the question

    def sources(self) -> list[dict[str, Any]]:
        return [h.wire() for h in self.hits]

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "question": self.question,
            "answer": self.text,
            "model": self.model,
            "model_version": self.model_version,
            "sources": self.sources(),
            "paraphrases": self.paraphrases,
            "timings_ms": {k: round(v * 1000, 1) for k, v in self.timings.items()},
        }


@dataclass(frozen=True)
class Sampling:
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: list[str] | None = None


class FrontDoor:
    def __init__(self, twin: LLMTwin, retriever: Retriever, endpoint: str | None, recorder: Recorder | None = None):
        self.twin = twin
        self.retriever = retriever
        self.endpoint = endpoint
        self.recorder = recorder
        self.client = model_server_client(endpoint) if endpoint else None
        expansion = twin.spec.serving.gateway.query_expansion
        self.expander = QueryExpander(self.client, expansion) if expansion and self.client else None

    @property
    def model(self) -> str:
        """The production adapter (the model server serves it under the twin's name), else the base model."""
        return self.twin.name if self.twin.status.model_version else self.twin.spec.base_model.id

    def messages(self, question: str, hits: list[Hit], history: list[dict[str, str]]) -> list[dict[str, str]]:
        """The spec's system prompt, the conversation so far (its own system messages dropped: the twin
        speaks as its author), and the question inside the spec's prompt template."""
        system, prompt = self.retriever.messages(question, hits)
        return [system, *(m for m in history if m["role"] != "system"), prompt]

    def _start(self, question: str, top_k: int | None, filter: str) -> tuple[Answer, float, list[float]]:
        started = time.perf_counter()
        timings, paraphrases = {}, []
        if self.expander is not None:
            paraphrases = self.expander(question, self.model)
            timings["expand"] = time.perf_counter() - started
        hits, vector = self.retriever.retrieve_with_vector(question, top_k, filter, paraphrases=paraphrases)
        timings["retrieve"] = time.perf_counter() - started - timings.get("expand", 0.0)
        version = self.twin.status.model_version
        answer = Answer(question, hits, self.model, version, timings=timings, paraphrases=paraphrases)
        return answer, started, vector

    def _generate_kwargs(self, sampling: Sampling) -> dict[str, Any]:
        max_tokens = sampling.max_tokens or self.twin.spec.serving.max_new_tokens
        return {
            "model": self.model,
            "max_tokens": max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "seed": sampling.seed,
            "stop": sampling.stop,
        }

    def ask(
        self,
        question: str,
        top_k: int | None = None,
        filter: str = "",
        history: list[dict[str, str]] | None = None,
        sampling: Sampling = Sampling(),
        generate: bool = True,
    ) -> Answer:
        answer, started, vector = self._start(question, top_k, filter)
        if generate and self.client is not None:
            output = self.client.chat_completion(
                self.messages(question, answer.hits, history or []), **self._generate_kwargs(sampling)
            )
            choice = output.choices[0]
            answer.text, answer.finish_reason = choice.message.content or "", choice.finish_reason
            if output.usage:
                answer.usage = {
                    "prompt_tokens": output.usage.prompt_tokens,
                    "completion_tokens": output.usage.completion_tokens,
                }
        self._done(answer, started, vector)
        return answer

    def stream(
        self,
        question: str,
        top_k: int | None = None,
        filter: str = "",
        history: list[dict[str, str]] | None = None,
        sampling: Sampling = Sampling(),
    ) -> Iterator[str | Answer]:
        """The answer's text as it is generated, then the whole `Answer` (with its sources) last."""
        answer, started, vector = self._start(question, top_k, filter)
        if self.client is not None:
            chunks = self.client.chat_completion(
                self.messages(question, answer.hits, history or []), stream=True, **self._generate_kwargs(sampling)
            )
            answer.text = ""
            for chunk in chunks:
                if not chunk.choices:
                    continue
                delta = chunk.choices[0].delta.content or ""
                if delta and "first_token" not in answer.timings:
                    answer.timings["first_token"] = time.perf_counter() - started
                    FIRST_TOKEN_SECONDS.observe(answer.timings["first_token"])
                if delta:
                    answer.text += delta
                    yield delta
                answer.finish_reason = chunk.choices[0].finish_reason or answer.finish_reason
        self._done(answer, started, vector)
        yield answer

    def _done(self, answer: Answer, started: float, vector: list[float]) -> None:
        answer.timings["total"] = time.perf_counter() - started
        ANSWER_SECONDS.observe(answer.timings["total"])
        QUESTIONS.labels("generated" if answer.text is not None else "context-only").inc()
        if self.recorder is not None:
            self.recorder.question(answer, vector)
