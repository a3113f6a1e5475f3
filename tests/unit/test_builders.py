"""Pure builders: spec in, Kubernetes objects out (no cluster)."""

import json

from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.config import PlatformSettings as Settings
from llmtwin.operator import builders, serving
from llmtwin.operator.apply import contains
from llmtwin.workflows import templates
from tests.twins import example_twin


def twin(**spec_overrides) -> LLMTwin:
    return example_twin(**spec_overrides)


def by_kind(objs):
    return {(o["kind"], o["metadata"]["name"]): o for o in objs}


def test_children_are_named_labelled_and_namespaced():
    objs = builders.children(twin(), Settings())
    kinds = sorted(k for k, _ in by_kind(objs))
    assert kinds == sorted(
        [
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "ConfigMap",
            "WorkflowTemplate",
            "WorkflowTemplate",
            "Service",
            "Service",
            "AnalysisTemplate",
            "Rollout",
            "Deployment",
            "Service",
            "ServiceMonitor",
            "PodMonitor",
            "PrometheusRule",
        ]
    )
    for obj in objs:
        assert obj["metadata"]["namespace"] == "default"
        assert obj["metadata"]["labels"]["llmtwin.dev/twin"] == "demo"


def test_rendering_is_deterministic():
    assert builders.children(twin(), Settings()) == builders.children(twin(), Settings())


def test_config_map_carries_the_resolved_twin():
    t = twin()
    t.metadata.generation = 3
    t.status.model_version = "5"
    cm = builders.config_map(t)
    resolved = json.loads(cm["data"]["twin.json"])
    assert resolved["spec"]["training"]["lora"]["r"] == 16
    assert resolved["metadata"]["generation"] == 3 and resolved["status"] == {"modelVersion": "5"}
    assert LLMTwin.model_validate(resolved).name == "demo"


def test_rollout_follows_serving_spec():
    t = twin(
        serving={
            "engine": "vllm",
            "replicas": 2,
            "resources": {
                "gpu": 2,
                "nodeSelector": {"gpu": "a100"},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            },
            "canary": {"steps": [{"setWeight": 20, "pause": "1m"}, {"setWeight": 60}]},
        }
    )
    ro = serving.rollout(t, Settings())
    pod = ro["spec"]["template"]["spec"]
    server = pod["containers"][0]
    assert ro["spec"]["replicas"] == 2
    assert server["image"].startswith("vllm/")
    assert server["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pod["nodeSelector"] == {"gpu": "a100"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert ro["spec"]["strategy"]["canary"]["steps"] == [
        {"setWeight": 20},
        {"pause": {"duration": "1m"}},
        {"setWeight": 60},  # no pause given: no pause rendered (`pause: {}` would wait for a human)
    ]
    assert pod["initContainers"] == []  # no production adapter yet: serve the base model


