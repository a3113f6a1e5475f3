"""Every benchmark still runs: `benchmarks/bench_<name>.py --smoke`, the same code paths at the smallest size.

No figure is asserted: benchmarks measure, tests only prove they still run (exit status 0 and the
printed table). A refactor that breaks a benchmark fails here instead of on the next `make bench`.
Each benchmark starts the servers it needs itself; when their builds are missing (InfraMissing) the
test is skipped, or failed under LLMTWIN_REQUIRE_INFRA, as the server fixtures do.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from tests.twins import ROOT

pytestmark = [pytest.mark.slow]
TIMEOUT = 600  # seconds; each smoke run takes about a minute on 2 idle cores
SERVERS = [pytest.mark.cluster, pytest.mark.kafka, pytest.mark.minio]
BENCHMARKS = [
    pytest.param("ingest", marks=[pytest.mark.models], id="ingest"),
    pytest.param("events", marks=SERVERS, id="events"),
    pytest.param("operator", marks=SERVERS, id="operator"),
    pytest.param("training", marks=[pytest.mark.models], id="training"),
    pytest.param("serving", marks=[pytest.mark.models], id="serving"),
    pytest.param("drift", marks=[pytest.mark.kafka, pytest.mark.models], id="drift"),
    pytest.param("promotion", marks=[*SERVERS, pytest.mark.models, pytest.mark.prometheus], id="promotion"),
]


def run_smoke(name: str) -> tuple[int, str]:
    """Exit status and output (stdout and stderr) of the benchmark's smoke run; on a timeout it gets
    SIGTERM first, so that it stops the servers it started."""
    proc = subprocess.Popen(
        [sys.executable, f"benchmarks/bench_{name}.py", "--smoke"],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = proc.communicate(timeout=TIMEOUT)
        return proc.returncode, output
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
        pytest.fail(f"bench_{name}.py --smoke did not finish in {TIMEOUT} s:\n{output[-4000:]}")
    finally:
        if proc.poll() is None:  # interrupted (pytest-timeout, Ctrl-C): never leave it running
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_smoke_run(name):
    status, output = run_smoke(name)
    if status and "InfraMissing" in output and not os.environ.get("LLMTWIN_REQUIRE_INFRA"):
        pytest.skip(output.strip().splitlines()[-1])
    assert status == 0, f"bench_{name}.py --smoke exited {status}:\n{output[-4000:]}"
    assert re.search(r"^metric\s+\| value\s+\| note$", output, re.MULTILINE), output[-4000:]
