"""Real OCI images of the project, built by buildah from their unchanged Dockerfiles (no Docker engine).

`infra/build.sh oci_base` makes the store and its base: a buildah store under CACHE/oci (its storage.conf
says where, and which driver: overlay, or vfs where overlay cannot mount) holding a Debian bookworm
python3.11 committed as docker.io/library/python:3.11-slim, the image the Dockerfiles start FROM (no
registry here serves it). Builds use `--isolation chroot` (no container runtime) and `--pull=never` (no
registry); their RUN steps reach PyPI. Commands run in a container made from the image with `buildah run`,
as the image's user; the containers are removed at the end of the session.

An image is tagged by what it is built from (its Dockerfile, the files it copies, the base), so a
session whose checkout and base are unchanged since the last build reuses that image."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

from tests.harness.kube import CACHE, InfraMissing
from tests.twins import ROOT

OCI = CACHE / "oci"
STORAGE_CONF = OCI / "storage.conf"
BASE = "docker.io/library/python:3.11-slim"
CONTAINER_PREFIX = "llmtwin-test-"
# `COPY src... dest` from the build context (not `--from=stage`): what the image is built from.
COPY_LINE = re.compile(r"^COPY\s+(?!.*--from)(.+)$", re.MULTILINE)


@dataclass(frozen=True)
class ImageConfig:
    entrypoint: list[str]
    cmd: list[str]
    user: str


# buildah's chroot RUN copies its own binary into a sealed memfd first; under load the sealing can fail with
# EBUSY (seen once in a clean-clone CI run, 2026-12-03; the same build passed alone). Only that is retried.
SEALING_RACE = "sealing memfd copy: Device or resource busy"
BUILD_ATTEMPTS = 3


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OciImage:
    """A built image and one container made from it (for `run`)."""

    def __init__(self, builder: OciBuilder, image: str, tag: str):
        self.builder, self.image, self.tag = builder, image, tag
        self.container: str | None = None

    @property
    def config(self) -> ImageConfig:
        inspected = json.loads(self.builder.buildah("inspect", "--type", "image", self.tag).stdout)
        config = inspected["OCIv1"]["config"]
        return ImageConfig(config.get("Entrypoint") or [], config.get("Cmd") or [], config.get("User", ""))

    def run(self, *command: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """`command` inside the image, as its user (a `python ...` command runs the image's python)."""
        if self.container is None:
            name = f"{CONTAINER_PREFIX}{self.image}-{os.getpid()}"
            self.builder.buildah("rm", name, check=False)
            self.builder.buildah("from", "--quiet", "--pull=never", "--name", name, self.tag)
            self.builder.containers.append(name)
            self.container = name
        return self.builder.buildah(
            "run", "--isolation", "chroot", self.container, "--", *command, check=False, timeout=timeout
        )


class OciBuilder:
    """Builds images/<image>/Dockerfile with buildah into the cached store (a harness 'server': `start`
    raises InfraMissing when the store or its base is missing, `stop` removes its containers)."""

    def __init__(self):
        self.containers: list[str] = []
        self.env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(STORAGE_CONF), "BUILDAH_ISOLATION": "chroot"}

    def buildah(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        result = subprocess.run(
            ["buildah", *args], capture_output=True, text=True, env=self.env, timeout=timeout, stdin=subprocess.DEVNULL
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"buildah {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def start(self) -> None:
        unavailable = OCI / "unavailable"
        if unavailable.exists():  # infra/build.sh oci_base could not work here, and said why
            raise InfraMissing(f"no OCI builds: {unavailable.read_text().strip()}")
        if shutil.which("buildah") is None:
            raise InfraMissing("buildah missing: run infra/build.sh debian oci_base (or `make test`)")
        if os.geteuid() != 0:
            raise InfraMissing("buildah's chroot builds need root here")
        if not STORAGE_CONF.exists() or self.buildah("inspect", "--type", "image", BASE, check=False).returncode:
            raise InfraMissing(f"no {BASE} in {OCI}: run infra/build.sh oci_base (or `make test`)")
        for stale in self._containers():  # left by a session that was killed
            pid = stale.rsplit("-", 1)[-1]
            if pid.isdigit() and not _pid_alive(int(pid)):
                self.buildah("rm", stale, check=False)

    def stop(self) -> None:
        for name in self.containers:
            self.buildah("rm", name, check=False)
        self.containers.clear()

    def _containers(self) -> list[str]:
        listed = json.loads(self.buildah("containers", "--json").stdout or "null") or []
        return [c["containername"] for c in listed if c["containername"].startswith(CONTAINER_PREFIX)]

    def key(self, image: str) -> str:
        """What the image is built from: its Dockerfile, the context files it copies, the base image."""
        dockerfile = ROOT / "images" / image / "Dockerfile"
        digest = hashlib.sha256(dockerfile.read_bytes())
        base = json.loads(self.buildah("inspect", "--type", "image", BASE).stdout)["FromImageID"]
        digest.update(base.encode())
        for line in COPY_LINE.findall(dockerfile.read_text()):
            for source in [word for word in line.split()[:-1] if not word.startswith("--")]:
                top = ROOT / source
                files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
                for path in files:  # bytecode is derived from the sources (and rewritten by every run)
                    if "__pycache__" in path.parts or path.suffix == ".pyc":
                        continue
                    digest.update(f"\0{path.relative_to(ROOT)}\0".encode())
                    digest.update(path.read_bytes())
        return digest.hexdigest()[:16]

    def build(self, image: str) -> OciImage:
        """images/<image>/Dockerfile, unchanged, built from the checkout (or the image built from the same inputs)."""
        repository = f"localhost/llmtwin-{image}"
        tag = f"{repository}:{self.key(image)}"
        if self.buildah("inspect", "--type", "image", tag, check=False).returncode != 0:
            for old in json.loads(self.buildah("images", "--json").stdout or "null") or []:  # earlier builds of it
                if any(name.startswith(f"{repository}:") for name in old.get("names") or []):
                    self.buildah("rmi", "--force", old["id"], check=False)
            for _ in range(BUILD_ATTEMPTS):
                result = subprocess.run(
                    ["nice", "-n", "10", "buildah", "build", "--isolation", "chroot", "--pull=never", "--layers=false"]
                    + ["-f", str(ROOT / "images" / image / "Dockerfile"), "-t", tag, str(ROOT)],
                    capture_output=True,
                    text=True,
                    env=self.env,
                    timeout=1800,
                    stdin=subprocess.DEVNULL,
                )
                if result.returncode == 0 or SEALING_RACE not in result.stdout + result.stderr:
                    break
            if result.returncode != 0:
                output = f"{result.stdout[-4000:]}\n{result.stderr[-3000:]}"
                raise AssertionError(f"buildah build of images/{image} failed:\n{output}")
        return OciImage(self, image, tag)
