"""The typed API, its validation, names and conditions, and the CRD generated from it."""

import json

import pytest
import yaml
from pydantic import ValidationError

from llmtwin.api.conditions import ConditionType, Reason, find_condition, set_condition
from llmtwin.api.crd import CRD_FILE, crd_manifest, render_crd_yaml
from llmtwin.api.v1alpha1 import IMMUTABLE_VECTOR_STORE_FIELDS, LLMTwin, LLMTwinSpec, duration_seconds
from llmtwin.api.validation import ModelFacts, spec_problems, training_problems
from tests.twins import ROOT, example_twin, twin_doc


def crd_schema() -> dict:
    return crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_checked_in_crd_matches_the_models():
    assert (ROOT / CRD_FILE).read_text() == render_crd_yaml(), "run `llmtwin crd` and commit the result"


def test_checked_in_dashboard_matches_the_code():
    from llmtwin.api.dashboard import SIDECAR_LABEL, config_map_yaml

    shipped = ROOT / "manifests/grafana/dashboard.yaml"
    assert shipped.read_text() == config_map_yaml(), "run `llmtwin dashboard` and commit the result"
    config_map = yaml.safe_load(shipped.read_text())
    assert config_map["metadata"]["labels"][SIDECAR_LABEL] == "1"  # what Grafana's sidecar looks for
    dashboard = json.loads(config_map["data"]["llmtwin-twins.json"])
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource", "namespace", "twin"}
    assert all(target["expr"] for panel in dashboard["panels"] for target in panel["targets"])


def test_example_validates_and_fills_defaults():
    twin = example_twin()
    assert twin.spec.serving.canary.steps[0].set_weight == 10
    assert twin.spec.drift.for_ == "10m"
    assert twin.collection == "twin_default_demo"
    minimal = LLMTwinSpec.model_validate(
        {"author": {"name": "A"}, "baseModel": {"id": "m"}, "sources": [{"bucket": "docs"}]}
    )
    assert minimal.training.lora.r == 16 and minimal.deletion_policy == "Retain"


@pytest.mark.parametrize(
    ("path", "value", "location"),
    [
        (("training", "lora", "r"), -1, "spec.training.lora.r"),
        (("serving", "engine"), "triton", "spec.serving.engine"),
        (("serving", "canary", "steps"), [{"setWeight": 50}, {"setWeight": 10}], "spec.serving.canary.steps"),
        (("sources",), [], "spec.sources"),
        (("sources",), [{"prefix": "x"}], "spec.sources.0.bucket"),
        (("vectorStore", "chunkOverlap"), 512, "spec.vectorStore"),
        (("vectorStore",), {"uri": "twin.db", "indexType": "HNSW"}, "spec.vectorStore"),  # Milvus Lite has no HNSW
        (("vectorStore",), {"uri": "data/my twin.db"}, "spec.vectorStore"),  # Milvus Lite refuses the name
        (("vectorStore",), {"uri": "twin.db", "tokenSecretRef": {"name": "m"}}, "spec.vectorStore"),  # no auth in Lite
        (("vectorStore",), {"uri": "http://milvus:19530", "tls": {}}, "spec.vectorStore"),  # http:// says no TLS
        (("vectorStore", "tokenSecretRef"), {"name": "m", "key": "a/b"}, "spec.vectorStore.tokenSecretRef.key"),
        (("serving", "autoscaling"), {"minReplicas": 3, "maxReplicas": 1}, "spec.serving.autoscaling"),
        (("serving", "autoscaling"), {"enabled": True, "minReplicas": 0}, "spec.serving.autoscaling"),  # HPA min 1
        (("training", "cooldown"), "soon", "spec.training.cooldown"),
        (("training", "dataset"), {"minChars": 500, "maxChars": 100}, "spec.training.dataset"),
    ],
)
def test_invalid_specs_name_the_field(path, value, location):
    doc = twin_doc()
    node = doc["spec"]
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    with pytest.raises(ValidationError) as info:
        LLMTwin.model_validate(doc)
    locations = {".".join(str(p) for p in error["loc"]) for error in info.value.errors()}
    assert location in locations, locations


