"""The operator and gateway images built for real: buildah builds each from its unchanged Dockerfile
(chroot isolation, no Docker engine, no registry: the base is infra/build.sh oci_base's stand-in for
python:3.11-slim), and the image's own config, entrypoint and contents are checked inside it.

The workflows image (torch and the CUDA wheels: a ~6.5 GB environment) is not built here; it is
emulated only, by the virtualenv tests in test_images.py, like these two images as well."""

from __future__ import annotations

import functools

import pytest

from tests.harness.kube import server_fixture
from tests.harness.oci import OciBuilder
from tests.images.test_images import ENTRYPOINTS

pytestmark = [pytest.mark.slow, pytest.mark.oci]
# image -> the llmtwin package of its own components (as test_images.py checks them)
PACKAGES = {"operator": "operator", "gateway": "events"}
IMPORT_ALL = (
    "import importlib, pkgutil, llmtwin.{p} as p\n"
    "for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.'): importlib.import_module(m.name)\n"
)
PRESENT = "import importlib.util, sys\nprint(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m)))"


@pytest.fixture(scope="session")
def oci_builder():
    yield from server_fixture(OciBuilder())


@pytest.fixture(scope="session")
def oci_image(oci_builder):
    return functools.cache(oci_builder.build)  # one build per image per session (none when its inputs are unchanged)


@pytest.mark.parametrize("image", sorted(PACKAGES))
def test_the_image_built_from_its_dockerfile_starts_its_entrypoint_and_holds_nothing_it_should_not(oci_image, image):
    built = oci_image(image)
    command, absent = ENTRYPOINTS[image]
    config = built.config
    assert (config.entrypoint, config.cmd, config.user) == (["llmtwin"], [image], "10001")

    # The image's own ENTRYPOINT + CMD, as a container runtime would start it, with --help.
    started = built.run(*config.entrypoint, *config.cmd, *command[1:])
    assert started.returncode == 0, started.stderr[-3000:]
    assert f"Usage: llmtwin {command[0]}" in started.stdout
    assert built.run("id", "-u").stdout.strip() == "10001"  # not root

    # Every module of the image's own components imports with what the image installed.
    imported = built.run("python", "-c", IMPORT_ALL.format(p=PACKAGES[image]))
    assert imported.returncode == 0, imported.stderr[-3000:]
    present = built.run("python", "-c", PRESENT, *absent)
    assert present.returncode == 0, present.stderr[-3000:]
    assert present.stdout.split() == [], f"the {image} image contains {present.stdout.strip()}"
