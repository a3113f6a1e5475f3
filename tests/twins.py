"""The one place tests find the repository and the example twin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from llmtwin.api.v1alpha1 import LLMTwin

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "twin.yaml"


def twin_doc(name: str | None = None, namespace: str | None = None, **spec: Any) -> dict[str, Any]:
    """examples/twin.yaml as a dict, renamed and with top-level spec fields replaced."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    if name:
        doc["metadata"]["name"] = name
    if namespace:
        doc["metadata"]["namespace"] = namespace
    doc["spec"].update(spec)
    return doc


def example_twin(name: str | None = None, namespace: str | None = None, **spec: Any) -> LLMTwin:
    return LLMTwin.model_validate(twin_doc(name, namespace, **spec))
