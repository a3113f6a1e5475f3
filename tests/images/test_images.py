"""Each image holds what it runs: its Dockerfile's exact dependency set, installed into a fresh
virtualenv (tests/harness/images.py; no Docker engine here), starts its entrypoint, and does its job
against the real servers. The operator image runs a `deletionPolicy: Delete` finalizer (it once could
not: the finalizer imported a module that needs llama_index, which the image does not have)."""

from __future__ import annotations

import functools
import io
import json
import signal
import urllib.request

import pytest
import yaml

from llmtwin.api.names import workflow_identity_name
from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.config import PlatformSettings
from llmtwin.corpus.store import ChunkStore, twin_owner
from llmtwin.operator.builders import config_map, workflow_identity
from llmtwin.sources.changes import ObjectChange, encode_changes
from llmtwin.workflows.templates import INGEST_STEP, build_workflow, ingest_template
from tests.harness import free_port, wait_for
from tests.harness.images import ImageEnv
from tests.harness.kubelet import run_container
from tests.harness.operator import OperatorProcess, create_s3_secret, get_json, platform_env
from tests.harness.process import CliProcess
from tests.twins import ROOT, twin_doc

pytestmark = pytest.mark.slow
# image -> (the command its Dockerfile runs, what must NOT be in it)
ENTRYPOINTS = {
    # fastapi comes with mlflow-skinny, the registry client the operator moves aliases with.
    "operator": (["operator", "--help"], ["torch", "llama_index", "transformers"]),
    "gateway": (["gateway", "--help"], ["torch", "llama_index"]),
    "workflows": (["step", "--help"], []),  # also `serve` and `frontdoor`: see below
}


@pytest.fixture(scope="session")
def image_env():
    return functools.cache(lambda image: ImageEnv(image).build())  # one virtualenv per image per session


@pytest.mark.parametrize("image", sorted(ENTRYPOINTS))
def test_each_image_starts_its_entrypoint_and_holds_nothing_it_should_not(image_env, image):
    env = image_env(image)
    command, absent = ENTRYPOINTS[image]
    result = env.run(*command)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Usage" in result.stdout
    # Every module of the image's own components imports with the image's dependencies alone.
    packages = {"operator": "operator", "gateway": "events", "workflows": "workflows"}[image]
    check = (
        "import importlib, pkgutil, llmtwin.{p} as p\n"
        "for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.'): importlib.import_module(m.name)\n"
        "import llmtwin.workflows.ingest, llmtwin.workflows.retrain.train, llmtwin.workflows.retrain.evaluate\n"
        if image == "workflows"
        else "import importlib, pkgutil, llmtwin.{p} as p\n"
        "for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.'): importlib.import_module(m.name)\n"
    ).format(p=packages)
    imported = env.run("python", "-c", check)
    assert imported.returncode == 0, imported.stderr[-3000:]
    for module in absent:
        assert env.run("python", "-c", f"import {module}").returncode != 0, f"{image} image contains {module}"
    if image == "workflows":  # the same image runs the `llmtwin` serving engine and the front door
        for command in (["serve", "--help"], ["frontdoor", "--help"]):
            assert env.run(*command).returncode == 0, command
        serving = "import llmtwin.serving.server, llmtwin.frontdoor.http, gguf, peft"
        assert env.run("python", "-c", serving).returncode == 0


