"""On the real API server with real MinIO: the ingest Workflow the operator's template defines is
accepted by the real Argo CRD schema, and running it with the local runner (the stand-in for the
Argo controller, which needs a kubelet) ingests from MinIO into Milvus and updates the twin's status
as the workflow ServiceAccount, under manifests/operator/workflow-rbac.yaml."""

import io
import json
from pathlib import Path

import pytest
import yaml

from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.operator.builders import children
from llmtwin.settings import Settings
from llmtwin.workflows.runner import LocalRunner
from llmtwin.workflows.templates import build_workflow

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]


def test_ingest_workflow_from_minio_updates_twin_status(kube_cluster, minio_server, tmp_path, monkeypatch):
    k = kube_cluster.kubectl
    k("apply", "-f", str(ROOT / "manifests/operator/workflow-rbac.yaml"))
    k(
        "create",
        "secret",
        "generic",
        "wf-s3",
        f"--from-literal=accessKey={minio_server.access_key}",
        f"--from-literal=secretKey={minio_server.secret_key}",
    )
    doc = yaml.safe_load((ROOT / "examples/twin.yaml").read_text())
    doc["metadata"] = {"name": "wf-twin", "namespace": "default"}
    doc["spec"]["sources"] = [
        {"bucket": "essays", "endpoint": minio_server.endpoint, "credentialsSecretRef": {"name": "wf-s3"}}
    ]
    doc["spec"]["vectorStore"]["uri"] = str(tmp_path / "milvus.db")
    k("apply", "-f", "-", input=yaml.safe_dump(doc))
    twin = LLMTwin.model_validate(json.loads(k("get", "llmtwin", "wf-twin", "-o", "json").stdout))

    # What the operator installs and what the gateway submits: accepted by the real Argo schemas.
    # (A dry run: when the session's operator runs, it owns the live templates of this twin.)
    templates = [o for o in children(twin, Settings()) if o["kind"] == "WorkflowTemplate"]
    k("apply", "--server-side", "--dry-run=server", "--force-conflicts", "-f", "-", input=yaml.safe_dump_all(templates))
    put = build_workflow(
        twin, "ingest", {"bucket": "essays", "key": "walls/harbour walls.pdf", "event_type": "put"}, "p1"
    )
    k("create", "-f", "-", input=yaml.safe_dump(put))

    minio = minio_server.client()
    if not minio.bucket_exists("essays"):  # the operator may have created it already
        minio.make_bucket("essays")
    data = (ROOT / "examples/corpus/harbour-walls.pdf").read_bytes()
    minio.put_object("essays", "walls/harbour walls.pdf", io.BytesIO(data), len(data))

    k("create", "serviceaccount", "llmtwin-workflow")
    k(
        "create",
        "rolebinding",
        "llmtwin-workflow",
        "--clusterrole=llmtwin-workflow",
        "--serviceaccount=default:llmtwin-workflow",
    )
    monkeypatch.setenv("KUBECONFIG", str(kube_cluster.service_account_kubeconfig("default", "llmtwin-workflow")))
    monkeypatch.setenv("LLMTWIN_STATUS_SINK", "kubernetes")
    monkeypatch.setenv("LLMTWIN_S3_ACCESS_KEY", minio_server.access_key)
    monkeypatch.setenv("LLMTWIN_S3_SECRET_KEY", minio_server.secret_key)
    monkeypatch.delenv("LLMTWIN_INBOX", raising=False)

    runner = LocalRunner(twin, tmp_path / "workspaces")
    result = runner.run(put)
    assert result.outputs["ingest-object"]["outcome"] == "ingested"
    status = json.loads(k("get", "llmtwin", "wf-twin", "-o", "json").stdout)["status"]
    assert status["documents"] == 1 and status["chunks"] >= 1 and status["lastIngestion"]

    minio.remove_object("essays", "walls/harbour walls.pdf")
    delete = build_workflow(
        twin, "ingest", {"bucket": "essays", "key": "walls/harbour walls.pdf", "event_type": "delete"}, "d1"
    )
    assert runner.run(delete).outputs["ingest-object"]["outcome"] == "deleted"
    status = json.loads(k("get", "llmtwin", "wf-twin", "-o", "json").stdout)["status"]
    assert status["documents"] == 0 and status["chunks"] == 0
