"""Read a Prometheus /metrics endpoint the way Prometheus does (prometheus_client's own parser)."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def samples(url: str) -> list[tuple[str, dict[str, str], float]]:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def metric(url: str, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when there are none)."""
    return sum(
        value
        for sample, sample_labels, value in samples(url)
        if sample == name and labels.items() <= sample_labels.items()
    )


def samples_of(name: str, registry=None, **labels: str) -> dict[tuple[str, ...], float]:
    """This process's samples of `name` (default registry) whose labels include `labels`, keyed by label values."""
    from prometheus_client import REGISTRY

    found = {}
    for family in (registry or REGISTRY).collect():
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                found[tuple(sample.labels.values())] = sample.value
    return found
