"""A real Alertmanager (Debian's prometheus-alertmanager) running our shipped route, on loopback."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from datetime import datetime
from pathlib import Path

import yaml

from tests.harness import free_port, stop_process_group, wait_for
from tests.harness.kube import ROOT, InfraMissing

BINARY = "prometheus-alertmanager"
SHIPPED_CONFIG = ROOT / "manifests/gateway/alertmanager/alertmanager.yml"


def config_for(webhook_url: str, token_file: Path) -> dict:
    """The shipped configuration, pointed at this gateway, with short waits so a test sees delivery."""
    config = yaml.safe_load(SHIPPED_CONFIG.read_text())
    route = next(r for r in config["route"]["routes"] if r["receiver"] == "llmtwin-gateway")
    route.update(group_wait="1s", group_interval="1s")
    receiver = next(r for r in config["receivers"] if r["name"] == "llmtwin-gateway")
    webhook = receiver["webhook_configs"][0]
    webhook["url"] = webhook_url
    webhook["http_config"]["authorization"]["credentials_file"] = str(token_file)
    return config


class Alertmanager:
    def __init__(self, workdir: Path, webhook_url: str, token_file: Path):
        self.workdir = Path(workdir)
        self.config = config_for(webhook_url, token_file)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Alertmanager:
        if not shutil.which(BINARY):
            raise InfraMissing(f"{BINARY} missing: apt-get install prometheus-alertmanager (or `make test`)")
        config_file = self.workdir / "alertmanager.yml"
        config_file.write_text(yaml.safe_dump(self.config))
        self.proc = subprocess.Popen(
            [
                BINARY,
                f"--config.file={config_file}",
                f"--storage.path={self.workdir / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",  # a single instance, no gossip port
            ],
            stdout=open(self.workdir / "alertmanager.log", "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self._ready, timeout=30, what="alertmanager ready")
        return self

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError((self.workdir / "alertmanager.log").read_text()[-2000:])
        try:
            return urllib.request.urlopen(f"{self.url}/-/ready", timeout=1).status == 200
        except OSError:
            return False

    def fire(self, labels: dict[str, str], starts_at: datetime) -> None:
        body = json.dumps([{"labels": labels, "startsAt": starts_at.isoformat()}]).encode()
        request = urllib.request.Request(
            f"{self.url}/api/v2/alerts", data=body, headers={"Content-Type": "application/json"}
        )
        urllib.request.urlopen(request, timeout=10)

    def __exit__(self, *exc) -> None:
        stop_process_group(self.proc)
