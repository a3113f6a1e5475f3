"""What the kopf handlers do, without kopf's decorators: validate, render, apply, adopt, wire the
event plane (`eventplane.py`), report.

`reconcile` is level-based and idempotent: the create/update/resume handlers and the periodic
resync timer all call it, and when nothing changed it makes no API writes at all (nor MinIO or
Kafka writes). The resync timer is also what retries storage that was unreachable.
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
from llmtwin.operator import builders, eventplane
from llmtwin.operator.apply import Applier
from llmtwin.operator.conditions import condition, set_condition
from llmtwin.operator.eventplane import Failure
from llmtwin.settings import Settings

RECONCILES = Counter("llmtwin_operator_reconciles_total", "Reconciles by result", ["result"])
RECONCILE_SECONDS = Histogram("llmtwin_operator_reconcile_seconds", "Time to reconcile one twin")


@dataclass
class Outcome:
    """Status fields to write and the conditions to set, gathered during one reconcile."""

    conditions: list[dict[str, Any]]
    generation: int | None
    fields: dict[str, Any] = field(default_factory=dict)
    # What makes the twin Degraded: problems a user has to fix; the first one's reason is the condition's.
    problems: list[Failure] = field(default_factory=list)

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
            problems.append(f"spec.sources[{i}]: bucket {source.bucket!r} prefix {source.prefix!r} is listed twice")
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


def reconcile(body: kopf.Body, patch: kopf.Patch, applier: Applier, settings: Settings, logger: logging.Logger) -> None:
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
        error = exc.errors()[0]
        outcome.problems.append(Failure("SpecInvalid", f"spec does not validate: {error['loc']}: {error['msg']}"))
        _finish(body, patch, outcome, logger)
        return

    outcome.problems += [Failure("SpecInvalid", problem) for problem in spec_problems(twin)]
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
                    Failure(
                        "ApplyFailed",
                        f"{child['kind']} {child['metadata']['name']}: {exc.status} {exc.reason}: "
                        f"{(exc.body or '')[:500]}",
                    )
                )
                continue
            raise kopf.TemporaryError(f"applying {child['kind']}: {exc.status} {exc.reason}", delay=10) from exc
    if written:
        logger.info("applied %s", ", ".join(written))
    outcome.fields["children"] = [f"{c['kind']}/{c['metadata']['name']}" for c in children]
    outcome.fields["collection"] = twin.collection
    _record_event_plane(outcome, eventplane.wire(twin, settings), logger)
    _finish(body, patch, outcome, logger)


def _record_event_plane(outcome: Outcome, wiring: eventplane.Wiring, logger: logging.Logger) -> None:
    """StorageReady and status.buckets from the event plane. Secrets missing or lacking a key also
    degrade the twin (someone has to add them); MinIO or Kafka being away only leaves StorageReady
    False until a resync finds them back."""
    if wiring.writes:
        logger.info("event plane: wrote %s", ", ".join(wiring.writes))
    for warning in wiring.warnings:
        logger.warning("event plane: %s", warning)
    outcome.fields["buckets"] = [b.wire() for b in wiring.buckets]
    if not wiring.failures:
        outcome.set("StorageReady", True, "Wired", "; ".join(f"{b.bucket}: {b.state}" for b in wiring.buckets))
        return
    outcome.set("StorageReady", False, wiring.failures[0].reason, "; ".join(f.message for f in wiring.failures))
    outcome.problems += [f for f in wiring.failures if f.reason in eventplane.CONFIGURATION_REASONS]


def _finish(body: kopf.Body, patch: kopf.Patch, outcome: Outcome, logger: logging.Logger) -> None:
    """Ready needs every child applied and the event plane wired: a twin whose uploads reach no one is
    not ready. Degraded (phase Degraded) means a user has to act; storage that is merely not there yet
    leaves the phase Pending while the resync timer retries."""
    storage = condition(outcome.conditions, "StorageReady")
    if outcome.problems:
        message = "; ".join(p.message for p in outcome.problems)
        outcome.set("Degraded", True, outcome.problems[0].reason, message)
        outcome.set("Ready", False, "Degraded", message)
        kopf.warn(body, reason="Degraded", message=message[:1024])
        logger.warning("degraded: %s", message)
        phase = "Degraded"
    elif storage and storage["status"] != "True":
        outcome.set("Degraded", False, "AsExpected")
        outcome.set("Ready", False, "StorageNotReady", storage["message"])
        logger.warning("storage not ready: %s", storage["message"])
        phase = "Pending"
    else:
        outcome.set("Degraded", False, "AsExpected")
        outcome.set("Ready", True, "Reconciled", "all children applied, event plane wired")
        phase = "Ready"
    desired = {
        **outcome.fields,
        "phase": phase,
        "observedGeneration": outcome.generation,
        "conditions": outcome.conditions,
    }
    current = dict(body.status)
    for key, value in desired.items():
        if current.get(key) != value:
            patch.status[key] = value
    RECONCILES.labels(phase.lower()).inc()