def test_crd_schema_is_structural():
    schema = crd_schema()

    def walk(node, where="root"):
        assert "$ref" not in node and "anyOf" not in node, where
        assert node.get("additionalProperties") is not False, where
        if "type" not in node and "x-kubernetes-preserve-unknown-fields" not in node:
            raise AssertionError(f"{where} has no type")
        for key, sub in node.get("properties", {}).items():
            walk(sub, f"{where}.{key}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{where}[]")

    walk(schema)
    spec = schema["properties"]["spec"]
    assert spec["required"] == ["author", "baseModel", "sources"]
    canary = spec["properties"]["serving"]["properties"]["canary"]
    assert any("setWeight" in rule["rule"] for rule in canary["x-kubernetes-validations"])
    lora_r = spec["properties"]["training"]["properties"]["lora"]["properties"]["r"]
    assert lora_r["minimum"] == 1 and lora_r["default"] == 16


def test_every_field_of_the_crd_has_a_description():
    """`kubectl explain llmtwin.spec.<anything>` has something to say."""
    missing = []

    def walk(node, where):
        for key, sub in node.get("properties", {}).items():
            if not sub.get("description", "").strip():
                missing.append(f"{where}.{key}")
            walk(sub, f"{where}.{key}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{where}[]")

    walk(crd_schema(), "")
    assert missing == [".metadata"]  # the API server forbids describing it (it is implicitly specified)


def test_fields_that_define_the_collection_carry_transition_rules():
    rules = crd_schema()["properties"]["spec"]["properties"]["vectorStore"]["x-kubernetes-validations"]
    transition = {r["fieldPath"]: r["rule"] for r in rules if "oldSelf" in r["rule"]}
    assert set(transition) == {f".{f}" for f in IMMUTABLE_VECTOR_STORE_FIELDS}
    assert {"collection", "embeddingModel", "dimension", "metric"} <= set(IMMUTABLE_VECTOR_STORE_FIELDS)
    # The optional one also may not appear or disappear (that changes the derived name).
    assert "has(oldSelf.collection)" in transition[".collection"]


def test_spec_problems_name_their_field():
    bad = example_twin(
        sources=[{"bucket": "essays"}, {"bucket": "essays"}],
        serving={"replicas": 5, "maxInputTokens": 4096, "maxTotalTokens": 1024},
    )
    assert {p.field for p in spec_problems(bad)} == {"spec.sources[1]", "spec.serving.maxInputTokens"}
    assert spec_problems(example_twin()) == []
    crowded = example_twin(vectorStore={"chunkSize": 1024, "chunkOverlap": 32}, serving={"maxInputTokens": 2048})
    assert [p.field for p in spec_problems(crowded)] == ["spec.serving.gateway.topK"]
    # One bucket name on two endpoints is two buckets.
    two_endpoints = example_twin(
        sources=[
            {"bucket": "essays"},
            {"bucket": "essays", "endpoint": "http://b:9000", "credentialsSecretRef": {"name": "b"}},
        ]
    )
    assert spec_problems(two_endpoints) == []


def test_training_problems_compare_the_spec_with_the_model():
    twin = example_twin(training={"lora": {"targetModules": ["q_proj", "w_pack"]}, "maxSeqLength": 4096})
    facts = ModelFacts(linear_modules=frozenset({"q_proj", "v_proj"}), context_length=2048)
    problems = {p.field: p.message for p in training_problems(twin, facts)}
    assert "w_pack" in problems["spec.training.lora.targetModules"]
    assert "2048" in problems["spec.training.maxSeqLength"]
    fits = ModelFacts(linear_modules=frozenset({"q_proj", "w_pack"}), context_length=8192)
    assert training_problems(twin, fits) == []


def test_conditions_move_their_transition_time_only_on_a_status_change():
    ticks = iter(["t1", "t2", "t3"])
    clock = lambda: next(ticks)  # noqa: E731
    conditions = set_condition([], ConditionType.READY, "False", Reason.STORAGE_NOT_READY, "waiting", clock=clock)
    conditions = set_condition(conditions, ConditionType.READY, "False", Reason.DEGRADED, "other", clock=clock)
    assert find_condition(conditions, "Ready")["lastTransitionTime"] == "t1"
    conditions = set_condition(conditions, ConditionType.READY, "True", Reason.RECONCILED, clock=clock)
    ready = find_condition(conditions, "Ready")
    assert (ready["lastTransitionTime"], ready["reason"]) == ("t2", "Reconciled")


def test_durations():
    assert duration_seconds("1h30m") == 5400
    assert duration_seconds("250ms") == 0.25
    with pytest.raises(ValueError):
        duration_seconds("10 minutes")
