"""Retrieval quality on a labelled set: for each question, the rank at which the first chunk of the
document that answers it comes back; hit@1 (the share found first) and MRR (the mean of 1/rank, 0 when
it is not found). The retrieval mode a twin uses by default is the one that scores best here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from llmtwin.corpus.store import Hit


@dataclass(frozen=True)
class LabelledQuestion:
    question: str
    key: str  # the answering document's object key
    title: str | None = None  # and its title, for a post of an export

    def answered_by(self, hit: Hit) -> bool:
        return hit.key == self.key and (self.title is None or hit.title == self.title)


@dataclass(frozen=True)
class RetrievalScore:
    hit_at_1: float
    mrr: float
    misses: tuple[str, ...]  # the questions whose document was not first

    def row(self) -> str:
        return f"hit@1 {self.hit_at_1:.2f}, MRR {self.mrr:.2f}"


def load_retrieval_set(path: Path) -> list[LabelledQuestion]:
    return [LabelledQuestion(**item) for item in yaml.safe_load(Path(path).read_text())["questions"]]


def rank_of(item: LabelledQuestion, hits: list[Hit]) -> int | None:
    """1-based rank of the first hit from the answering document; None when none came back."""
    return next((rank for rank, hit in enumerate(hits, 1) if item.answered_by(hit)), None)


def score(retrieve: Callable[[str], list[Hit]], items: list[LabelledQuestion]) -> RetrievalScore:
    ranks = [rank_of(item, retrieve(item.question)) for item in items]
    misses = tuple(item.question for item, rank in zip(items, ranks, strict=True) if rank != 1)
    return RetrievalScore(
        hit_at_1=sum(rank == 1 for rank in ranks) / len(items),
        mrr=sum(1 / rank for rank in ranks if rank) / len(items),
        misses=misses,
    )
