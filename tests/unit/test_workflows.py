"""Hera templates, Workflow submissions, and the local runner executing the same DAG."""

import pytest

from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.config import PlatformSettings as Settings
from llmtwin.config import StepSettings
from llmtwin.models.resolve import ModelResolver
from llmtwin.secrets import SecretFiles
from llmtwin.sources.changes import ObjectChange, decode_changes, encode_changes
from llmtwin.sources.objects import ObjectStores
from llmtwin.workflows import steps, templates
from llmtwin.workflows.runner import LocalRunner, WorkflowFailed
from llmtwin.workflows.status import FileStatusReporter
from llmtwin.workflows.steps import StepContext
from tests.twins import example_twin


@pytest.fixture
def twin() -> LLMTwin:
    return example_twin()


def local_runner(twin: LLMTwin, root) -> LocalRunner:
    secrets = SecretFiles(root / "secrets")
    objects = ObjectStores("http://unused:9000", "unused", secrets, inbox=root / "inbox")
    context = StepContext(
        twin=twin,
        workspace=root,
        settings=Settings(),
        status=FileStatusReporter(root / "status.json"),
        objects=objects,
        models=ModelResolver(root / "models", objects),
        secrets=secrets,
    )
    return LocalRunner(context, root)


@pytest.fixture
def recorded(monkeypatch):
    """Replace the registered steps with recorders (the real ones are tested in their own suites)."""
    calls = []

    def recorder(name, outputs=None, fail=False):
        def fn(context, **params):
            calls.append((name, params, context.workspace))
            if fail:
                raise RuntimeError("boom")
            return outputs or {}

        return fn

    registry = {n: recorder(n) for n in (templates.INGEST_STEP, *templates.RETRAIN_STEPS, templates.RETRAIN_EXIT)}
    registry["retrain-register"] = recorder("retrain-register", {"version": "3", "promoted": "true"})
    monkeypatch.setattr(steps, "registered_steps", lambda: registry)
    return calls, registry, recorder


