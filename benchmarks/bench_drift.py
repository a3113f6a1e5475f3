"""Drift benchmark: what the drift monitor costs, what question recording costs the front door, and how
long drift takes to reach the retrain webhook.

1. Monitor cost at a 10k-question window (384-dimensional unit vectors, a 1000-vector corpus sample):
   µs per question taken in, ms per evaluation for each detector, and the memory the window holds.
   Baseline in the same run: MMD and the domain classifier without subsampling (what the detectors
   would cost if they looked at every question).
2. Front door p50/p95 (retrieval on the demo corpus in Milvus Lite, no generation: the cheapest answer,
   so recording's share is the largest) with and without question recording to a real Kafka broker,
   interleaved question by question. Target: recording adds < 5% at p95.
3. Detection delay in `llmtwin up`'s chain (queries -> monitor -> rule -> alert -> dispatcher), from
   the first off-topic question to the dispatcher's decision, against its floor: `for` plus one
   evaluation interval. (On a cluster add Prometheus' scrape and evaluation intervals and
   Alertmanager's group_wait to the floor; `tests/events/test_drift_loop.py` runs that chain for real.)

Usage: .venv/bin/python benchmarks/bench_drift.py [--window 10000] [--questions 300] [--smoke]
--smoke: every row at the smallest size (figures mean nothing); non-zero exit if anything fails.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
from report import exit_on_sigterm, print_table  # noqa: E402

from llmtwin.api.v1alpha1 import LLMTwin  # noqa: E402
from llmtwin.drift import detectors  # noqa: E402
from llmtwin.drift.monitor import DriftMonitor  # noqa: E402
from llmtwin.drift.records import QuestionRecord  # noqa: E402
from tests.drift.questions import OFF_TOPIC, ON_TOPIC  # noqa: E402
from tests.twins import DEMO_CORPUS_BUCKET, example_twin, ingest_demo_corpus  # noqa: E402

DIMENSION = 384
CORPUS_SAMPLE = 1000


class SampledCorpus:
    def __init__(self, vectors: np.ndarray):
        self.vectors = vectors

    def sample_vectors(self, limit: int) -> list:
        return self.vectors[:limit]


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def timed(call, repeat: int) -> float:
    """Median seconds of `repeat` calls."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# ------------------------------------------------------------------------------------- monitor cost
def monitor_cost(window: int) -> list[tuple[str, str, str]]:
    rng = np.random.default_rng(3)
    corpus = unit(rng.normal(size=(CORPUS_SAMPLE, DIMENSION))).astype(np.float32)
    questions = unit(rng.normal(size=(window, DIMENSION))).astype(np.float32)
    rows = []
    for detector in ("embedding-centroid", "mmd", "domain-classifier", "feedback"):
        twin = example_twin(drift={"detector": detector, "window": "24h", "referenceQuestions": 100})
        monitor = DriftMonitor(lambda ns, n, t=twin: t, lambda t: SampledCorpus(corpus))
        now = time.time()
        records = [QuestionRecord("default", "demo", f"a{i}", now, 0.1, q) for i, q in enumerate(questions)]
        started = time.perf_counter()
        for record in records:
            monitor.add(record)
        add_seconds = (time.perf_counter() - started) / window
        if detector == "feedback":
            from llmtwin.drift.records import FeedbackRecord

            for i in range(0, window, 3):
                monitor.add(FeedbackRecord("default", "demo", f"a{i}", -1 if i % 2 else 1, now))
        evaluate = timed(monitor.evaluate, 3)
        rows.append((f"{detector}: evaluate at {window} questions", f"{evaluate * 1000:.1f} ms", "median of 3"))
        if detector == "embedding-centroid":
            rows.append(("monitor: take one question", f"{add_seconds * 1e6:.1f} µs", f"mean over {window}"))
            held = window_memory(twin, corpus, records)
            note = f"{held / window / 1024:.2f} KiB per question (float32 {DIMENSION}-d + bookkeeping)"
            rows.append((f"monitor: memory held at {window} questions", f"{held / 2**20:.1f} MiB", note))
    # Baseline: the quadratic/fitted detectors over every question (no subsampling).
    limit = detectors.MAX_SAMPLES
    full = min(window, 4000)  # MMD's kernel over all 10k + 1k vectors alone would take ~1 GiB
    window_q, reference_q = questions[:full], questions[-100:]
    mmd_full = timed(lambda: detectors.mmd(window_q, corpus, max_samples=full), 1)
    classifier_full = timed(lambda: detectors.domain_classifier_auc(window_q, reference_q, max_samples=full), 1)
    mmd_sampled = timed(lambda: detectors.mmd(window_q, corpus), 3)
    classifier_sampled = timed(lambda: detectors.domain_classifier_auc(window_q, reference_q), 3)
    for name, unsampled, sampled in (
        ("mmd", mmd_full, mmd_sampled),
        ("domain classifier", classifier_full, classifier_sampled),
    ):
        note = f"subsampled to {limit}: {sampled * 1000:.0f} ms (unsampled/subsampled {unsampled / sampled:.1f}x)"
        rows.append((f"baseline: {name} unsampled at {full}", f"{unsampled * 1000:.0f} ms", note))
    return rows


def window_memory(twin: LLMTwin, corpus: np.ndarray, records: list) -> int:
    """Bytes a monitor holds after taking `records` (traced on a fresh monitor: tracing slows allocation)."""
    tracemalloc.start()
    monitor = DriftMonitor(lambda ns, n: twin, lambda t: SampledCorpus(corpus))
    for record in records:
        monitor.add(record)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return held


