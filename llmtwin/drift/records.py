"""Question and feedback records on the queries topic (`LLMTWIN_QUERIES_TOPIC`), keyed `<namespace>/<twin>`.

A question record carries the question's embedding (the retriever computed it already), so the drift
state is computed once per twin, in the gateway, however many front-door replicas answer. The
embedding travels as base64 float32 (1.5 KB for 384 dimensions, not 7 KB of JSON numbers).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from llmtwin.api.errors import ReasonedError


class MalformedRecord(ReasonedError):
    def __init__(self, detail: str):
        super().__init__("malformed", detail)


@dataclass(frozen=True)
class QuestionRecord:
    namespace: str
    twin: str
    answer_id: str
    time: float  # unix seconds
    latency: float  # seconds to the whole answer
    embedding: np.ndarray  # unit vector (float32)

    def encode(self) -> bytes:
        vector = base64.b64encode(np.asarray(self.embedding, dtype="<f4").tobytes()).decode()
        return json.dumps(
            {"type": "question", "namespace": self.namespace, "twin": self.twin, "answer_id": self.answer_id,
             "time": self.time, "latency": round(self.latency, 4), "embedding": vector}
        ).encode()  # fmt: skip


@dataclass(frozen=True)
class FeedbackRecord:
    namespace: str
    twin: str
    answer_id: str
    rating: Literal[-1, 1]
    time: float

    def encode(self) -> bytes:
        return json.dumps(
            {"type": "feedback", "namespace": self.namespace, "twin": self.twin, "answer_id": self.answer_id,
             "rating": self.rating, "time": self.time}
        ).encode()  # fmt: skip


Record = QuestionRecord | FeedbackRecord


def key(namespace: str, twin: str) -> bytes:
    return f"{namespace}/{twin}".encode()


def decode(value: bytes | None) -> Record:
    try:
        body: dict[str, Any] = json.loads(value or b"")
        common = {"namespace": str(body["namespace"]), "twin": str(body["twin"]), "answer_id": str(body["answer_id"])}
        if body.get("type") == "question":
            vector = np.frombuffer(base64.b64decode(body["embedding"]), dtype="<f4")
            if not vector.size or not np.isfinite(vector).all():
                raise MalformedRecord("embedding is empty or not finite")
            return QuestionRecord(**common, time=float(body["time"]), latency=float(body["latency"]), embedding=vector)
        if body.get("type") == "feedback":
            rating = int(body["rating"])
            if rating not in (-1, 1):
                raise MalformedRecord(f"rating {rating} is neither -1 nor 1")
            return FeedbackRecord(**common, rating=rating, time=float(body.get("time", time.time())))  # type: ignore[arg-type]
        raise MalformedRecord(f"unknown record type {str(body.get('type'))[:40]!r}")
    except MalformedRecord:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedRecord(f"not a question or feedback record: {str(exc)[:200]}") from exc