def test_retrain_template_places_gpu_steps(twin):
    wt = templates.retrain_template(twin, Settings())
    by_name = {t["name"]: t for t in wt["spec"]["templates"]}
    train = by_name["retrain-train"]
    assert train["container"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in by_name["retrain-dataset"]["container"]["resources"]["limits"]
    assert train["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert train["container"]["command"] == ["llmtwin", "step", "retrain-train"]
    register_outputs = [p["name"] for p in by_name["retrain-register"]["outputs"]["parameters"]]
    assert register_outputs == ["version", "promoted", "reason"]


def objects(*keys: str) -> dict[str, str]:
    return {"objects": encode_changes([ObjectChange("essays", key) for key in keys])}


def test_workflow_names_are_deterministic_per_dedupe_key(twin):
    a = templates.build_workflow(twin, "ingest", objects("a.md"), "essays/a.md/etag1")
    b = templates.build_workflow(twin, "ingest", objects("a.md"), "essays/a.md/etag1")
    c = templates.build_workflow(twin, "ingest", objects("a.md"), "essays/a.md/etag2")
    assert a == b and a["metadata"]["name"] != c["metadata"]["name"]
    assert a["spec"]["workflowTemplateRef"] == {"name": "demo-ingest"}
    params = templates.workflow_parameters(a)
    assert params["twin"] == "demo" and decode_changes(params["objects"]) == [ObjectChange("essays", "a.md")]
    with pytest.raises(ValueError, match="unknown"):
        templates.build_workflow(twin, "ingest", {"bukket": "x"}, "k")


def test_local_runner_runs_the_rendered_dag_in_order(twin, tmp_path, recorded):
    calls, _, _ = recorded
    runner = local_runner(twin, tmp_path)
    wf = templates.build_workflow(twin, "retrain", {"event_id": "e1", "reason": "drift"}, "retrain-1")
    result = runner.run(wf)
    assert result.phase == "Succeeded"
    assert [c[0] for c in calls] == [*templates.RETRAIN_STEPS, templates.RETRAIN_EXIT]
    assert all(c[1] == {"twin": "demo", "event_id": "e1", "reason": "drift"} for c in calls[:-1])
    assert calls[-1][1] == {"workflow": wf["metadata"]["name"], "status": "Succeeded"}  # the exit handler
    assert len({c[2] for c in calls}) == 1  # one shared workspace, like the Argo volume
    assert result.outputs["retrain-register"]["version"] == "3"


def test_local_runner_passes_odd_keys_verbatim(twin, tmp_path, recorded):
    calls, _, _ = recorded
    key = 'notes/a=b c %2F ü "quoted" {{braces}}.md'
    local_runner(twin, tmp_path).run(templates.build_workflow(twin, "ingest", objects(key, "b.md"), key))
    assert decode_changes(calls[0][1]["objects"]) == [ObjectChange("essays", key), ObjectChange("essays", "b.md")]


def test_failed_step_stops_the_workflow(twin, tmp_path, recorded):
    calls, registry, recorder = recorded
    registry["retrain-train"] = recorder("retrain-train", fail=True)
    with pytest.raises(WorkflowFailed, match="retrain-train"):
        local_runner(twin, tmp_path).run(templates.build_workflow(twin, "retrain", {}, "r"))
    assert [c[0] for c in calls] == ["retrain-dataset", "retrain-train", templates.RETRAIN_EXIT]
    assert calls[-1][1]["status"] == "Failed"  # the exit handler ran, and knows


def test_each_source_is_read_with_its_own_secret_mounted_where_the_step_looks(twin):
    """Two sources, two Secrets: both are mounted (not only the first source's), under the folder
    `StepSettings.secrets_dir` names, and the platform default covers a source without a ref."""
    t = example_twin(
        sources=[
            {"bucket": "essays"},
            {"bucket": "posts", "endpoint": "http://other:9000", "credentialsSecretRef": {"name": "posts-s3"}},
        ]
    )
    wt = templates.ingest_template(t, Settings(s3_secret="platform-s3"))
    volumes = {v["name"]: v for v in wt["spec"]["volumes"]}
    secrets = {v["secret"]["secretName"]: name for name, v in volumes.items() if "secret" in v}
    assert set(secrets) == {"platform-s3", "posts-s3"}
    container = wt["spec"]["templates"][0]["container"]
    env = {e["name"]: e["value"] for e in container["env"]}
    secrets_dir = env[StepSettings.env_name("secrets_dir")]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert {mounts[volume] for volume in secrets.values()} == {f"{secrets_dir}/platform-s3", f"{secrets_dir}/posts-s3"}
    # What the step reads to find the twin and its workspace is where the template mounts them.
    assert env[StepSettings.env_name("twin_file")].startswith(mounts["twin-config"])
    assert env[StepSettings.env_name("workspace")] == mounts["workspace"]
    assert not any(e.get("valueFrom") for e in container["env"])  # no credential travels as an env value


def test_the_milvus_token_and_ca_secrets_are_mounted_into_the_steps_and_the_front_door():
    """Where `StepSettings.secrets_dir` (and the front door's) looks, one mount per Secret; nothing more in
    the front door, which reads no source."""
    from llmtwin.operator.serving import front_door

    t = example_twin(
        vectorStore={
            "uri": "https://milvus.example:19530",
            "tokenSecretRef": {"name": "milvus-user"},
            "tls": {"caSecretRef": {"name": "milvus-ca"}, "serverName": "milvus.internal"},
        }
    )
    wt = templates.ingest_template(t, Settings(s3_secret="platform-s3"))
    step_mounts = {m["mountPath"] for m in wt["spec"]["templates"][0]["container"]["volumeMounts"]}
    assert {f"{templates.SECRETS_MOUNT}/{s}" for s in ("milvus-user", "milvus-ca", "platform-s3")} <= step_mounts
    pod = front_door(t, Settings(s3_secret="platform-s3"))["spec"]["template"]["spec"]
    assert {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v} == {"milvus-user", "milvus-ca"}
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]} >= {
        f"{env[StepSettings.env_name('secrets_dir')]}/milvus-user",
        f"{env[StepSettings.env_name('secrets_dir')]}/milvus-ca",
    }
    unsecured = front_door(example_twin(), Settings())["spec"]["template"]["spec"]
    assert [v for v in unsecured["volumes"] if "secret" in v] == []
