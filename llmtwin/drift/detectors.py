"""Drift detectors: how far the twin's recent questions are from what it knows. Pure NumPy.

Each takes the window (recent question embeddings, unit vectors) and a reference, and returns a score
that grows with drift; the default thresholds were calibrated on the demo corpus with
all-MiniLM-L6-v2 (20 paraphrases of the corpus against 20 questions from other domains; see
`tests/drift/test_detectors.py` and the benchmark); they live in the API (`DRIFT_THRESHOLDS`), and
`spec.drift.threshold` overrides them.

- `embedding-centroid` (Phoenix's centroid distance): cosine distance between the window's centroid
  and the corpus sample's centroid. On-topic 0.26, off-topic 0.87: threshold 0.4.
- `mmd` (Evidently's embedding drift, MMD method): unbiased MMD² between the window and the corpus
  sample, RBF kernel with the median-heuristic bandwidth. On-topic 0.017, off-topic 0.14: threshold 0.06.
- `domain-classifier` (Evidently's model-based drift): ROC AUC of a logistic regression telling the
  window's questions from the twin's reference questions (its first questions, not corpus passages,
  which always differ from questions), out of fold. 0.5 = indistinguishable: threshold 0.75.
- `feedback`: the share of answers in the window that got negative feedback (`POST /feedback`).
  Threshold 0.3.

Large windows are subsampled (evenly, deterministic) to `MAX_SAMPLES` for the quadratic and fitted
detectors, which keeps a score at a 10k-question window to milliseconds.
"""

from __future__ import annotations

import numpy as np

MAX_SAMPLES = 500
FOLDS = 5


def _sample(x: np.ndarray, limit: int) -> np.ndarray:
    if len(x) <= limit:
        return x
    return x[np.linspace(0, len(x) - 1, limit).round().astype(int)]


def centroid_distance(window: np.ndarray, reference: np.ndarray) -> float:
    a, b = window.mean(axis=0), reference.mean(axis=0)
    denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(1.0 - a @ b / denominator) if denominator else 0.0


def mmd(window: np.ndarray, reference: np.ndarray, max_samples: int = MAX_SAMPLES) -> float:
    """Unbiased MMD² with an RBF kernel whose bandwidth is the median pairwise squared distance."""
    x, y = _sample(window, max_samples), _sample(reference, max_samples)
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        return 0.0
    z = np.vstack([x, y]).astype(np.float64)
    squared = np.maximum((z * z).sum(1)[:, None] + (z * z).sum(1)[None, :] - 2 * z @ z.T, 0.0)
    positive = squared[squared > 0]
    bandwidth = float(np.median(positive)) if positive.size else 1.0
    kernel = np.exp(-squared / bandwidth)
    kxx, kyy, kxy = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    return float(
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()
    )


def _logistic(x: np.ndarray, y: np.ndarray, steps: int = 200, rate: float = 0.5, l2: float = 1e-2) -> np.ndarray:
    """Weights (bias last) of an L2-regularised logistic regression, by gradient descent."""
    design = np.hstack([x, np.ones((len(x), 1))])
    weights = np.zeros(design.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-design @ weights))
        weights -= rate * (design.T @ (p - y) / len(y) + l2 * np.r_[weights[:-1], 0.0])
    return weights


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann-Whitney: the chance a positive scores above a negative (ties count half)."""
    positives, negatives = scores[labels == 1], scores[labels == 0]
    if not len(positives) or not len(negatives):
        return 0.5
    greater = (positives[:, None] > negatives[None, :]).sum()
    ties = (positives[:, None] == negatives[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(positives) * len(negatives)))


def domain_classifier_auc(window: np.ndarray, reference: np.ndarray, max_samples: int = MAX_SAMPLES) -> float:
    """Out-of-fold ROC AUC of a classifier telling window questions (1) from reference questions (0)."""
    window, reference = _sample(window, max_samples), _sample(reference, max_samples)
    x = np.vstack([window, reference]).astype(np.float64)
    y = np.r_[np.ones(len(window)), np.zeros(len(reference))]
    if len(x) < 2 * FOLDS or y.min() == y.max():
        return 0.5
    folds = np.arange(len(x)) % FOLDS  # interleaved: both classes in every fold
    scores = np.empty(len(x))
    for fold in range(FOLDS):
        held = folds == fold
        weights = _logistic(x[~held], y[~held])
        scores[held] = np.hstack([x[held], np.ones((held.sum(), 1))]) @ weights
    return roc_auc(scores, y)


def negative_share(ratings: list[int]) -> float:
    """Share of rated answers rated negatively (ratings: -1 or +1)."""
    return sum(r < 0 for r in ratings) / len(ratings) if ratings else 0.0
