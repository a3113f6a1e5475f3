"""The ingest Workflow as the operator renders it, on the real API server: accepted by the real Argo
schemas, and run through a kubelet stand-in (tests/harness/kubelet.py: no container runtime here)
that mounts exactly the ConfigMap and Secrets the template names. A twin with two sources on two real
MinIO servers with different credentials ingests both: each source is read with its own Secret.
Status is written as the twin's workflow ServiceAccount, with the Role the operator renders for it."""

import io
import json

import pytest
import yaml

from llmtwin.api.names import workflow_identity_name
from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.config import PlatformSettings
from llmtwin.operator.builders import config_map, workflow_identity
from llmtwin.sources.changes import ObjectChange, encode_changes
from llmtwin.workflows.templates import INGEST_STEP, build_workflow, ingest_template
from tests.harness.kubelet import run_container
from tests.twins import ROOT, twin_doc

pytestmark = pytest.mark.slow
NAMESPACE = "ingest"


def secret(kube_cluster, name: str, **keys: str) -> None:
    literals = [f"--from-literal={k}={v}" for k, v in keys.items()]
    kube_cluster.kubectl("create", "secret", "generic", name, "-n", NAMESPACE, *literals)


def upload(server, bucket: str, key: str, data: bytes) -> None:
    client = server.client()
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    client.put_object(bucket, key, io.BytesIO(data), len(data))


def test_two_sources_on_two_endpoints_each_ingest_with_their_own_secret(
    kube_cluster, minio_server, second_minio, milvus_server, tmp_path
):
    k = kube_cluster.kubectl
    assert minio_server.secret_key != second_minio.secret_key  # the first server's keys open nothing on the second
    k("create", "namespace", NAMESPACE)
    secret(kube_cluster, "essays-s3", accessKey=minio_server.access_key, secretKey=minio_server.secret_key)
    secret(kube_cluster, "posts-s3", id=second_minio.access_key, key=second_minio.secret_key)
    doc = twin_doc("two-sources", NAMESPACE)
    doc["spec"]["sources"] = [
        {"bucket": "essays", "endpoint": minio_server.endpoint, "credentialsSecretRef": {"name": "essays-s3"}},
        {
            "bucket": "posts",
            "endpoint": second_minio.endpoint,
            "credentialsSecretRef": {"name": "posts-s3", "accessKeyKey": "id", "secretKeyKey": "key"},
        },
    ]
    doc["spec"]["vectorStore"]["uri"] = milvus_server.uri
    k("apply", "-f", "-", input=yaml.safe_dump(doc))
    twin = LLMTwin.model_validate(json.loads(k("get", "llmtwin", "two-sources", "-n", NAMESPACE, "-o", "json").stdout))

    # What the operator applies (the twin's ConfigMap, the ingest template), checked by the real schemas.
    template = ingest_template(twin, PlatformSettings())
    children = [*workflow_identity(twin), config_map(twin), template]  # as the operator renders them
    k("apply", "--server-side", "--force-conflicts", "-f", "-", input=yaml.safe_dump_all(children))
    upload(minio_server, "essays", "walls/harbour walls.pdf", (ROOT / "examples/corpus/harbour-walls.pdf").read_bytes())
    upload(second_minio, "posts", "2026/posts.jsonl", (ROOT / "examples/corpus/posts.jsonl").read_bytes())

    kubeconfig = kube_cluster.service_account_kubeconfig(NAMESPACE, workflow_identity_name(twin.name))
    # One Workflow for both objects (two sources, two endpoints, two Secrets), as the gateway batches them.
    changes = [ObjectChange("essays", "walls/harbour walls.pdf"), ObjectChange("posts", "2026/posts.jsonl")]
    workflow = build_workflow(twin, "ingest", {"objects": encode_changes(changes)}, "both")
    k("create", "-f", "-", input=yaml.safe_dump(workflow))  # the gateway's submission: admitted by Argo's schema
    run = run_container(kube_cluster, template, workflow, INGEST_STEP, tmp_path / "both", kubeconfig)
    assert run.returncode == 0, run.stderr[-3000:]
    outcomes = json.loads(run.stdout.strip().splitlines()[-1])["objects"]
    assert {o["bucket"]: o["outcome"] for o in outcomes} == {"essays": "ingested", "posts": "ingested"}, outcomes

    status = json.loads(k("get", "llmtwin", "two-sources", "-n", NAMESPACE, "-o", "json").stdout)["status"]
    posts = len((ROOT / "examples/corpus/posts.jsonl").read_text().splitlines())  # each post is a document
    assert status["documents"] == 1 + posts and status["chunks"] >= 1 + posts and status["lastIngestion"]
    sources = {
        (r["bucket"], r["key"])
        for r in milvus_server.client().query(
            twin.collection, filter="chunk_index == 0", output_fields=["bucket", "key"]
        )
    }  # noqa: E501
    assert sources == {("essays", "walls/harbour walls.pdf"), ("posts", "2026/posts.jsonl")}

    # A delete event removes the object's chunks (same identity, same mounts).
    second_minio.client().remove_object("posts", "2026/posts.jsonl")
    removal = encode_changes([ObjectChange("posts", "2026/posts.jsonl", "delete")])
    delete = build_workflow(twin, "ingest", {"objects": removal}, "d")
    run = run_container(kube_cluster, template, delete, INGEST_STEP, tmp_path / "delete", kubeconfig)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout.strip().splitlines()[-1])["objects"][0]["outcome"] == "deleted"
    status = json.loads(k("get", "llmtwin", "two-sources", "-n", NAMESPACE, "-o", "json").stdout)["status"]
    assert status["documents"] == 1
