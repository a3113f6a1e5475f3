"""Each image's exact dependency set in a fresh virtualenv (no Docker engine here).

The extras an image installs are read from its Dockerfile's `pip wheel` line, so the test installs
what the image installs. uv builds the virtualenv from a cache outside the clone (a torch-sized
environment costs about a minute once its wheels are cached); the environment itself is kept per
dependency set, and llmtwin is reinstalled from the checkout once per test session."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.harness.kube import CACHE
from tests.twins import ROOT

IMAGES = ROOT / "images"
UV = Path(sys.executable).parent / "uv"
WHEEL_LINE = re.compile(r'pip wheel [^\n]*?"?\.(\[[a-z0-9,_-]+\])?"?\s*$', re.MULTILINE)


def image_extras(image: str) -> str:
    """`[events]`, or `` for the core dependencies alone, as the image's Dockerfile installs them."""
    match = WHEEL_LINE.search((IMAGES / image / "Dockerfile").read_text())
    if not match:
        raise AssertionError(f"images/{image}/Dockerfile has no `pip wheel ... .[extras]` line")
    return match.group(1) or ""


def _uv(*args: str) -> None:
    # The machine's CA bundle (SSL_CERT_FILE) and proxies pass through; the cache lives outside the clone.
    # Copies, not hard links: nltk (under llama-index) refuses multiply-linked files.
    env = {**os.environ, "UV_CACHE_DIR": str(CACHE / "uv"), "UV_LINK_MODE": "copy"}
    env.pop("VIRTUAL_ENV", None)
    result = subprocess.run([str(UV), *args], capture_output=True, text=True, env=env, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(f"uv {' '.join(args)} failed:\n{result.stderr[-4000:]}")


class ImageEnv:
    def __init__(self, image: str):
        self.image = image
        self.extras = image_extras(image)
        key = hashlib.sha256(f"{sys.version}{self.extras}{(ROOT / 'pyproject.toml').read_text()}".encode())
        self.root = CACHE / "image-venvs" / f"{image}-{key.hexdigest()[:12]}"
        self.python = str(self.root / "bin" / "python")
        self.llmtwin = str(self.root / "bin" / "llmtwin")

    def build(self) -> ImageEnv:
        stamp = self.root / ".complete"
        if not stamp.exists():
            for stale in self.root.parent.glob(f"{self.image}-*"):  # an earlier dependency set
                shutil.rmtree(stale, ignore_errors=True)
            _uv("venv", "--quiet", "--python", sys.executable, str(self.root))
            _uv("pip", "install", "--quiet", "--python", self.python, f"{ROOT}{self.extras}")
            stamp.touch()
        # The code under test is the checkout's, installed (not linked) as the image installs it.
        _uv(
            "pip",
            "install",
            "--quiet",
            "--python",
            self.python,
            "--no-deps",
            "--reinstall-package",
            "llmtwin",
            str(ROOT),
        )
        return self

    def run(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        """A command of the image (its `llmtwin` entrypoint, or `python ...`), outside the checkout."""
        command = [self.python, *args[1:]] if args and args[0] == "python" else [self.llmtwin, *args]
        return subprocess.run(command, capture_output=True, text=True, cwd=self.root, timeout=600, **kwargs)