def test_production_adapter_is_fetched_and_served():
    t = twin()
    t.status.model_version = "7"
    ro = serving.rollout(t, Settings())
    pod = ro["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["args"][0] == "version=7"
    assert {"name": "LORA_ADAPTERS", "value": "demo=/adapters/current"} in pod["containers"][0]["env"]
    assert ro["spec"]["template"]["metadata"]["annotations"]["llmtwin.dev/model-version"] == "7"


def test_analysis_and_drift_rule_use_spec_thresholds():
    t = twin(drift={"threshold": 0.5, "for": "2m", "minQuestions": 30})
    rule = builders.prometheus_rule(t)["spec"]["groups"][0]["rules"][0]
    assert rule["expr"] == (
        'llmtwin_drift_score{namespace="default",twin="demo",detector="embedding-centroid"} > 0.5'
        ' and on(namespace, twin) llmtwin_drift_window_questions{namespace="default",twin="demo"} >= 30'
    )
    assert rule["for"] == "120s"
    default = builders.drift_rule(twin(drift={"detector": "mmd"}))
    assert 'detector="mmd"} > 0.06 ' in default["expr"]  # the detector's own default threshold
    assert rule["labels"]["llmtwin_twin"] == "demo"
    metrics = serving.analysis_template(t)["spec"]["metrics"]
    assert metrics[0]["successCondition"] == "len(result) > 0 && !isNaN(result[0]) && result[0] <= 0.05"
    assert metrics[1]["successCondition"] == "len(result) > 0 && !isNaN(result[0]) && result[0] <= 2.0"


def test_each_engine_has_its_image_flags_adapter_wiring_and_metric_names():
    settings = Settings(workflow_image="registry.example/llmtwin/workflows:1.2")
    queried = {}
    for engine in ("tgi", "vllm", "llmtwin"):
        t = twin(serving={"engine": engine})
        t.status.model_version = "4"
        server = serving.rollout(t, settings)["spec"]["template"]["spec"]["containers"][0]
        args = " ".join(server["args"])
        env = {e["name"]: e["value"] for e in server["env"]}
        queries = " ".join(
            m["provider"]["prometheus"]["query"] for m in serving.analysis_template(t)["spec"]["metrics"]
        )
        queried[engine] = queries
        if engine == "tgi":
            assert server["image"].startswith("ghcr.io/huggingface/text-generation-inference")
            assert (
                "--model-id HuggingFaceTB/SmolLM2-135M-Instruct" in args
                and env["LORA_ADAPTERS"] == "demo=/adapters/current"
            )
        elif engine == "vllm":
            assert server["image"].startswith("vllm/") and "--lora-modules demo=/adapters/current" in args
        else:
            assert server["image"] == "registry.example/llmtwin/workflows:1.2"
            assert args.startswith("serve --model HuggingFaceTB/SmolLM2-135M-Instruct --port 8080")
            assert "--adapter demo=/adapters/current" in args
            assert f"--max-new-tokens {t.spec.serving.max_new_tokens}" in args
            assert env["MLFLOW_TRACKING_URI"] == settings.mlflow_tracking_uri and env["LLMTWIN_MODEL_CACHE"]
    # No engine's analysis queries another engine's metrics.
    assert "tgi_" in queried["tgi"] and "vllm:" not in queried["tgi"]
    assert "vllm:" in queried["vllm"] and "tgi_" not in queried["vllm"]
    assert queried["llmtwin"] == queried["tgi"]  # `llmtwin serve` exports TGI's names


def test_the_front_door_asks_the_stable_service_and_is_scraped():
    t = twin()
    objs = {(o["kind"], o["metadata"]["name"]): o for o in serving.serving_children(t, Settings())}
    deployment = objs["Deployment", "demo-frontdoor"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["LLMTWIN_MODEL_SERVER"] == "http://demo-stable.default.svc"
    assert container["args"][0] == "frontdoor" and env["LLMTWIN_TWIN_FILE"] == "/etc/llmtwin/twin.json"
    service = objs["Service", "demo-frontdoor"]
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
    monitor = objs["ServiceMonitor", "demo-frontdoor"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    # Every server pod is scraped with its template hash, which the analysis selects the canary by.
    server_monitor = objs["PodMonitor", "demo-server"]
    rollout = objs["Rollout", "demo-server"]
    assert server_monitor["spec"]["selector"]["matchLabels"] == rollout["spec"]["selector"]["matchLabels"]
    assert server_monitor["spec"]["podTargetLabels"] == ["rollouts-pod-template-hash"]
    pod_ports = rollout["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert server_monitor["spec"]["podMetricsEndpoints"][0]["port"] in {p["name"] for p in pod_ports}
    analysis = objs["AnalysisTemplate", "demo-canary-analysis"]
    queries = [m["provider"]["prometheus"]["query"] for m in analysis["spec"]["metrics"]]
    assert all('rollouts_pod_template_hash="{{args.canary-hash}}"' in q for q in queries)
    assert rollout["spec"]["strategy"]["canary"]["analysis"]["args"] == [
        {"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}}
    ]
    external = twin(serving={"gateway": {"generationEndpoint": "http://tgi.elsewhere:8080"}})
    assert serving.model_server_url(external) == "http://tgi.elsewhere:8080"


def test_contains_ignores_server_added_fields_but_not_changes():
    desired = {"spec": {"ports": [{"port": 80}], "replicas": 1}}
    assert contains({"spec": {"ports": [{"port": 80, "protocol": "TCP"}], "replicas": 1, "x": 1}}, desired)
    assert not contains({"spec": {"ports": [{"port": 81}], "replicas": 1}}, desired)
    assert not contains({"spec": {"ports": [{"port": 80}, {"port": 81}], "replicas": 1}}, desired)
    assert not contains({"spec": {"replicas": True, "ports": [{"port": 80}]}}, desired)
    # An empty list we render is held by a missing field (dropped by a Go round trip), not by a full one.
    emptied = {"spec": {"initContainers": [], "replicas": 1}}
    assert contains({"spec": {"replicas": 1}}, emptied)
    assert not contains({"spec": {"initContainers": [{"name": "fetch-adapter"}], "replicas": 1}}, emptied)


class TestWorkflowIdentity:
    def test_the_workflows_run_as_the_twins_own_account_bound_to_its_own_role(self):
        account, role, binding = builders.workflow_identity(twin())
        assert account["metadata"]["name"] == role["metadata"]["name"] == binding["metadata"]["name"] == "demo-workflow"
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "demo-workflow"}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "demo-workflow", "namespace": "default"}]
        template = templates.ingest_template(twin(), Settings())
        assert template["spec"]["serviceAccountName"] == "demo-workflow"

    def test_the_role_names_this_twin_only(self):
        _, role, _ = builders.workflow_identity(twin())
        rules = {tuple(r["resources"]): r for r in role["rules"]}
        assert set(rules) == {("llmtwins",), ("llmtwins/status",), ("workflowtaskresults",)}  # no Secrets, no pods
        assert rules[("llmtwins",)]["verbs"] == ["get"] and rules[("llmtwins",)]["resourceNames"] == ["demo"]
        assert rules[("llmtwins/status",)]["verbs"] == ["get", "patch"]
        assert rules[("llmtwins/status",)]["resourceNames"] == ["demo"]


class TestAutoscaler:
    def test_off_by_default_the_rollout_has_the_spec_replicas_and_no_hpa(self):
        objs = builders.children(twin(serving={"replicas": 2}), Settings())
        assert not [o for o in objs if o["kind"] == "HorizontalPodAutoscaler"]
        assert next(o for o in objs if o["kind"] == "Rollout")["spec"]["replicas"] == 2

    def test_enabled_an_hpa_scales_the_rollout_on_the_engines_queue_and_owns_the_count(self):
        scaling = {"enabled": True, "minReplicas": 1, "maxReplicas": 4, "targetQueueSize": 2.5}
        for engine, metric in (
            ("tgi", "tgi_queue_size"),
            ("llmtwin", "tgi_queue_size"),
            ("vllm", "vllm_num_requests_waiting"),
        ):
            objs = builders.children(twin(serving={"engine": engine, "autoscaling": scaling}), Settings())
            (hpa,) = [o for o in objs if o["kind"] == "HorizontalPodAutoscaler"]
            rollout = next(o for o in objs if o["kind"] == "Rollout")
            assert hpa["spec"]["scaleTargetRef"] == {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Rollout",
                "name": rollout["metadata"]["name"],
            }
            assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)
            (pods,) = hpa["spec"]["metrics"]
            assert pods["pods"]["metric"]["name"] == metric and pods["pods"]["target"]["averageValue"] == "2.5"
            assert rollout["spec"]["replicas"] == 1  # at creation; then the HPA's count is kept:
            assert builders.kept_live_fields(twin(serving={"autoscaling": scaling}), rollout) == [("spec", "replicas")]
            assert "HorizontalPodAutoscaler" in builders.OPTIONAL_CHILDREN  # deleted when turned off
