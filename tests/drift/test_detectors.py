"""Each detector on synthetic embeddings with a known answer (same distribution: no drift; shifted:
drift), and on real ones: paraphrases of the demo corpus stay under every threshold, questions from
other domains go over it."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from llmtwin.api.v1alpha1 import DRIFT_THRESHOLDS
from llmtwin.drift import detectors
from tests.drift.questions import OFF_TOPIC, ON_TOPIC
from tests.twins import ROOT


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def synthetic():
    rng = np.random.default_rng(5)
    base = rng.normal(size=32)
    same_a = unit(base + 0.6 * rng.normal(size=(200, 32)))
    same_b = unit(base + 0.6 * rng.normal(size=(200, 32)))
    shifted = unit(base + 2.5 * np.eye(32)[3] + 0.6 * rng.normal(size=(200, 32)))
    return same_a, same_b, shifted


def test_centroid_distance_is_near_zero_for_one_distribution_and_large_after_a_shift(synthetic):
    same_a, same_b, shifted = synthetic
    assert detectors.centroid_distance(same_a, same_b) < 0.01
    assert detectors.centroid_distance(shifted, same_b) > 0.05  # an order of magnitude above


def test_mmd_is_near_zero_for_one_distribution_and_positive_after_a_shift(synthetic):
    same_a, same_b, shifted = synthetic
    assert abs(detectors.mmd(same_a, same_b)) < 0.01
    assert detectors.mmd(shifted, same_b) > 0.1


def test_the_domain_classifier_cannot_tell_one_distribution_apart_but_can_a_shifted_one(synthetic):
    same_a, same_b, shifted = synthetic
    assert 0.35 < detectors.domain_classifier_auc(same_a, same_b) < 0.65
    assert detectors.domain_classifier_auc(shifted, same_b) > 0.95


def test_roc_auc_and_negative_share_by_hand():
    assert detectors.roc_auc(np.array([0.9, 0.8, 0.1, 0.2]), np.array([1, 1, 0, 0])) == 1.0
    assert detectors.roc_auc(np.array([0.5, 0.5]), np.array([1, 0])) == 0.5
    assert detectors.negative_share([1, -1, -1, 1]) == 0.5 and detectors.negative_share([]) == 0.0


def test_subsampling_keeps_large_windows_cheap_and_the_answer_the_same():
    rng = np.random.default_rng(11)
    base = rng.normal(size=32)
    reference = unit(base + 0.6 * rng.normal(size=(300, 32)))
    big = unit(base + 2.5 * np.eye(32)[3] + 0.6 * rng.normal(size=(3000, 32)))
    assert detectors._sample(big, detectors.MAX_SAMPLES).shape[0] == detectors.MAX_SAMPLES
    sampled, full = detectors.mmd(big, reference), detectors.mmd(big, reference, max_samples=len(big))
    assert sampled > 0.1 and sampled == pytest.approx(full, rel=0.1)
    sampled = detectors.domain_classifier_auc(big, reference)
    full = detectors.domain_classifier_auc(big, reference, max_samples=len(big))
    assert sampled > 0.95 and sampled == pytest.approx(full, abs=0.03)


@pytest.mark.models
def test_on_topic_questions_stay_under_every_threshold_and_another_domain_goes_over(embedder):
    from llmtwin.workflows.ingest.parse import parse

    corpus = [
        document.text
        for p in sorted(pathlib.Path(ROOT / "examples/corpus").iterdir())
        for document in parse(p.name, p.read_bytes(), ["txt", "md", "html", "pdf", "json", "jsonl"])
    ]
    reference, on, off = (np.asarray(embedder.embed(t)) for t in (corpus, ON_TOPIC, OFF_TOPIC))
    first, later = on[:10], on[10:]
    scores = {
        "embedding-centroid": (detectors.centroid_distance(on, reference), detectors.centroid_distance(off, reference)),
        "mmd": (detectors.mmd(on, reference), detectors.mmd(off, reference)),
        # Reference questions: the twin's first (on-topic) questions, never corpus passages.
        "domain-classifier": (
            detectors.domain_classifier_auc(later, first),
            detectors.domain_classifier_auc(off, first),
        ),
    }
    for detector, (on_topic, off_topic) in scores.items():
        threshold = DRIFT_THRESHOLDS[detector]
        assert on_topic < threshold < off_topic, (detector, on_topic, threshold, off_topic)
