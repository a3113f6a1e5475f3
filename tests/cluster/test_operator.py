"""The operator against a real API server, real Argo/Rollouts/prometheus-operator CRD schemas, and
the controller-manager's garbage collector (and real MinIO and Kafka: Ready includes the event plane)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time

import pytest
import yaml

from llmtwin.api import names
from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.corpus.store import ChunkStore, milvus_access
from llmtwin.secrets import SecretFiles
from tests.harness import wait_for
from tests.harness.metrics import metric, samples
from tests.harness.milvus_gate import mount_secret, secret_data, secured_vector_store
from tests.harness.operator import RESYNC_SECONDS, create_s3_secret, get_json
from tests.twins import ROOT
from tests.twins import twin_doc as example_doc

CHILD_KINDS = (
    "serviceaccounts",
    "roles.rbac.authorization.k8s.io",
    "rolebindings.rbac.authorization.k8s.io",
    "configmaps",
    "workflowtemplates.argoproj.io",
    "services",
    "analysistemplates.argoproj.io",
    "rollouts.argoproj.io",
    "deployments.apps",
    "servicemonitors.monitoring.coreos.com",
    "podmonitors.monitoring.coreos.com",
    "prometheusrules.monitoring.coreos.com",
)
# Two WorkflowTemplates (ingest, retrain), three Services (stable, canary, front door).
CHILDREN = len(CHILD_KINDS) + 3


def twin_doc(name: str, namespace: str = "default", **spec) -> dict:
    return example_doc(name, namespace, **spec)


def apply(kube_cluster, doc: dict, check: bool = True) -> subprocess.CompletedProcess:
    return kube_cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc), check=check)


def children(kube_cluster, name: str, namespace: str = "default") -> dict[str, dict]:
    found = {}
    for kind in CHILD_KINDS:
        items = get_json(kube_cluster, kind, "-n", namespace, "-l", f"llmtwin.dev/twin={name}")["items"]
        for item in items:
            found[f"{item['kind']}/{item['metadata']['name']}"] = item
    return found


def wait_ready(kube_cluster, name: str, namespace: str = "default", timeout: int = 60) -> None:
    kube_cluster.kubectl("wait", f"llmtwin/{name}", "-n", namespace, "--for=condition=Ready", f"--timeout={timeout}s")


def test_apply_creates_owned_children_and_ready_status(kube_cluster, operator):
    apply(kube_cluster, twin_doc("alpha"))
    wait_ready(kube_cluster, "alpha")
    twin = get_json(kube_cluster, "llmtwin", "alpha")
    objs = children(kube_cluster, "alpha")
    assert sorted(objs) == sorted(twin["status"]["children"])
    assert len(objs) == CHILDREN
    for obj in objs.values():
        (ref,) = obj["metadata"]["ownerReferences"]
        assert ref["uid"] == twin["metadata"]["uid"] and ref["controller"] is True
    assert twin["status"]["phase"] == "Ready"
    assert twin["status"]["observedGeneration"] == twin["metadata"]["generation"]
    table = kube_cluster.kubectl("get", "llmtwins").stdout
    assert table.split()[:6] == ["NAME", "PHASE", "READY", "MODEL", "DOCS", "CHUNKS"]
    assert "alpha" in table and "Ready" in table
    # The API server applied the CRD's defaults to what we did not set.
    assert twin["spec"]["training"]["batchSize"] == 4
    # examples/twin.yaml names no Milvus: its steps are handed the platform's (the operator's settings).
    assert twin["spec"]["vectorStore"].get("uri", "") == ""
    resolved = json.loads(objs[f"ConfigMap/{names.config_map_name('alpha')}"]["data"]["twin.json"])
    assert resolved["spec"]["vectorStore"]["uri"] == operator.env["LLMTWIN_MILVUS_URI"]


def readme_install() -> list[str]:
    """The command lines of the README's "Install into a cluster" block, as a newcomer would paste them."""
    block = re.search(r"## Install into a cluster.*?```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_the_readmes_install_as_written_makes_the_example_twin_ready(kube_cluster, operator, minio_to_kafka):
    """Nothing created by hand: every line of the README's install block runs against the test API server, with
    two substitutions a reader makes too: the `...` of the S3 Secret are the test MinIO's keys, and `edit
    configmap` (interactive) is skipped, the operator (a process here, under the ServiceAccount the manifests
    create; KWOK runs no containers) having the test endpoints in its environment."""
    commands = readme_install()
    assert commands[0] == "kubectl apply --server-side -k manifests/" and commands[-1] == "kubectl get llmtwins"
    for line in commands:
        if " edit " in line:
            continue
        line = line.replace("$(openssl rand -hex 24)", "test-webhook-token")
        line = line.replace("accessKey=...", f"accessKey={minio_to_kafka.access_key}")
        line = line.replace("secretKey=...", f"secretKey={minio_to_kafka.secret_key}")
        args = shlex.split(line)
        assert args[0] == "kubectl", line
        result = kube_cluster.kubectl(*args[1:], check=False)
        # The operator fixture made the platform's S3 Secret already (same name, same keys, as the README says).
        assert result.returncode == 0 or "already exists" in result.stderr, f"{line}\n{result.stderr}"
    twin = get_json(kube_cluster, "llmtwin", "demo")
    assert {c["type"]: c["status"] for c in twin["status"]["conditions"]}["Ready"] == "True"
    assert get_json(kube_cluster, "deployment", "llmtwin-operator", "-n", "llmtwin-system")["spec"]["template"]
    kube_cluster.kubectl("delete", "llmtwin", "demo", "--timeout=90s")


def can(kube_cluster, who: str, *request: str, namespace: str = "default") -> bool:
    """`kubectl auth can-i` as `who`: what the API server's authorizer says, not what a manifest claims."""
    answer = kube_cluster.kubectl("auth", "can-i", *request, "-n", namespace, f"--as={who}", check=False)
    assert answer.stdout.strip() in ("yes", "no"), answer.stderr
    return answer.stdout.strip() == "yes"


def test_a_twins_workflows_run_as_an_identity_that_can_touch_only_that_twin(kube_cluster, operator):
    for name in ("iota", "kappa"):
        apply(kube_cluster, twin_doc(name))
    for name in ("iota", "kappa"):
        wait_ready(kube_cluster, name)
    for kind in ("ingest", "retrain"):
        template = get_json(kube_cluster, "workflowtemplates.argoproj.io", names.workflow_template_name("iota", kind))
        assert template["spec"]["serviceAccountName"] == names.workflow_identity_name("iota")
    step = f"system:serviceaccount:default:{names.workflow_identity_name('iota')}"
    # What its steps do: read the twin, write its status, let Argo's executor record task results.
    assert can(kube_cluster, step, "get", "llmtwins.llmtwin.dev/iota")
    assert can(kube_cluster, step, "patch", "llmtwins.llmtwin.dev/iota", "--subresource=status")
    assert can(kube_cluster, step, "create", "workflowtaskresults.argoproj.io")
    # Nothing else: not the other twin of its namespace, not another namespace, no Secrets, no Workflows.
    assert not can(kube_cluster, step, "patch", "llmtwins.llmtwin.dev/kappa", "--subresource=status")
    assert not can(kube_cluster, step, "get", "llmtwins.llmtwin.dev/kappa")
    assert not can(kube_cluster, step, "list", "llmtwins.llmtwin.dev")
    assert not can(kube_cluster, step, "patch", "llmtwins.llmtwin.dev/iota")  # the spec is the user's
    assert not can(kube_cluster, step, "get", "llmtwins.llmtwin.dev/iota", namespace="kube-system")
    assert not can(kube_cluster, step, "get", "secrets")
    assert not can(kube_cluster, step, "create", "workflows.argoproj.io")


def test_the_operator_cannot_do_what_it_does_not_need(kube_cluster, operator):
    who = "system:serviceaccount:llmtwin-system:llmtwin-operator"
    assert can(kube_cluster, who, "get", "secrets")  # a Secret a twin names, by name
    for request in (
        ("list", "secrets"),
        ("watch", "secrets"),
        ("create", "secrets"),
        ("create", "pods"),
        ("create", "workflows.argoproj.io"),
        ("delete", "llmtwins.llmtwin.dev"),
        ("delete", "configmaps"),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
        ("escalate", "roles.rbac.authorization.k8s.io"),
        ("bind", "clusterroles.rbac.authorization.k8s.io"),
    ):
        assert not can(kube_cluster, who, *request), request


def test_autoscaling_renders_an_hpa_that_scales_the_rollout_and_goes_when_turned_off(
    kube_cluster, operator, rollouts_controller
):
    scaling = {"enabled": True, "minReplicas": 1, "maxReplicas": 3, "targetQueueSize": 2}
    doc = twin_doc("lambda")
    doc["spec"]["serving"]["autoscaling"] = scaling
    apply(kube_cluster, doc)
    wait_ready(kube_cluster, "lambda")
    server = names.server_name("lambda")
    hpa = get_json(kube_cluster, "horizontalpodautoscalers.autoscaling", server)
    assert hpa["metadata"]["ownerReferences"][0]["kind"] == "LLMTwin"

    def conditions() -> dict[str, dict]:
        found = get_json(kube_cluster, "horizontalpodautoscalers.autoscaling", server).get("status", {})
        return {c["type"]: c for c in found.get("conditions", [])}

    # The real HPA controller (kube-controller-manager) reads the Rollout's scale subresource (its selector
    # from the Argo Rollouts controller), and asks the custom metrics API for the engine's queue gauge: not
    # served here (no prometheus-adapter), and it says so.
    def asked_for_the_metric() -> dict | None:
        found = conditions()
        return found if "tgi_queue_size" in found.get("ScalingActive", {}).get("message", "") else None

    seen = wait_for(asked_for_the_metric, 90, what="the HPA asking for tgi_queue_size")
    assert seen["AbleToScale"]["status"] == "True" and seen["ScalingActive"]["status"] == "False", seen
    # A scale decision (the HPA's, made here through the same scale subresource) survives the operator.
    kube_cluster.kubectl("scale", "rollouts.argoproj.io", server, "--replicas=3")
    time.sleep(RESYNC_SECONDS + 3)  # at least one resync of the twin
    assert get_json(kube_cluster, "rollouts.argoproj.io", server)["spec"]["replicas"] == 3

    doc["spec"]["serving"]["autoscaling"] = {"enabled": False}
    doc["spec"]["serving"]["replicas"] = 2
    apply(kube_cluster, doc)
    wait_for(
        lambda: kube_cluster.kubectl("get", "hpa", server, check=False).returncode != 0, 60, what="the HPA deleted"
    )
    wait_for(lambda: get_json(kube_cluster, "rollouts.argoproj.io", server)["spec"].get("replicas") == 2, 30)
    kube_cluster.kubectl("delete", "llmtwin", "lambda", "--wait=false")


def test_spec_edit_updates_children_and_observed_generation(kube_cluster, operator):
    apply(kube_cluster, twin_doc("beta"))
    wait_ready(kube_cluster, "beta")
    apply(kube_cluster, twin_doc("beta", drift={"threshold": 0.8, "window": "1h", "for": "5m"}))
    generation = get_json(kube_cluster, "llmtwin", "beta")["metadata"]["generation"]
    wait_for(
        lambda: get_json(kube_cluster, "llmtwin", "beta")["status"].get("observedGeneration") == generation,
        what="observedGeneration to follow the edit",
    )
    rule = get_json(kube_cluster, "prometheusrule", "beta-drift")
    assert '"} > 0.8 and on(namespace, twin) ' in rule["spec"]["groups"][0]["rules"][0]["expr"]
    assert rule["spec"]["groups"][0]["rules"][0]["for"] == "300s"


def reconciles(operator) -> float:
    return metric(operator.metrics_url, "llmtwin_operator_reconciles_total")


def test_unchanged_twin_reconciles_with_zero_writes(kube_cluster, operator):
    apply(kube_cluster, twin_doc("gamma"))
    wait_ready(kube_cluster, "gamma")
    time.sleep(RESYNC_SECONDS * 1.5)  # let any first-reconcile follow-ups settle

    def versions():
        twin = get_json(kube_cluster, "llmtwin", "gamma")
        objs = children(kube_cluster, "gamma")
        return twin["metadata"]["resourceVersion"], {k: v["metadata"]["resourceVersion"] for k, v in objs.items()}

    before, reconciled = versions(), reconciles(operator)
    writes = metric(operator.metrics_url, "llmtwin_operator_api_writes_total")
    time.sleep(RESYNC_SECONDS * 3)
    # Reconciles did run in between (the resync timer), and none of them wrote anything.
    assert reconciles(operator) >= reconciled + 2
    assert versions() == before
    assert metric(operator.metrics_url, "llmtwin_operator_api_writes_total") == writes


def test_manual_edit_of_a_child_is_reverted(kube_cluster, operator):
    apply(kube_cluster, twin_doc("delta"))
    wait_ready(kube_cluster, "delta")
    original = get_json(kube_cluster, "configmap", "delta-config")["data"]["twin.json"]
    kube_cluster.kubectl("patch", "configmap", "delta-config", "--type=merge", "-p", '{"data":{"twin.json":"{}"}}')
    wait_for(
        lambda: get_json(kube_cluster, "configmap", "delta-config")["data"]["twin.json"] == original,
        what="the operator to restore the twin's resolved config",
    )


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["spec"]["training"]["lora"].update(r=-1), "spec.training.lora.r"),
        (lambda d: d["spec"]["serving"].update(engine="triton"), "spec.serving.engine"),
        (
            lambda d: d["spec"]["serving"]["canary"].update(steps=[{"setWeight": 50}, {"setWeight": 10}]),
            "spec.serving.canary.steps",
        ),
        (lambda d: d["spec"]["sources"][0].pop("bucket"), "spec.sources[0].bucket"),
        (lambda d: d["spec"]["vectorStore"].update(chunkOverlap=512), "spec.vectorStore.chunkOverlap"),
        # A file is Milvus Lite, one machine's: no pod could share it (relative or not).
        (lambda d: d["spec"]["vectorStore"].update(uri=".llmtwin/demo/milvus.db"), "spec.vectorStore.uri"),
        (lambda d: d["spec"]["vectorStore"].update(uri="/data/m.db"), "spec.vectorStore.uri"),
        (
            lambda d: d["spec"]["vectorStore"].update(uri="http://milvus:19530", tls={"serverName": "milvus"}),
            "spec.vectorStore.tls",
        ),
    ],
    ids=[
        "negative-rank",
        "unknown-engine",
        "decreasing-canary",
        "missing-bucket",
        "overlap-too-big",
        "relative-file",
        "absolute-file",
        "tls-over-http",
    ],  # fmt: skip
)
def test_invalid_specs_are_rejected_at_apply_time(kube_cluster, mutate, field):
    doc = twin_doc("invalid")
    mutate(doc)
    result = apply(kube_cluster, doc, check=False)
    assert result.returncode != 0
    assert field in result.stderr, result.stderr
    if field == "spec.vectorStore.uri":
        assert "leave uri empty (the platform's Milvus)" in result.stderr  # says what to do instead
    assert kube_cluster.kubectl("get", "llmtwin", "invalid", check=False).returncode != 0


