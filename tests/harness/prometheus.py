"""A real Prometheus (Debian's, 2.42) on loopback, scraping what a test names, queried over its HTTP API.

Targets are given as file_sd files (`set_targets`), each labelled the way Kubernetes service discovery
would label a pod (namespace, service, pod-template hash, ...), so the queries the operator renders
run unchanged. Two scrape jobs, with and without `honor_labels`, stand for ServiceMonitor/PodMonitor
endpoints with and without `honorLabels`. Rule files go in with `rule_files`; scrape and evaluation
intervals are 1 s."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.harness import free_port, stop_process_group, wait_for
from tests.harness.kube import InfraMissing

BINARY = "prometheus"


class Prometheus:
    def __init__(self, rule_files: list[Path] | None = None, alertmanager_url: str | None = None):
        self.workdir = Path(tempfile.mkdtemp(prefix="llmtwin-prometheus-"))
        self.rule_files = rule_files or []
        self.alertmanager_url = alertmanager_url
        self.port = 0
        self.url = ""
        self.proc: subprocess.Popen | None = None

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                {
                    "job_name": "llmtwin-honor-labels" if honor else "llmtwin",
                    "honor_labels": honor,
                    "file_sd_configs": [{"files": [str(self.targets_file(honor))], "refresh_interval": "1s"}],
                }
                for honor in (False, True)
            ],
            "rule_files": [str(p) for p in self.rule_files],
        }
        if self.alertmanager_url:
            target = urllib.parse.urlsplit(self.alertmanager_url).netloc
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [target]}]}]}
        return config

    def start(self) -> Prometheus:
        if not shutil.which(BINARY):
            raise InfraMissing(f"{BINARY} missing: apt-get install prometheus (or `make test`)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.set_targets([])
        self.set_targets([], honor_labels=True)
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(self.config()))
        self.proc = subprocess.Popen(
            [
                BINARY,
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
            ],
            stdout=open(self.workdir / "prometheus.log", "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self._ready, timeout=30, what="prometheus ready")
        return self

    def _ready(self) -> bool:
        if self.proc and self.proc.poll() is not None:
            raise RuntimeError((self.workdir / "prometheus.log").read_text(errors="replace")[-2000:])
        try:
            return urllib.request.urlopen(f"{self.url}/-/ready", timeout=1).status == 200
        except OSError:
            return False

    def targets_file(self, honor_labels: bool) -> Path:
        return self.workdir / ("targets-honor-labels.json" if honor_labels else "targets.json")

    def set_targets(self, targets: list[tuple[str, dict[str, str]]], honor_labels: bool = False) -> None:
        """Scrape these `host:port`s with these labels, replacing the previous set scraped with the same
        `honor_labels` (a ServiceMonitor endpoint's honorLabels)."""
        groups = [{"targets": [address], "labels": labels} for address, labels in targets]
        path = self.targets_file(honor_labels)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        tmp.replace(path)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector (each item: metric labels and [time, "value"])."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        body = json.loads(urllib.request.urlopen(url, timeout=10).read())
        if body["status"] != "success":
            raise AssertionError(f"{promql}: {body}")
        return body["data"]["result"]

    def up(self, **labels: str) -> bool:
        """Whether a target with these labels was scraped successfully."""
        return any(r["value"][1] == "1" for r in self.query("up") if labels.items() <= r["metric"].items())

    def stop(self) -> None:
        stop_process_group(self.proc)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Prometheus:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


class Promtool:
    """Debian's promtool: `test rules` runs rule unit tests (series in, expected alerts out)."""

    def start(self) -> Promtool:
        if not shutil.which("promtool"):
            raise InfraMissing("promtool missing: apt-get install prometheus (or `make test`)")
        return self

    def stop(self) -> None:
        pass

    def test_rules(
        self, rules: dict[str, Any], tests: list[dict[str, Any]], workdir: Path
    ) -> subprocess.CompletedProcess:
        (workdir / "rules.yml").write_text(yaml.safe_dump(rules))
        spec = {"rule_files": ["rules.yml"], "evaluation_interval": "15s", "tests": tests}
        (workdir / "tests.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
        return subprocess.run(
            ["promtool", "test", "rules", "tests.yml"], cwd=workdir, capture_output=True, text=True, timeout=60
        )
