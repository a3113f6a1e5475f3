"""Run an Argo `Workflow` in-process: the local runner for `llmtwin up`, `llmtwin train` and tests.

It reads the same WorkflowTemplate the operator installs (rendered by `llmtwin.workflows.templates`),
resolves the entrypoint DAG in dependency order, substitutes `{{workflow.parameters.*}}`,
`{{workflow.name}}`, `{{inputs.parameters.*}}` and `{{tasks.<t>.outputs.parameters.*}}` the way
Argo does, runs the `onExit` template however the DAG ended (with `{{workflow.status}}`), and calls
the registered step behind each container's `llmtwin step <name>` command. No step logic lives here.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Histogram

from llmtwin.workflows import templates
from llmtwin.workflows.steps import StepContext, parse_params, run_step

log = logging.getLogger(__name__)
_PLACEHOLDER = re.compile(r"\{\{\s*([a-zA-Z0-9_.\-]+)\s*\}\}")

STEP_SECONDS = Histogram("llmtwin_local_step_seconds", "Wall time of workflow steps run by the local runner", ["step"])
STEP_FAILURES = Counter("llmtwin_local_step_failures_total", "Local runner step failures", ["step"])


class WorkflowFailed(RuntimeError):
    def __init__(self, workflow: str, task: str, cause: BaseException):
        super().__init__(f"workflow {workflow}: task {task} failed: {cause}")
        self.task = task
        self.cause = cause


@dataclass
class WorkflowResult:
    name: str
    phase: str
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> step outputs


def _substitute(text: str, scope: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in scope:
            raise KeyError(f"unresolved template variable {{{{{key}}}}}")
        return scope[key]

    return _PLACEHOLDER.sub(replace, text)


def _dependencies(task: dict[str, Any]) -> set[str]:
    """Task names a DAG task waits for (`dependencies` list, or a `depends` AND-expression)."""
    names = set(task.get("dependencies", []))
    for term in task.get("depends", "").split("&&"):
        if term.strip():
            names.add(term.strip().strip("()").split(".")[0])
    return names


def _parameters(items: list[dict[str, Any]] | None) -> dict[str, str]:
    return {p["name"]: str(p.get("value", "")) for p in items or []}


class LocalRunner:
    """Executes Workflows for the context's twin; `workspace_root/<workflow name>` is the shared volume
    (the context's workspace is replaced by it for each Workflow)."""

    def __init__(
        self,
        context: StepContext,
        workspace_root: Path,
        on_task: Callable[[str, str], None] | None = None,
    ):
        self.context = context
        self.workspace_root = Path(workspace_root)
        self.on_task = on_task  # progress hook: (task name, "started"|"succeeded"|"failed")
        rendered = templates.workflow_templates(context.twin, context.settings)
        self._templates = {t["metadata"]["name"]: t for t in rendered}

    def run(self, workflow: dict[str, Any]) -> WorkflowResult:
        name = workflow["metadata"]["name"]
        ref = workflow["spec"]["workflowTemplateRef"]["name"]
        if ref not in self._templates:
            raise KeyError(f"workflow {name} references unknown template {ref!r}")
        template = self._templates[ref]["spec"]
        by_name = {t["name"]: t for t in template["templates"]}
        params = {
            **_parameters(template.get("arguments", {}).get("parameters")),
            **_parameters(workflow["spec"].get("arguments", {}).get("parameters")),
        }
        scope = {f"workflow.parameters.{k}": v for k, v in params.items()} | {"workflow.name": name}
        dag = by_name[template["entrypoint"]]["dag"]["tasks"]
        order = TopologicalSorter({t["name"]: _dependencies(t) for t in dag}).static_order()
        tasks = {t["name"]: t for t in dag}
        workspace = self.workspace_root / name
        workspace.mkdir(parents=True, exist_ok=True)
        context = self.context.in_workspace(workspace)
        result = WorkflowResult(name=name, phase="Running")
        try:
            for task_name in order:
                task = tasks[task_name]
                inputs = {
                    k: _substitute(v, scope)
                    for k, v in _parameters(task.get("arguments", {}).get("parameters")).items()
                }
                input_scope = {f"inputs.parameters.{k}": v for k, v in inputs.items()}
                outputs = self._run_container(name, task_name, by_name[task["template"]], input_scope, context)
                result.outputs[task_name] = outputs
                for key, value in outputs.items():
                    scope[f"tasks.{task_name}.outputs.parameters.{key}"] = str(value)
            result.phase = "Succeeded"
        except WorkflowFailed:
            result.phase = "Failed"
            raise
        finally:
            if exit_template := template.get("onExit"):  # as Argo: runs however the DAG ended
                exit_scope = {**scope, "workflow.status": result.phase}
                self._run_container(name, exit_template, by_name[exit_template], exit_scope, context)
        return result

    def _run_container(
        self, workflow: str, task: str, template: dict[str, Any], scope: dict[str, str], context: StepContext
    ) -> dict[str, Any]:
        """The registered step behind a container template's `llmtwin step <name>`, its args substituted."""
        step_name = template["container"]["command"][-1]
        args = [_substitute(a, scope) for a in template["container"].get("args", [])]
        self._notify(task, "started")
        started = time.perf_counter()
        try:
            outputs = run_step(step_name, parse_params(args), context)
        except Exception as exc:
            STEP_FAILURES.labels(step_name).inc()
            self._notify(task, "failed")
            raise WorkflowFailed(workflow, task, exc) from exc
        finally:
            STEP_SECONDS.labels(step_name).observe(time.perf_counter() - started)
        self._notify(task, "succeeded")
        return outputs

    def _notify(self, task: str, event: str) -> None:
        log.info("task %s %s", task, event)
        if self.on_task:
            self.on_task(task, event)