def test_missing_secret_is_degraded_then_recovers(kube_cluster, operator, minio_to_kafka):
    doc = twin_doc("epsilon")
    doc["spec"]["sources"] = [
        {
            "bucket": "essays",
            "endpoint": minio_to_kafka.endpoint,
            "credentialsSecretRef": {"name": "epsilon-s3"},
        }
    ]
    apply(kube_cluster, doc)
    kube_cluster.kubectl("wait", "llmtwin/epsilon", "--for=condition=Degraded", "--timeout=60s")
    twin = get_json(kube_cluster, "llmtwin", "epsilon")
    degraded = next(c for c in twin["status"]["conditions"] if c["type"] == "Degraded")
    assert "credentialsSecretRef" in degraded["message"] and "epsilon-s3" in degraded["message"]
    assert twin["status"]["phase"] == "Degraded"
    time.sleep(RESYNC_SECONDS * 3)  # resyncs of the same problem post nothing more

    def events(reason: str) -> list[dict]:
        items = get_json(kube_cluster, "events", "--field-selector", "involvedObject.name=epsilon")["items"]
        return [e for e in items if e["reason"] == reason]

    (warning,) = events("SecretMissing")
    assert warning["type"] == "Warning" and warning.get("count", 1) == 1 and "epsilon-s3" in warning["message"]
    create_s3_secret(kube_cluster, minio_to_kafka, "epsilon-s3")
    wait_ready(kube_cluster, "epsilon")  # the resync timer notices the Secret
    wait_for(lambda: events("Reconciled"), timeout=10, what="a Normal event on becoming Ready")


