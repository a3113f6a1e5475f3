"""The workflow step registry: one implementation of each step, two runners.

Every Argo template the operator renders runs `llmtwin step <name> key=value ...` in the workflow
image; the local runner (`llmtwin.workflows.runner`) resolves the same template's DAG and calls the
same function in-process. A step is a plain function registered with `@step("name")`; it receives a
`StepContext` and its parameters as keyword strings, and returns a JSON-able dict of outputs.

The context carries everything a step may touch besides its parameters: the twin, the workspace it
shares with the other steps of its Workflow, the platform settings, where to report the twin's
status, an object store per source, and where base models are found on this machine. In a pod,
`main` builds it once from `StepSettings` (what the rendered template sets: the mounted twin file,
the workspace volume, the mounted Secrets); the local runner builds it from what `llmtwin up` or
`llmtwin train` hold.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.config import PlatformSettings, StepSettings, load
from llmtwin.models.resolve import ModelResolver
from llmtwin.secrets import SecretFiles, Secrets
from llmtwin.sources.objects import ObjectStores
from llmtwin.workflows.status import StatusReporter, reporter_for

if TYPE_CHECKING:  # pymilvus is imported by the steps that use it
    from llmtwin.corpus.store import ChunkStore

# Modules that register steps; imported lazily so the operator never imports torch.
STEP_MODULES = ("llmtwin.workflows.ingest", "llmtwin.workflows.retrain")

StepFunction = Callable[..., dict[str, Any]]
_REGISTRY: dict[str, StepFunction] = {}


@dataclass(frozen=True)
class StepContext:
    twin: LLMTwin
    workspace: Path
    settings: PlatformSettings
    status: StatusReporter
    objects: ObjectStores
    models: ModelResolver
    secrets: Secrets  # the Secrets the twin names: the sources' (through `objects`), Milvus' token and CA

    def store(self) -> ChunkStore:
        """The twin's chunks, opened with the Milvus token and TLS options its spec names."""
        from llmtwin.corpus.store import store_for

        return store_for(self.twin, self.secrets)

    def in_workspace(self, workspace: Path) -> StepContext:
        return replace(self, workspace=workspace)


def step(name: str) -> Callable[[StepFunction], StepFunction]:
    def register(fn: StepFunction) -> StepFunction:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise RuntimeError(f"workflow step {name!r} registered twice")
        _REGISTRY[name] = fn
        return fn

    return register


def registered_steps() -> dict[str, StepFunction]:
    for module in STEP_MODULES:
        importlib.import_module(module)
    return dict(_REGISTRY)


def load_twin(path: Path) -> LLMTwin:
    if not path.exists():
        raise FileNotFoundError(f"twin file {path} not found (set {StepSettings.env_name('twin_file')})")
    return LLMTwin.model_validate(json.loads(path.read_text()))


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


def pod_context(settings: StepSettings) -> StepContext:
    """The context of a step in a workflow pod, from the settings the rendered template sets."""
    settings.workspace.mkdir(parents=True, exist_ok=True)
    secrets = SecretFiles(settings.secrets_dir)
    objects = ObjectStores(settings.s3_endpoint, settings.s3_secret, secrets)
    return StepContext(
        twin=load_twin(settings.twin_file),
        workspace=settings.workspace,
        settings=settings,
        status=reporter_for(settings.status_sink, settings.kubeconfig),
        objects=objects,
        models=ModelResolver(settings.model_cache, objects),
        secrets=secrets,
    )


def main(argv: list[str] | None = None) -> int:
    """Container entrypoint: `llmtwin step NAME key=value ...`; prints outputs as JSON."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print("usage: llmtwin step NAME key=value ...", file=sys.stderr)
        return 2
    name, params = argv[0], parse_params(argv[1:])
    context = pod_context(load(StepSettings))
    outputs = run_step(name, params, context)
    print(json.dumps(outputs, sort_keys=True))
    # Argo reads output parameters from files; write each output where the template expects it.
    (context.workspace / "outputs").mkdir(exist_ok=True)
    for key, value in outputs.items():
        path = context.workspace / "outputs" / f"{name}.{key}"
        path.write_text(value if isinstance(value, str) else json.dumps(value))
    return 0
