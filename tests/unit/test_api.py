"""The typed API and the CRD generated from it."""

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from llmtwin.api.crd import CRD_FILE, crd_manifest, render_crd_yaml
from llmtwin.api.v1alpha1 import LLMTwin, LLMTwinSpec, duration_seconds

ROOT = Path(__file__).resolve().parents[2]


def example() -> dict:
    return yaml.safe_load((ROOT / "examples/twin.yaml").read_text())


def test_checked_in_crd_matches_the_models():
    assert (ROOT / CRD_FILE).read_text() == render_crd_yaml(), "run `llmtwin crd` and commit the result"


def test_example_validates_and_fills_defaults():
    twin = LLMTwin.model_validate(example())
    assert twin.spec.serving.canary.steps[0].set_weight == 10
    assert twin.spec.drift.for_ == "10m"
    assert twin.collection == "twin_default_demo"
    minimal = LLMTwinSpec.model_validate(
        {"author": {"name": "A"}, "baseModel": {"id": "m"}, "sources": [{"bucket": "docs"}]}
    )
    assert minimal.training.lora.r == 16 and minimal.deletion_policy == "Retain"


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("training", "lora", "r"), -1, "r"),
        (("serving", "engine"), "triton", "engine"),
        (("serving", "canary", "steps"), [{"setWeight": 50}, {"setWeight": 10}], "steps"),
        (("sources",), [], "sources"),
        (("sources",), [{"prefix": "x"}], "bucket"),
        (("vectorStore", "chunkOverlap"), 512, "chunkOverlap"),
        (("serving", "autoscaling"), {"minReplicas": 3, "maxReplicas": 1}, "minReplicas"),
        (("training", "cooldown"), "soon", "cooldown"),
    ],
)
def test_invalid_specs_name_the_field(path, value, field):
    doc = example()
    node = doc["spec"]
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    with pytest.raises(ValidationError) as info:
        LLMTwin.model_validate(doc)
    assert field in str(info.value)


def test_crd_schema_is_structural():
    schema = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

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


def test_durations():
    assert duration_seconds("1h30m") == 5400
    assert duration_seconds("250ms") == 0.25
    with pytest.raises(ValueError):
        duration_seconds("10 minutes")
