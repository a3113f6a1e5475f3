"""The canary analysis the operator renders, run against a real Prometheus (Debian 2.42) scraping a real
`llmtwin serve`: every query returns a number, and the numbers are what the server did."""

from __future__ import annotations

import math
import urllib.parse

import pytest

from llmtwin.operator.serving import analysis_template
from llmtwin.serving.client import model_server_client
from tests.harness import wait_for
from tests.serving.conftest import post
from tests.twins import example_twin

pytestmark = pytest.mark.slow


def test_the_analysis_queries_return_the_servers_numbers(smollm2_server, prometheus):
    twin = example_twin(serving={"engine": "llmtwin"})
    canary = f"{twin.name}-canary"
    address = urllib.parse.urlsplit(smollm2_server.url).netloc
    prometheus.set_targets([(address, {"namespace": twin.namespace, "service": canary})])
    wait_for(lambda: prometheus.up(service=canary), timeout=30, what="prometheus to scrape the server")

    def fail() -> None:
        status, _ = post(f"{smollm2_server.url}/generate", {"inputs": "hi", "parameters": {"adapter_id": "nowhere"}})
        assert status == 422

    # A counter's first appearance is no increase to rate(): let the failure series exist first.
    fail()
    wait_for(lambda: prometheus.query(f'tgi_request_failure{{service="{canary}"}}'), 30, what="the failure series")
    client = model_server_client(smollm2_server.url)
    for subject in ("nets", "oars", "buoys"):
        client.text_generation(f"Write about {subject}.", max_new_tokens=4)
    fail()

    metrics = {
        m["name"]: m["provider"]["prometheus"]["query"].replace("{{args.service}}", canary)
        for m in analysis_template(twin)["spec"]["metrics"]
    }

    def values() -> dict[str, float] | None:
        results = {name: prometheus.query(query) for name, query in metrics.items()}
        if not all(len(r) == 1 for r in results.values()):
            return None
        numbers = {name: float(r[0]["value"][1]) for name, r in results.items()}
        return numbers if numbers["error-ratio"] > 0 else None  # the failure reached two scrapes

    numbers = wait_for(values, timeout=60, what="every analysis query to return a number")
    assert all(math.isfinite(v) for v in numbers.values()), numbers
    assert 0 < numbers["error-ratio"] < 1  # one failed request among several
    assert 0 < numbers["p95-latency"] < 60
