"""The drift monitor's window, references and gauges, and the in-process rule, on synthetic records."""

from __future__ import annotations

import numpy as np

from llmtwin.drift.monitor import DriftMonitor
from llmtwin.drift.records import FeedbackRecord, MalformedRecord, QuestionRecord, decode
from llmtwin.drift.rule import DriftRule
from tests.harness.metrics import samples_of
from tests.twins import example_twin

RNG = np.random.default_rng(3)
TOPIC = np.eye(16)[0]


def vector(shift: np.ndarray = TOPIC) -> np.ndarray:
    v = shift * 3 + RNG.normal(size=16) * 0.5
    return (v / np.linalg.norm(v)).astype(np.float32)


class Corpus:
    """Stands in for the twin's collection (the monitor reads a sample of its vectors)."""

    def __init__(self) -> None:
        self.reads = 0

    def sample_vectors(self, limit: int) -> list[list[float]]:
        self.reads += 1
        return [vector().tolist() for _ in range(50)]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def monitor_for(twin, corpus: Corpus, clock: Clock) -> DriftMonitor:
    return DriftMonitor(
        lambda ns, name: twin if (ns, name) == (twin.namespace, twin.name) else None, lambda t: corpus, clock
    )


def question(twin, clock: Clock, v: np.ndarray, answer: str = "a") -> QuestionRecord:
    return QuestionRecord(twin.namespace, twin.name, answer, clock(), 0.5, v)


def test_records_round_trip_and_bad_ones_say_why():
    twin = example_twin()
    record = question(twin, Clock(), vector())
    back = decode(record.encode())
    assert isinstance(back, QuestionRecord) and np.allclose(back.embedding, record.embedding)
    feedback = decode(FeedbackRecord("default", "demo", "a", -1, 1.0).encode())
    assert isinstance(feedback, FeedbackRecord) and feedback.rating == -1
    for bad in (b"", b"{}", b'{"type": "question"}', b'{"type":"other","namespace":"a","twin":"b","answer_id":"c"}'):
        try:
            decode(bad)
        except MalformedRecord as exc:
            assert exc.reason == "malformed" and exc.detail
        else:
            raise AssertionError(f"{bad!r} decoded")


def test_a_window_slides_and_the_score_follows_the_questions():
    twin = example_twin(drift={"window": "60s", "minQuestions": 5})
    clock, corpus = Clock(), Corpus()
    monitor = monitor_for(twin, corpus, clock)
    for i in range(20):
        assert monitor.add(question(twin, clock, vector(), f"on-{i}"))
    on_topic = monitor.evaluate()[("default", "demo")]
    assert on_topic.questions == 20 and on_topic.score < twin.spec.drift.effective_threshold
    gauges = samples_of("llmtwin_drift_score", namespace="default", twin="demo")
    assert gauges == {("default", "demo", "embedding-centroid"): on_topic.score}
    threshold = samples_of("llmtwin_drift_threshold", namespace="default", twin="demo")
    assert threshold == {("default", "demo", "embedding-centroid"): 0.4}  # the dashboard draws it

    clock.now += 61  # the on-topic questions leave the window; off-topic ones arrive
    for i in range(20):
        monitor.add(question(twin, clock, vector(np.eye(16)[7]), f"off-{i}"))
    off_topic = monitor.evaluate()[("default", "demo")]
    assert off_topic.questions == 20 and off_topic.score > twin.spec.drift.effective_threshold
    assert samples_of("llmtwin_drift_window_questions", namespace="default", twin="demo") == {("default", "demo"): 20}
    assert corpus.reads == 1  # the corpus sample is reused while the collection is unchanged

    clock.now += 61  # nobody asks anything: the window empties and the score goes with it
    empty = monitor.evaluate()[("default", "demo")]
    assert (empty.questions, empty.score) == (0, None)
    assert samples_of("llmtwin_drift_score", namespace="default", twin="demo") == {}


def test_the_domain_classifier_waits_for_its_reference_questions_and_feedback_counts_ratings():
    twin = example_twin(drift={"detector": "domain-classifier", "referenceQuestions": 20, "window": "60s"})
    clock = Clock()
    monitor = monitor_for(twin, Corpus(), clock)
    for i in range(10):
        monitor.add(question(twin, clock, vector(), f"q{i}"))
    assert monitor.evaluate()[("default", "demo")].score is None  # 10 of 20 reference questions
    for i in range(10, 40):
        monitor.add(question(twin, clock, vector(), f"q{i}"))
    assert monitor.evaluate()[("default", "demo")].score < 0.75
    clock.now += 61  # a new window of questions from elsewhere; the reference stays the first 20
    for i in range(40, 70):
        monitor.add(question(twin, clock, vector(np.eye(16)[9]), f"q{i}"))
    assert monitor.evaluate()[("default", "demo")].score > 0.75

    rated = example_twin(drift={"detector": "feedback"})
    monitor = monitor_for(rated, Corpus(), clock)
    for i in range(4):
        monitor.add(question(rated, clock, vector(), f"r{i}"))
    assert monitor.evaluate()[("default", "demo")].score is None  # no ratings yet
    for answer, rating in (("r0", -1), ("r1", -1), ("r2", 1), ("unknown", -1)):
        monitor.add(FeedbackRecord("default", "demo", answer, rating, clock()))
    assert monitor.evaluate()[("default", "demo")].score == 2 / 3  # ratings of answers in the window only


def test_unknown_twins_are_refused():
    twin = example_twin()
    monitor = monitor_for(twin, Corpus(), Clock())
    assert not monitor.add(QuestionRecord("default", "ghost", "a", 0.0, 0.1, vector()))


def test_the_rule_fires_after_for_only_with_enough_questions_and_resolves():
    from llmtwin.drift.monitor import Evaluation

    twin = example_twin(drift={"threshold": 0.3, "for": "10s", "minQuestions": 5})
    rule = DriftRule(twin)
    assert rule.observe(Evaluation(3, 0.9), 0) is None  # too few questions
    assert rule.observe(Evaluation(5, 0.9), 1) is None  # pending
    assert rule.observe(Evaluation(5, 0.9), 10) is None  # 9 s
    firing = rule.observe(Evaluation(6, 0.9), 11)
    assert firing["status"] == "firing" and firing["labels"]["llmtwin_action"] == "retrain"
    assert rule.observe(Evaluation(6, 0.9), 30) is None  # still firing: nothing new
    resolved = rule.observe(Evaluation(6, 0.1), 31)
    assert resolved["status"] == "resolved" and resolved["startsAt"] == firing["startsAt"]
    assert resolved["fingerprint"] == firing["fingerprint"]
