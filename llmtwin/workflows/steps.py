"""The workflow step registry: one implementation of each step, two runners.

Every Argo template the operator renders runs `llmtwin step <name> key=value ...` in the workflow
image; the local runner (`llmtwin.workflows.runner`) resolves the same template's DAG and calls the
same function in-process. A step is a plain function registered with `@step("name")`; it receives a
`StepContext` and its parameters as keyword strings, and returns a JSON-able dict of outputs.

Where a step finds the twin: the operator mounts the twin's ConfigMap at `/etc/llmtwin` (the file
`twin.json` holds the resolved twin); `LLMTWIN_TWIN_FILE` overrides the path (local runner, tests).
Steps share files through `LLMTWIN_WORKSPACE` (a per-workflow volume in Argo, a folder locally).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.settings import Settings, load

TWIN_FILE_ENV = "LLMTWIN_TWIN_FILE"
WORKSPACE_ENV = "LLMTWIN_WORKSPACE"
DEFAULT_TWIN_FILE = "/etc/llmtwin/twin.json"
DEFAULT_WORKSPACE = "/workspace"
# Modules that register steps; imported lazily so the operator never imports torch.
STEP_MODULES = ("llmtwin.workflows.ingest", "llmtwin.workflows.retrain")

StepFunction = Callable[..., dict[str, Any]]
_REGISTRY: dict[str, StepFunction] = {}


@dataclass
class StepContext:
    twin: LLMTwin
    workspace: Path
    settings: Settings = field(default_factory=load)


def step(name: str) -> Callable[[StepFunction], StepFunction]:
    def register(fn: StepFunction) -> StepFunction:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise RuntimeError(f"workflow step {name!r} registered twice")
        _REGISTRY[name] = fn
        return fn

    return register


def registered_steps() -> dict[str, StepFunction]:
    for module in STEP_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            # A slim image (e.g. the operator's) lacks the step modules' heavy dependencies.
            if exc.name and exc.name.startswith("llmtwin"):
                continue
            raise
    return dict(_REGISTRY)


def load_twin(path: str | os.PathLike[str] | None = None) -> LLMTwin:
    twin_file = Path(path or os.environ.get(TWIN_FILE_ENV, DEFAULT_TWIN_FILE))
    if not twin_file.exists():
        raise FileNotFoundError(f"twin file {twin_file} not found (set {TWIN_FILE_ENV})")
    return LLMTwin.model_validate(json.loads(twin_file.read_text()))


def parse_params(argv: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise ValueError(f"step parameter {arg!r} is not key=value")
        params[key.replace("-", "_")] = value
    return params


def run_step(name: str, params: dict[str, str], context: StepContext) -> dict[str, Any]:
    steps = registered_steps()
    if name not in steps:
        raise KeyError(f"unknown workflow step {name!r}; known: {', '.join(sorted(steps)) or 'none'}")
    return steps[name](context, **params)


def main(argv: list[str] | None = None) -> int:
    """Container entrypoint: `llmtwin step NAME key=value ...`; prints outputs as JSON."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print("usage: llmtwin step NAME key=value ...", file=sys.stderr)
        return 2
    name, params = argv[0], parse_params(argv[1:])
    workspace = Path(os.environ.get(WORKSPACE_ENV, DEFAULT_WORKSPACE))
    workspace.mkdir(parents=True, exist_ok=True)
    outputs = run_step(name, params, StepContext(twin=load_twin(), workspace=workspace))
    print(json.dumps(outputs, sort_keys=True))
    # Argo reads output parameters from files; write each output where the template expects it.
    (workspace / "outputs").mkdir(exist_ok=True)
    for key, value in outputs.items():
        (workspace / "outputs" / f"{name}.{key}").write_text(value if isinstance(value, str) else json.dumps(value))
    return 0