def test_delete_runs_finalizer_and_collects_children(kube_cluster, operator):
    apply(kube_cluster, twin_doc("zeta"))
    wait_ready(kube_cluster, "zeta")
    twin = get_json(kube_cluster, "llmtwin", "zeta")
    assert "llmtwin.dev/finalizer" in twin["metadata"]["finalizers"]
    kube_cluster.kubectl("delete", "llmtwin", "zeta", "--timeout=60s")
    wait_for(lambda: not children(kube_cluster, "zeta"), timeout=90, what="garbage collection of children")


def test_the_latest_retrain_decision_is_exported_from_status_and_dropped_with_the_twin(kube_cluster, operator):
    """What the dashboard's retrain panel reads: the gateway and the retrain steps write
    status.lastTraining; the operator turns it into llmtwin_twin_last_retrain{decision}."""

    def decisions() -> dict[str, float]:
        found = samples(operator.metrics_url)
        return {
            labels["decision"]: value
            for name, labels, value in found
            if name == names.RETRAIN_DECISION_METRIC and labels["twin"] == "theta"
        }

    def record(last_training: dict) -> None:
        patch = json.dumps({"status": {"lastTraining": last_training}})
        kube_cluster.kubectl("patch", "llmtwin", "theta", "--subresource=status", "--type=merge", "-p", patch)

    apply(kube_cluster, twin_doc("theta"))
    wait_ready(kube_cluster, "theta")
    assert decisions() == {}  # never retrained: no series
    record({"episode": "e@1", "workflow": "theta-retrain-1", "startedAt": "2026-12-02T03:00:00Z"})
    wait_for(lambda: decisions().get("running") == 1, timeout=20, what="the running retrain")
    assert decisions() == {"running": 1, "failed": 0, "promoted": 0, "rejected": 0}
    assert metric(operator.metrics_url, names.RETRAIN_TIMESTAMP_METRIC, twin="theta") == 1796180400
    # The register step: a version that scored worse than production.
    record({"finishedAt": "2026-12-02T03:10:00Z", "result": "Succeeded", "version": "4", "promoted": False})
    wait_for(lambda: decisions().get("rejected") == 1, timeout=20, what="the rejected version")
    assert decisions() == {"running": 0, "failed": 0, "promoted": 0, "rejected": 1}
    assert metric(operator.metrics_url, names.RETRAIN_TIMESTAMP_METRIC, twin="theta") == 1796181000
    kube_cluster.kubectl("delete", "llmtwin", "theta", "--timeout=60s")
    wait_for(lambda: decisions() == {}, timeout=20, what="the deleted twin's series to go")


