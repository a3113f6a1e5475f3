"""Generate the LLMTwin CustomResourceDefinition from the typed models.

Pydantic emits JSON Schema 2020-12; a CRD wants a *structural* OpenAPI v3.0 schema. The conversion
inlines `$ref`s, turns `Optional[X]` into a non-required X, rewrites numeric exclusive bounds to the
v3.0 boolean form, copies defaults (including those from default factories, so the API server
fills them in), and keeps `x-kubernetes-validations` (CEL) declared on the models.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from llmtwin.api import v1alpha1 as api

CRD_FILE = "manifests/crds/llmtwin.dev_llmtwins.yaml"
_DROP_KEYS = {"title", "$defs"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, defs)
    node = {k: _resolve(v, defs) for k, v in node.items() if k not in _DROP_KEYS}
    # Optional[X] -> X: absence, not null, means "unset" in a Kubernetes object.
    any_of = node.get("anyOf")
    if any_of and any(branch.get("type") == "null" for branch in any_of):
        rest = [branch for branch in any_of if branch.get("type") != "null"]
        node.pop("anyOf")
        if len(rest) == 1:
            node = {**rest[0], **node}
        else:
            node["anyOf"] = rest
        if node.get("default") is None:
            node.pop("default", None)
    # Structural schemas forbid `additionalProperties: false`; unknown fields are pruned (and
    # rejected by `kubectl apply`'s strict field validation) instead.
    if node.get("additionalProperties") is False:
        node.pop("additionalProperties")
    if "const" in node:
        node["enum"] = [node.pop("const")]
        node.setdefault("type", "string")
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if bound in node and not isinstance(node[bound], bool):
            node[plain] = node.pop(bound)
            node[bound] = True
    return node


def _factory_defaults(model: type[BaseModel], schema: dict[str, Any]) -> None:
    """Add `default` for fields built by default factories (pydantic leaves them out of the schema)."""
    props = schema.get("properties", {})
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key not in props:
            continue
        sub_model = _field_model(field)
        if sub_model is not None:
            _factory_defaults(sub_model, props[key])
        item_model = _list_item_model(field)
        if item_model is not None and "items" in props[key]:
            _factory_defaults(item_model, props[key]["items"])
        if field.default_factory is not None:
            value = field.default_factory()
            if isinstance(value, BaseModel):
                props[key]["default"] = value.wire()
            elif isinstance(value, list):
                props[key]["default"] = [v.wire() if isinstance(v, api.ApiModel) else v for v in value]
            else:
                props[key]["default"] = value


def _field_model(field: FieldInfo) -> type[BaseModel] | None:
    for candidate in (field.annotation, *getattr(field.annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _list_item_model(field: FieldInfo) -> type[BaseModel] | None:
    args = getattr(field.annotation, "__args__", ())
    if getattr(field.annotation, "__origin__", None) is list and args:
        item = args[0]
        if isinstance(item, type) and issubclass(item, BaseModel):
            return item
    return None


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema = _resolve(raw, raw.get("$defs", {}))
    _factory_defaults(model, schema)
    return schema


def crd_manifest() -> dict[str, Any]:
    spec_schema = openapi_schema(api.LLMTwinSpec)
    status_schema = openapi_schema(api.LLMTwinStatus)
    ready = '.status.conditions[?(@.type=="Ready")].status'
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{api.PLURAL}.{api.GROUP}",
            "labels": {"app.kubernetes.io/part-of": "llmtwin"},
        },
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": api.KIND,
                "listKind": f"{api.KIND}List",
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": api.SHORT_NAMES,
                "categories": ["llmtwin", "ml"],
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Ready", "type": "string", "jsonPath": ready},
                        {"name": "Model", "type": "string", "jsonPath": ".status.modelVersion"},
                        {"name": "Docs", "type": "integer", "jsonPath": ".status.documents"},
                        {"name": "Chunks", "type": "integer", "jsonPath": ".status.chunks"},
                        {"name": "Author", "type": "string", "jsonPath": ".spec.author.name", "priority": 1},
                        {"name": "Base", "type": "string", "jsonPath": ".spec.baseModel.id", "priority": 1},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "An LLM Twin: a LoRA-tuned model that writes like one author, "
                            "answering with retrieval over that author's documents.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {
                                    "type": "string",
                                    "description": "The versioned schema of this object: llmtwin.dev/v1alpha1.",
                                },
                                "kind": {"type": "string", "description": "LLMTwin."},
                                # Kubernetes forbids anything but `type` here (metadata is implicitly specified).
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


class _CrdDumper(yaml.SafeDumper):
    """Own dumper: output must not depend on representers other libraries register globally."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_CrdDumper.add_representer(str, _represent_str)


def render_crd_yaml() -> str:
    header = "# Generated by `llmtwin crd` from llmtwin/api/v1alpha1.py. Do not edit by hand.\n"
    return header + yaml.dump(crd_manifest(), Dumper=_CrdDumper, sort_keys=False, width=120)
