"""The shape of the code: layers that import only downwards, no cycles, one place that reads the environment."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

from tests.twins import ROOT

PACKAGE = ROOT / "llmtwin"
# Lowest first. A package may import its own layer's packages or lower ones, never higher ones.
LAYERS = [
    {"api"},  # the domain: types, validation, names, conditions (imports nothing of ours)
    {"config", "kube", "secrets"},  # settings from the environment; the Kubernetes client; Secret values
    {"sources", "corpus", "models"},  # object stores and credentials; chunks in Milvus and the embedder; base models
    {"serving", "drift"},  # the model server (TGI's API) and its client; drift records, detectors, monitor
    {"frontdoor"},  # RAG over the corpus: retrieval, prompts, answers
    {"workflows"},  # templates, steps, the local runner
    {"events", "operator"},  # the gateway; the operator
    {"embedded"},  # `llmtwin up`: composition root on one machine
    {"cli"},  # the command line
]
LAYER = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every llmtwin module this file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("llmtwin.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("llmtwin"):
            found |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
    return found


def modules() -> dict[str, set[str]]:
    known = {module_name(p) for p in PACKAGE.rglob("*.py")}
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        # `from llmtwin.api import names` names a module; `from llmtwin.api.names import X` a name in one.
        graph[module_name(path)] = {m for m in imports(path) if m in known} - {module_name(path)}
    return graph


def package_of(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def test_every_package_has_a_layer():
    packages = {package_of(m) for m in modules()} - {""}
    assert packages == set(LAYER), "add the new package to LAYERS"


def test_packages_import_only_their_own_layer_or_lower():
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in modules().items()
        for target in targets
        if package_of(module) and LAYER[package_of(target)] > LAYER[package_of(module)]
    )
    assert upward == []


def test_the_api_imports_nothing_else_of_ours():
    outside = sorted(
        f"{module} -> {target}"
        for module, targets in modules().items()
        if package_of(module) == "api"
        for target in targets
        if package_of(target) != "api"
    )
    assert outside == []


def test_no_import_cycles_between_packages_or_modules():
    graph = modules()
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        packages.setdefault(package_of(module), set()).update(package_of(t) for t in targets)
    for name, edges in (("packages", packages), ("modules", graph)):
        clean = {node: targets - {node} for node, targets in edges.items()}
        try:
            tuple(TopologicalSorter(clean).static_order())
        except CycleError as exc:
            pytest.fail(f"import cycle between {name}: {' -> '.join(exc.args[1])}")


def environment_uses(path: Path) -> list[str]:
    """Lines that read or write os.environ / os.getenv / os.putenv."""
    uses = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os":
            if node.attr in ("environ", "getenv", "putenv", "unsetenv"):
                uses.append(f"{path.relative_to(ROOT)}:{node.lineno} os.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            uses += [f"{path.relative_to(ROOT)}:{node.lineno} from os import {a.name}" for a in node.names]
    return uses


def test_only_the_config_module_touches_the_environment():
    """Settings are read once per process through llmtwin/config.py; nothing writes the environment
    to steer other code."""
    uses = [use for path in PACKAGE.rglob("*.py") if path.name != "config.py" for use in environment_uses(path)]
    assert uses == []