# ------------------------------------------------------------------------------ recording overhead
def demo_twin(work: Path, **spec) -> LLMTwin:
    import yaml

    doc = yaml.safe_load((ROOT / "examples/twin.yaml").read_text())
    doc["spec"]["vectorStore"]["uri"] = str(work / "milvus.db")
    doc["spec"]["sources"] = [{"bucket": DEMO_CORPUS_BUCKET}]
    doc["spec"].update(spec)
    return LLMTwin.model_validate(doc)


def recording_overhead(twin: LLMTwin, questions: int) -> list[tuple[str, str, str]]:
    from llmtwin.events.broker import KafkaMessageProducer
    from llmtwin.frontdoor.answer import FrontDoor, Recorder, record_failed
    from llmtwin.frontdoor.retrieve import Retriever
    from llmtwin.operator.eventplane.topics import ensure_topics
    from tests.harness.kafka import KafkaBroker

    broker = KafkaBroker().start()
    try:
        ensure_topics(broker.bootstrap, ["llmtwin.queries"])
        producer = KafkaMessageProducer(broker.bootstrap, "bench-frontdoor", on_error=record_failed)
        retriever = Retriever(twin)
        plain = FrontDoor(twin, retriever, None)
        recording = FrontDoor(twin, retriever, None, Recorder(twin, producer, "llmtwin.queries"))
        asked = ON_TOPIC + OFF_TOPIC
        for door in (plain, recording):  # warm both paths (embedder, client, producer connection)
            door.ask(asked[0], generate=False)
        totals: dict[str, list[float]] = {"without": [], "with": []}
        for i in range(questions):
            order = [("without", plain), ("with", recording)] if i % 2 else [("with", recording), ("without", plain)]
            for label, door in order:
                started = time.perf_counter()
                door.ask(asked[i % len(asked)], generate=False)
                totals[label].append(time.perf_counter() - started)
        producer.flush()
        producer.close()
    finally:
        broker.stop()

    def pct(values: list[float], q: int) -> float:
        return float(np.percentile(values, q)) * 1000

    p95 = {label: pct(values, 95) for label, values in totals.items()}
    return [
        ("front door without recording p50/p95",
         f"{pct(totals['without'], 50):.1f}/{p95['without']:.1f} ms", f"{questions} questions, retrieval only"),
        ("front door with recording (Kafka) p50/p95",
         f"{pct(totals['with'], 50):.1f}/{p95['with']:.1f} ms", "interleaved with the row above"),
        ("recording overhead at p95", f"{(p95['with'] / p95['without'] - 1) * 100:+.1f}%", "target < 5%"),
    ]  # fmt: skip


# -------------------------------------------------------------------------------- detection delay
def detection_delay(work: Path) -> list[tuple[str, str, str]]:
    from llmtwin.config import EmbeddedSettings, load
    from llmtwin.embedded.twin import EmbeddedTwin, local_settings
    from llmtwin.frontdoor.answer import FrontDoor, Recorder
    from llmtwin.frontdoor.retrieve import Retriever

    evaluate_seconds, hold, min_questions = 0.5, "2s", 10
    twin = demo_twin(work, drift={"window": "5s", "for": hold, "minQuestions": min_questions})
    settings = local_settings(work / "data", load(EmbeddedSettings), twin)
    embedded = EmbeddedTwin(twin, work / "data", settings)
    decided = threading.Event()
    embedded.submitter.submit = lambda workflow: decided.set() or workflow["metadata"]["name"]  # no training
    drift = embedded.drift()
    door = FrontDoor(twin, Retriever(twin), None, Recorder(twin, embedded.queue, settings.queries_topic))
    stop = threading.Event()
    loops = drift.run(evaluate_seconds, stop)
    try:
        for question in ON_TOPIC:
            door.ask(question, generate=False)
        time.sleep(5.5)  # the on-topic questions leave the 5 s window
        switched = time.perf_counter()
        for asked, question in enumerate(OFF_TOPIC, 1):
            door.ask(question, generate=False)
            if asked == min_questions:
                enough = time.perf_counter() - switched  # the rule may start its `for` from here
        if not decided.wait(60):
            raise RuntimeError(f"no retrain decision within 60 s (last evaluation: {drift.last})")
        delay = time.perf_counter() - switched
    finally:
        stop.set()
        for loop in loops:
            loop.join(timeout=5)
    floor = enough + float(hold.rstrip("s"))
    return [
        ("detection delay (llmtwin up)", f"{delay:.2f} s",
         f"floor {floor:.2f} s = {enough:.2f} s to ask minQuestions {min_questions} + for {hold}; "
         f"at most one evaluation ({evaluate_seconds} s) later"),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=int, default=10_000, help="questions in the window")
    parser.add_argument("--questions", type=int, default=300, help="front door questions per arm")
    parser.add_argument("--smoke", action="store_true", help="smallest sizes: proves the benchmark runs")
    args = parser.parse_args()
    if args.smoke:
        args.window, args.questions = 600, 10
    exit_on_sigterm()
    rows = monitor_cost(args.window)
    with tempfile.TemporaryDirectory(prefix="llmtwin-bench-drift-") as tmp:
        work = Path(tmp)
        twin = demo_twin(work)
        ingest_demo_corpus(twin)
        rows += recording_overhead(twin, args.questions)
        rows += detection_delay(work)
    print_table(rows)


if __name__ == "__main__":
    main()
