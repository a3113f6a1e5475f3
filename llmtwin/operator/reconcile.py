"""What the kopf handlers do, without kopf's decorators: validate, render, apply, adopt, report.

`reconcile` is level-based and idempotent: the create/update/resume handlers and the periodic
resync timer all call it, and when nothing changed it makes no API writes at all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException
from prometheus_client import Counter, Histogram
from pydantic import ValidationError

from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.operator import builders
from llmtwin.operator.apply import Applier
from llmtwin.operator.conditions import set_condition
from llmtwin.settings import Settings

RECONCILES = Counter("llmtwin_operator_reconciles_total", "Reconciles by result", ["result"])
RECONCILE_SECONDS = Histogram("llmtwin_operator_reconcile_seconds", "Time to reconcile one twin")


@dataclass
class Outcome:
    """Status fields to write and the conditions to set, gathered during one reconcile."""

    conditions: list[dict[str, Any]]
    generation: int | None
    fields: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def set(self, type_: str, ok: bool, reason: str, message: str = "") -> None:
        self.conditions = set_condition(
            self.conditions, type_, "True" if ok else "False", reason, message, self.generation
        )


def spec_problems(twin: LLMTwin) -> list[str]:
    """Spec errors the CRD schema cannot express; reported as a Degraded condition, never a crash."""
    spec = twin.spec
    problems = []
    seen: set[tuple[str, str]] = set()
    for i, source in enumerate(spec.sources):
        key = (source.bucket, source.prefix)
        if key in seen:
            problems.append(
                f"spec.sources[{i}]: bucket {source.bucket!r} prefix {source.prefix!r} is listed twice"
            )
        seen.add(key)
    scaling = spec.serving.autoscaling
    if not scaling.min_replicas <= spec.serving.replicas <= scaling.max_replicas:
        problems.append(
            f"spec.serving.replicas: {spec.serving.replicas} is outside autoscaling "
            f"[{scaling.min_replicas}, {scaling.max_replicas}]"
        )
    if spec.serving.max_input_tokens >= spec.serving.max_total_tokens:
        problems.append("spec.serving.maxInputTokens must be smaller than spec.serving.maxTotalTokens")
    if len(twin.collection) > 255:
        problems.append("spec.vectorStore.collection: derived name is longer than 255 characters; set it")
    return problems


def missing_secrets(applier: Applier, twin: LLMTwin) -> list[str]:
    missing = []
    for i, source in enumerate(twin.spec.sources):
        ref = source.credentials_secret_ref
        if ref and applier.get("v1", "Secret", ref.name, twin.namespace) is None:
            missing.append(
                f"spec.sources[{i}].credentialsSecretRef: Secret {twin.namespace}/{ref.name} not found"
            )
    return missing


def parse_twin(body: kopf.Body) -> LLMTwin:
    return LLMTwin.model_validate(
        {
            "apiVersion": body.get("apiVersion"),
            "kind": body.get("kind"),
            "metadata": dict(body.metadata),
            "spec": dict(body.spec),
            "status": dict(body.status),
        }
    )


def reconcile(
    body: kopf.Body, patch: kopf.Patch, applier: Applier, settings: Settings, logger: logging.Logger
) -> None:
    with RECONCILE_SECONDS.time():
        _reconcile(body, patch, applier, settings, logger)


def _reconcile(
    body: kopf.Body, patch: kopf.Patch, applier: Applier, settings: Settings, logger: logging.Logger
) -> None:
    generation = body.metadata.get("generation")
    outcome = Outcome(conditions=list(body.status.get("conditions", [])), generation=generation)
    try:
        twin = parse_twin(body)
    except ValidationError as exc:
        # The schema admitted it but the typed model did not: report, do not retry in a loop.
        outcome.problems.append(f"spec does not validate: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}")
        _finish(body, patch, outcome, logger)
        return

    outcome.problems += spec_problems(twin) + missing_secrets(applier, twin)
    if outcome.problems:
        _finish(body, patch, outcome, logger)
        return

    children = builders.children(twin, settings)
    written = []
    for child in children:
        kopf.append_owner_reference(child, owner=body)
        try:
            if applier.apply(child):
                written.append(f"{child['kind']}/{child['metadata']['name']}")
        except ApiException as exc:
            if exc.status in (400, 403, 404, 409, 422):
                # Rejected by the API (schema, RBAC, missing CRD): a real problem, not a blip.
                outcome.problems.append(
                    f"{child['kind']} {child['metadata']['name']}: {exc.status} {exc.reason}: "
                    f"{(exc.body or '')[:500]}"
                )
                continue
            raise kopf.TemporaryError(
                f"applying {child['kind']}: {exc.status} {exc.reason}", delay=10
            ) from exc
    if written:
        logger.info("applied %s", ", ".join(written))
    outcome.fields["children"] = [f"{c['kind']}/{c['metadata']['name']}" for c in children]
    outcome.fields["collection"] = twin.collection
    _finish(body, patch, outcome, logger)


def _finish(body: kopf.Body, patch: kopf.Patch, outcome: Outcome, logger: logging.Logger) -> None:
    degraded = bool(outcome.problems)
    message = "; ".join(outcome.problems)
    if degraded:
        outcome.set("Degraded", True, "SpecInvalid" if "spec" in message else "ApplyFailed", message)
        outcome.set("Ready", False, "Degraded", message)
        kopf.warn(body, reason="Degraded", message=message[:1024])
        logger.warning("degraded: %s", message)
    else:
        outcome.set("Degraded", False, "AsExpected")
        outcome.set("Ready", True, "Reconciled", "all children applied")
    desired = {
        **outcome.fields,
        "phase": "Degraded" if degraded else "Ready",
        "observedGeneration": outcome.generation,
        "conditions": outcome.conditions,
    }
    current = dict(body.status)
    for key, value in desired.items():
        if current.get(key) != value:
            patch.status[key] = value
    RECONCILES.labels("degraded" if degraded else "ready").inc()
