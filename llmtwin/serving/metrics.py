"""TGI's metric names (text-generation-inference/reference/metrics), on this server's own registry.

TGI's exporter writes counters without the `_total` suffix prometheus_client adds to every counter
(`tgi_request_count`, not `tgi_request_count_total`), so the counters here come from a small
collector under exactly those names, declared untyped (prometheus_client would otherwise announce
them as `..._total`); `rate()` treats them the same. Histograms and gauges already match
(`tgi_request_duration_bucket`, `tgi_queue_size`). The canary analysis and the dashboards query
these names for TGI and for `llmtwin serve` alike.
"""

from __future__ import annotations

import threading
from collections import defaultdict

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry()
LATENCY = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TOKENS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class _Counters(Collector):
    """Monotonic counters exported under their bare names, as TGI does (reset only by a restart)."""

    def __init__(self) -> None:
        self._values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        self._help = {
            "tgi_request_count": "Total number of requests",
            "tgi_request_success": "Number of successful requests",
            "tgi_request_failure": "Number of failed requests, by error kind (err)",
            "tgi_batch_inference_count": "Inference calls",
        }
        self._lock = threading.Lock()

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        with self._lock:
            self._values[(name, tuple(sorted(labels.items())))] += amount

    def collect(self):
        with self._lock:
            values = dict(self._values)
        for name, help_text in self._help.items():
            family = Metric(name, help_text, "unknown")
            for (sample, labels), value in values.items():
                if sample == name:
                    family.add_sample(name, dict(labels), value)
            yield family


COUNTERS = _Counters()
REGISTRY.register(COUNTERS)

QUEUE_SIZE = Gauge("tgi_queue_size", "Current queue size", registry=REGISTRY)
BATCH_SIZE = Gauge("tgi_batch_current_size", "Current batch size", registry=REGISTRY)
BATCH_NEXT_SIZE = Histogram(
    "tgi_batch_next_size", "Batch size of the next batch", buckets=(1, 2, 4, 8, 16, 32), registry=REGISTRY
)
BATCH_INFERENCE_DURATION = Histogram(
    "tgi_batch_inference_duration", "Batch inference duration", buckets=LATENCY, registry=REGISTRY
)
REQUEST_DURATION = Histogram(
    "tgi_request_duration", "Total time spent processing the request (e2e latency)", buckets=LATENCY, registry=REGISTRY
)
REQUEST_QUEUE_DURATION = Histogram(
    "tgi_request_queue_duration", "Time spent in the queue per request", buckets=LATENCY, registry=REGISTRY
)
REQUEST_INFERENCE_DURATION = Histogram(
    "tgi_request_inference_duration", "Request inference duration", buckets=LATENCY, registry=REGISTRY
)
REQUEST_TIME_PER_TOKEN = Histogram(
    "tgi_request_mean_time_per_token_duration", "Mean time per token per request", buckets=LATENCY, registry=REGISTRY
)
REQUEST_GENERATED_TOKENS = Histogram(
    "tgi_request_generated_tokens", "Generated tokens per request", buckets=TOKENS, registry=REGISTRY
)
REQUEST_INPUT_LENGTH = Histogram(
    "tgi_request_input_length", "Input token length per request", buckets=TOKENS, registry=REGISTRY
)
REQUEST_MAX_NEW_TOKENS = Histogram(
    "tgi_request_max_new_tokens", "Maximum new tokens per request", buckets=TOKENS, registry=REGISTRY
)