def test_operator_killed_mid_reconcile_converges_without_duplicates(kube_cluster, operator):
    twins = [f"crash-{i}" for i in range(12)]
    writes = metric(operator.metrics_url, "llmtwin_operator_api_writes_total")
    kube_cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([twin_doc(n) for n in twins]))
    # SIGKILL as soon as the operator has started writing the new twins' children.
    wait_for(
        lambda: metric(operator.metrics_url, "llmtwin_operator_api_writes_total") > writes,
        timeout=30,
        interval=0.02,
        what="the first child write",
    )
    operator.kill()
    ready = [n for n in twins if get_json(kube_cluster, "llmtwin", n).get("status", {}).get("phase") == "Ready"]
    assert len(ready) < len(twins), "every reconcile had finished: the kill did not interrupt one"
    operator.start()
    for name in twins:
        wait_ready(kube_cluster, name, timeout=90)
        objs = children(kube_cluster, name)
        assert len(objs) == CHILDREN, sorted(objs)
        twin = get_json(kube_cluster, "llmtwin", name)
        assert all(o["metadata"]["ownerReferences"][0]["uid"] == twin["metadata"]["uid"] for o in objs.values())


@pytest.mark.parametrize("engine", ["tgi", "vllm", "llmtwin"])
def test_rendered_children_pass_the_real_crd_schemas_with_the_server(kube_cluster, tmp_path, engine):
    """`llmtwin render` output, for each engine, is accepted by server-side dry-run (Argo Rollouts,
    Argo Workflows, prometheus-operator schemas), with a production adapter to wire in."""
    doc = twin_doc("render-check", serving={"engine": engine})
    doc["status"] = {"modelVersion": "3"}
    (tmp_path / "twin.yaml").write_text(yaml.safe_dump(doc))
    rendered = subprocess.run(
        [sys.executable, "-m", "llmtwin.cli", "render", "-f", str(tmp_path / "twin.yaml")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = kube_cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered)
    assert result.stdout.count("(server dry run)") == CHILDREN


def test_a_twin_naming_another_twins_collection_is_degraded_and_cannot_drop_it(
    kube_cluster, operator, milvus_server, minio_to_kafka
):
    # eta names no Milvus (the platform's: the operator's LLMTWIN_MILVUS_URI) and no collection (derived).
    ChunkStore(milvus_server.uri, "twin_default_eta", 384, owner="default/eta")  # as eta's first ingest creates it
    apply(kube_cluster, twin_doc("eta", deletionPolicy="Delete"))
    wait_ready(kube_cluster, "eta")
    kube_cluster.kubectl("create", "namespace", "tenant-b", check=False)
    create_s3_secret(kube_cluster, minio_to_kafka, namespace="tenant-b")
    intruder = twin_doc("theta", "tenant-b", deletionPolicy="Delete", vectorStore={"collection": "twin_default_eta"})
    apply(kube_cluster, intruder)
    kube_cluster.kubectl(
        "wait", "llmtwin/theta", "-n", "tenant-b", "--for=condition=Degraded", "--timeout=60s"
    )  # fmt: skip
    (degraded,) = [c for c in get_json(kube_cluster, "llmtwin", "theta", "-n", "tenant-b")["status"]["conditions"]
                   if c["type"] == "Degraded"]  # fmt: skip
    assert degraded["reason"] == "CollectionTaken" and "belongs to LLMTwin default/eta" in degraded["message"]
    assert not children(kube_cluster, "theta", "tenant-b")  # no Workflows could run against eta's chunks
    kube_cluster.kubectl("delete", "llmtwin", "theta", "-n", "tenant-b", "--timeout=90s")
    assert milvus_server.client().has_collection("twin_default_eta")  # theta's Delete policy did not reach it
    assert "kept Milvus collection twin_default_eta: it is not this twin's (default/eta)" in operator.log_tail(400)
    kube_cluster.kubectl("delete", "llmtwin", "eta", "--timeout=90s")
    assert not milvus_server.client().has_collection("twin_default_eta")  # its own: dropped
    assert "dropped Milvus collection twin_default_eta" in operator.log_tail(400)


def test_a_twin_whose_milvus_wants_tls_and_a_token_waits_for_the_secret_mounts_it_and_drops_through_it(
    kube_cluster, operator, milvus_server, milvus_gate, tmp_path
):
    """The Secret the spec names is read by name in the twin's namespace (the operator: reconcile and
    finalizer), mounted into the steps and the front door; the gate is the stand-in for a Milvus server's
    TLS and authentication."""
    doc = twin_doc("iota", deletionPolicy="Delete", vectorStore=secured_vector_store(milvus_gate, "iota-milvus"))
    apply(kube_cluster, doc)
    kube_cluster.kubectl("wait", "llmtwin/iota", "--for=condition=Degraded", "--timeout=60s")
    (degraded,) = [
        c for c in get_json(kube_cluster, "llmtwin", "iota")["status"]["conditions"] if c["type"] == "Degraded"
    ]
    assert degraded["reason"] == "SecretMissing" and "spec.vectorStore" in degraded["message"]
    assert "default/iota-milvus" in degraded["message"]

    literals = [f"--from-literal={key}={value}" for key, value in secret_data(milvus_gate).items()]
    kube_cluster.kubectl("create", "secret", "generic", "iota-milvus", *literals)
    wait_ready(kube_cluster, "iota")
    front_door = get_json(kube_cluster, "deployment", names.front_door_name("iota"))["spec"]["template"]["spec"]
    ingest = get_json(kube_cluster, "workflowtemplate", names.workflow_template_name("iota", "ingest"))["spec"]
    mounted = {
        kind: {v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
        for kind, spec in (("frontdoor", front_door), ("ingest", ingest))
    }
    assert "iota-milvus" in mounted["frontdoor"] and "iota-milvus" in mounted["ingest"]

    twin = LLMTwin.model_validate(get_json(kube_cluster, "llmtwin", "iota"))
    access = milvus_access(twin, SecretFiles(mount_secret(tmp_path, milvus_gate, "iota-milvus")))
    ChunkStore(access, twin.collection, 384, owner="default/iota").client.close()  # as its first ingest makes it
    forwarded = milvus_gate.forwarded
    kube_cluster.kubectl("delete", "llmtwin", "iota", "--timeout=90s")
    assert not milvus_server.client().has_collection(twin.collection)  # dropped, through the gate
    assert milvus_gate.forwarded > forwarded
    assert f"dropped Milvus collection {twin.collection}" in operator.log_tail(400)


@pytest.mark.parametrize(
    ("field", "value"),
    [("embeddingModel", "BAAI/bge-small-en-v1.5"), ("dimension", 768), ("metric", "IP"), ("collection", "other")],
)
def test_fields_that_define_the_collection_cannot_change(kube_cluster, field, value):
    """Changing them after creation would leave the stored chunks unreadable or orphaned: the API
    server refuses the update and names the field (a CEL transition rule from the typed model)."""
    name = f"fixed-{field.lower()}"
    apply(kube_cluster, twin_doc(name))
    edited = twin_doc(name)
    edited["spec"]["vectorStore"][field] = value
    result = apply(kube_cluster, edited, check=False)
    assert result.returncode != 0
    assert f"spec.vectorStore.{field}" in result.stderr and "immutable" in result.stderr, result.stderr
    live = get_json(kube_cluster, "llmtwin", name)["spec"]["vectorStore"]
    assert live.get(field) != value
    # Everything else stays editable.
    edited = twin_doc(name)
    edited["spec"]["vectorStore"]["chunkSize"] = 512
    apply(kube_cluster, edited)
    kube_cluster.kubectl("delete", "llmtwin", name, "--wait=false")