def test_the_operator_image_reconciles_and_runs_a_delete_finalizer(
    image_env, kube_cluster, operator, operator_sa_kubeconfig, kafka_broker, minio_to_kafka, milvus_server, tmp_path
):
    env = image_env("operator")
    namespace = "image-operator"
    kube_cluster.kubectl("create", "namespace", namespace)
    create_s3_secret(kube_cluster, minio_to_kafka, namespace=namespace)
    doc = twin_doc("finalized", namespace, deletionPolicy="Delete", vectorStore={"uri": milvus_server.uri})
    twin = LLMTwin.model_validate(doc)
    ChunkStore(milvus_server.uri, twin.collection, 384, owner=twin_owner(twin))  # as the twin's first ingest makes it
    with operator.paused():  # the session operator must not finalize this twin in its place
        image_operator = OperatorProcess(
            operator_sa_kubeconfig, tmp_path, platform_env(kafka_broker, minio_to_kafka), python=env.python
        )
        image_operator.start()
        try:
            kube_cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
            kube_cluster.kubectl("wait", "llmtwin/finalized", "-n", namespace, "--for=condition=Ready", "--timeout=60s")
            kube_cluster.kubectl("delete", "llmtwin", "finalized", "-n", namespace, "--timeout=60s")
            assert not milvus_server.client().has_collection(twin.collection)
            assert f"dropped Milvus collection {twin.collection}" in image_operator.log_tail(200)
        finally:
            image_operator.kill(signal.SIGTERM)


def test_the_gateway_image_serves_the_webhook_and_metrics(image_env, kube_cluster, kafka_broker, tmp_path):
    env = image_env("gateway")
    kube_cluster.kubectl("apply", "-f", str(ROOT / "manifests/operator/namespace.yaml"))
    kube_cluster.kubectl("apply", "-f", str(ROOT / "manifests/gateway/rbac.yaml"))
    kubeconfig = kube_cluster.service_account_kubeconfig("llmtwin-system", "llmtwin-gateway")
    port = free_port()
    gateway = CliProcess(
        ["gateway", "--port", str(port), "--no-consumers"],
        {"KUBECONFIG": str(kubeconfig), "LLMTWIN_KAFKA_BOOTSTRAP": kafka_broker.bootstrap},
        tmp_path,
        f"http://127.0.0.1:{port}/healthz",
        "gateway-image",
        python=env.python,
    )
    gateway.start()
    try:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/alertmanager", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401  # no token configured: the webhook fails closed
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics/", timeout=10).read().decode()
        assert 'llmtwin_gateway_webhook_requests_total{code="401"} 1.0' in metrics
    finally:
        gateway.kill(signal.SIGTERM)


def test_the_workflows_image_runs_the_ingest_step(image_env, kube_cluster, minio_server, milvus_server, tmp_path):
    """The ingest step from the workflows image, mounted and parametrised as its template says."""
    env = image_env("workflows")
    k = kube_cluster.kubectl
    namespace = "image-workflows"
    k("create", "namespace", namespace)
    create_s3_secret(kube_cluster, minio_server, name="image-s3", namespace=namespace)
    doc = twin_doc("imaged", namespace, vectorStore={"uri": milvus_server.uri})
    doc["spec"]["sources"] = [
        {"bucket": "image-essays", "endpoint": minio_server.endpoint, "credentialsSecretRef": {"name": "image-s3"}}
    ]
    k("apply", "-f", "-", input=yaml.safe_dump(doc))
    twin = LLMTwin.model_validate(get_json(kube_cluster, "llmtwin", "imaged", "-n", namespace))
    template = ingest_template(twin, PlatformSettings())
    children = [*workflow_identity(twin), config_map(twin), template]  # as the operator renders them
    k("apply", "--server-side", "--force-conflicts", "-f", "-", input=yaml.safe_dump_all(children))
    client = minio_server.client()
    if not client.bucket_exists("image-essays"):  # the session operator, if running, wires (creates) it too
        client.make_bucket("image-essays")
    data = (ROOT / "examples/corpus/gulls.md").read_bytes()
    client.put_object("image-essays", "gulls.md", io.BytesIO(data), len(data))

    objects = encode_changes([ObjectChange("image-essays", "gulls.md")])
    workflow = build_workflow(twin, "ingest", {"objects": objects}, "image")
    kubeconfig = kube_cluster.service_account_kubeconfig(namespace, workflow_identity_name(twin.name))
    run = run_container(kube_cluster, template, workflow, INGEST_STEP, tmp_path, kubeconfig, python=env.python)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout.strip().splitlines()[-1])["objects"][0]["outcome"] == "ingested"
    wait_for(lambda: get_json(kube_cluster, "llmtwin", "imaged", "-n", namespace)["status"].get("documents") == 1)
