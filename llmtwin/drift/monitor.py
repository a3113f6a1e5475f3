"""The drift monitor: per twin, a sliding window of recent questions scored against a reference.

It keeps, per twin, the questions of the last `spec.drift.window` (time, answer id, embedding), the
ratings of their answers, and the twin's first `spec.drift.referenceQuestions` questions (the domain
classifier's reference); the corpus reference (a sample of the twin's chunk vectors) comes from the
collection, reloaded when the twin's chunk count changes or every `REFERENCE_MAX_AGE` seconds.
`evaluate()` scores each twin with its spec's detector and exports

    llmtwin_drift_score{namespace, twin, detector}     (only when the detector has what it needs)
    llmtwin_drift_window_questions{namespace, twin}

which Prometheus scrapes and the twin's alerting rule reads (under `llmtwin up`, `rule.py` reads them).
State is rebuilt after a restart by reading the queries topic from its start (see the gateway).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import Gauge

from llmtwin.api import names
from llmtwin.api.v1alpha1 import LLMTwin, duration_seconds
from llmtwin.corpus.store import ChunkStore
from llmtwin.drift import detectors
from llmtwin.drift.records import FeedbackRecord, QuestionRecord, Record
from llmtwin.secrets import SecretError

log = logging.getLogger(__name__)

SCORE = Gauge(
    names.DRIFT_METRIC,
    "Drift of the twin's recent questions (see spec.drift.detector)",
    ["namespace", "twin", "detector"],
)
WINDOW = Gauge(names.DRIFT_WINDOW_METRIC, "Questions in the twin's drift window", ["namespace", "twin"])
THRESHOLD = Gauge(
    names.DRIFT_THRESHOLD_METRIC,
    "The score above which the twin's drift alert fires",
    ["namespace", "twin", "detector"],
)
REFERENCE_SAMPLE = 1000  # corpus vectors in the reference
REFERENCE_MAX_AGE = 600.0  # seconds before the corpus sample is reloaded even if the chunk count is unchanged

TwinLookup = Callable[[str, str], LLMTwin | None]
StoreLookup = Callable[[LLMTwin], ChunkStore | None]


@dataclass
class TwinState:
    questions: deque[tuple[float, str, np.ndarray]] = field(default_factory=deque)
    ratings: dict[str, int] = field(default_factory=dict)
    reference_questions: list[np.ndarray] = field(default_factory=list)
    corpus: np.ndarray | None = None
    corpus_chunks: int | None = None
    corpus_loaded: float = 0.0
    exported: str | None = None  # the detector whose score is exported
    thresholded: str | None = None  # the detector whose threshold is exported


@dataclass(frozen=True)
class Evaluation:
    questions: int
    score: float | None  # None: the detector lacks what it needs (no corpus, too few questions, ...)


class DriftMonitor:
    def __init__(self, twins: TwinLookup, stores: StoreLookup, clock: Callable[[], float] = time.time):
        self.twins = twins
        self.stores = stores
        self.clock = clock
        self.states: dict[tuple[str, str], TwinState] = {}
        self._lock = threading.Lock()

    def add(self, record: Record) -> bool:
        """Take one record; False when its twin is unknown (the caller dead-letters it)."""
        twin = self.twins(record.namespace, record.twin)
        if twin is None:
            return False
        with self._lock:
            state = self.states.setdefault((record.namespace, record.twin), TwinState())
            if isinstance(record, QuestionRecord):
                vector = record.embedding / (np.linalg.norm(record.embedding) or 1.0)
                state.questions.append((record.time, record.answer_id, vector))
                if len(state.reference_questions) < twin.spec.drift.reference_questions:
                    state.reference_questions.append(vector)
            elif isinstance(record, FeedbackRecord):
                state.ratings[record.answer_id] = record.rating
        return True

    def evaluate(self) -> dict[tuple[str, str], Evaluation]:
        """Expire old questions, score every twin, export the gauges."""
        with self._lock:
            keys = list(self.states)
        return {key: self._evaluate(key) for key in keys}

    def _evaluate(self, key: tuple[str, str]) -> Evaluation:
        namespace, name = key
        twin = self.twins(namespace, name)
        state = self.states[key]
        if twin is None:  # deleted: forget it and its series
            self._unexport(key, state)
            with self._lock:
                self.states.pop(key, None)
            return Evaluation(0, None)
        drift = twin.spec.drift
        with self._lock:
            horizon = self.clock() - duration_seconds(drift.window)
            while state.questions and state.questions[0][0] < horizon:
                _, answer_id, _ = state.questions.popleft()
                state.ratings.pop(answer_id, None)
            window = [v for _, _, v in state.questions]
            ratings = [state.ratings[a] for _, a, _ in state.questions if a in state.ratings]
            reference = list(state.reference_questions)
        score = self._score(twin, state, window, ratings, reference)
        WINDOW.labels(namespace, name).set(len(window))
        if state.exported and state.exported != drift.detector:  # the spec changed detector
            SCORE.remove(namespace, name, state.exported)
            state.exported = None
        if state.thresholded and state.thresholded != drift.detector:
            THRESHOLD.remove(namespace, name, state.thresholded)
        THRESHOLD.labels(namespace, name, drift.detector).set(drift.effective_threshold)
        state.thresholded = drift.detector
        if score is not None:
            SCORE.labels(namespace, name, drift.detector).set(score)
            state.exported = drift.detector
        elif state.exported:
            SCORE.remove(namespace, name, state.exported)  # no stale score outliving its inputs
            state.exported = None
        return Evaluation(len(window), score)

    def _score(
        self, twin: LLMTwin, state: TwinState, window: list, ratings: list[int], reference: list
    ) -> float | None:
        detector = twin.spec.drift.detector
        if detector == "feedback":
            return detectors.negative_share(ratings) if ratings else None
        if len(window) < 2:
            return None
        if detector == "domain-classifier":
            if len(reference) < twin.spec.drift.reference_questions:
                return None
            return detectors.domain_classifier_auc(np.stack(window), np.stack(reference))
        corpus = self._corpus(twin, state)
        if corpus is None or len(corpus) < 2:
            return None
        if detector == "mmd":
            return detectors.mmd(np.stack(window), corpus)
        return detectors.centroid_distance(np.stack(window), corpus)

    def _corpus(self, twin: LLMTwin, state: TwinState) -> np.ndarray | None:
        stale = self.clock() - state.corpus_loaded > REFERENCE_MAX_AGE
        if (
            state.corpus is None
            or stale
            or (twin.status.chunks is not None and twin.status.chunks != state.corpus_chunks)
        ):
            try:
                store = self.stores(twin)
            except SecretError as exc:  # the twin is Degraded for it; the other twins are scored on
                log.warning("drift %s/%s: cannot open its collection: %s", twin.namespace, twin.name, exc.detail)
                return None
            if store is None:
                return None
            vectors = np.asarray(store.sample_vectors(REFERENCE_SAMPLE), dtype=np.float32)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True) if len(vectors) else None
            state.corpus = vectors / np.where(norms == 0, 1, norms) if norms is not None else None
            state.corpus_chunks = twin.status.chunks
            state.corpus_loaded = self.clock()
        return state.corpus

    @staticmethod
    def _unexport(key: tuple[str, str], state: TwinState) -> None:
        exported = ((SCORE, (*key, state.exported)), (THRESHOLD, (*key, state.thresholded)), (WINDOW, key))
        for gauge, labels in exported:
            try:
                gauge.remove(*labels)
            except KeyError:
                pass
