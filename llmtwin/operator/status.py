"""The twin's status as a pure decision: what one reconcile observed in, the status and Events out.

`decide` is the phase machine; the handler only applies its result. Unit-tested without a cluster.

    problems a user must fix (spec, a rejected child, a Secret)  -> Degraded (Ready False)
    storage not wired for a reason that may heal (MinIO, Kafka)  -> Pending  (Ready False)
    every child applied and the event plane wired                -> Ready

ServingReady, Promoting and Promoted come from the promotion decision (promotion.py); they do not
change the phase: a twin whose canary runs or whose candidate was rejected is still Ready.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmtwin.api.conditions import (
    USER_ACTION_REASONS,
    ConditionType,
    Phase,
    Reason,
    find_condition,
    set_condition,
)
from llmtwin.api.timestamps import now

if TYPE_CHECKING:
    from llmtwin.operator.promotion import Promotion


@dataclass(frozen=True)
class Failure:
    reason: str
    message: str


@dataclass
class Observation:
    """What one reconcile learned."""

    generation: int | None
    problems: list[Failure] = field(default_factory=list)  # spec or children: a user has to act
    # StorageReady: None when not looked at (the spec did not validate); else its failures ([] = wired).
    storage: list[Failure] | None = None
    storage_message: str = ""  # for a wired event plane: each bucket's state
    fields: dict[str, Any] = field(default_factory=dict)  # children, collection, buckets
    promotion: Promotion | None = None  # None when not looked at (the spec did not validate)


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class StatusUpdate:
    phase: Phase
    status: dict[str, Any]  # the status fields that must change (empty: nothing to write)
    events: list[Event]


def decide(observation: Observation, current: dict[str, Any], clock: Callable[[], str] = now) -> StatusUpdate:
    """The status this observation calls for, as a patch against `current` (the live status)."""
    previous = list(current.get("conditions") or [])
    conditions = previous
    generation = observation.generation

    def set_(type_: str, ok: bool, reason: str, message: str = "") -> None:
        nonlocal conditions
        status = "True" if ok else "False"
        conditions = set_condition(conditions, type_, status, reason, message, generation, clock=clock)

    problems = list(observation.problems)
    if observation.storage is not None:
        if observation.storage:
            failures = observation.storage
            set_(ConditionType.STORAGE_READY, False, failures[0].reason, "; ".join(f.message for f in failures))
            problems += [f for f in failures if f.reason in USER_ACTION_REASONS]
        else:
            set_(ConditionType.STORAGE_READY, True, Reason.WIRED, observation.storage_message)
    storage = find_condition(conditions, ConditionType.STORAGE_READY)
    promotion_fields: dict[str, Any] = {}
    if observation.promotion is not None:
        for update in observation.promotion.conditions:
            set_(update.type, update.ok, update.reason, update.message)
        promotion_fields = observation.promotion.fields

    if problems:
        message = "; ".join(p.message for p in problems)
        set_(ConditionType.DEGRADED, True, problems[0].reason, message)
        set_(ConditionType.READY, False, Reason.DEGRADED, message)
        phase = Phase.DEGRADED
    elif storage and storage["status"] != "True":
        set_(ConditionType.DEGRADED, False, Reason.AS_EXPECTED)
        set_(ConditionType.READY, False, Reason.STORAGE_NOT_READY, storage["message"])
        phase = Phase.PENDING
    else:
        set_(ConditionType.DEGRADED, False, Reason.AS_EXPECTED)
        set_(ConditionType.READY, True, Reason.RECONCILED, "all children applied, event plane wired")
        phase = Phase.READY

    desired = {
        **observation.fields,
        **promotion_fields,
        "phase": str(phase),
        "observedGeneration": generation,
        "conditions": conditions,
    }
    changes = {key: value for key, value in desired.items() if current.get(key) != value}
    return StatusUpdate(phase, changes, _events(previous, conditions))


def _events(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[Event]:
    """Kubernetes Events for what changed: a new or different degradation, becoming Ready, and the
    outcome of a candidate's canary.

    A degraded twin resynced every minute with the same problem posts nothing more."""
    events = []
    old = find_condition(before, ConditionType.DEGRADED) or {}
    new = find_condition(after, ConditionType.DEGRADED) or {}
    if new.get("status") == "True" and (old.get("status"), old.get("reason"), old.get("message")) != (
        "True",
        new["reason"],
        new["message"],
    ):
        events.append(Event("Warning", new["reason"], new["message"]))
    old_ready = (find_condition(before, ConditionType.READY) or {}).get("status")
    new_ready = find_condition(after, ConditionType.READY) or {}
    if new_ready.get("status") == "True" and old_ready != "True":
        events.append(Event("Normal", new_ready["reason"], new_ready["message"]))
    old_promoted = find_condition(before, ConditionType.PROMOTED) or {}
    new_promoted = find_condition(after, ConditionType.PROMOTED) or {}
    if new_promoted.get("reason") in (Reason.CANARY_SUCCEEDED, Reason.CANARY_ABORTED) and (
        old_promoted.get("reason"),
        old_promoted.get("message"),
    ) != (new_promoted["reason"], new_promoted["message"]):
        kind = "Normal" if new_promoted["status"] == "True" else "Warning"
        events.append(Event(kind, new_promoted["reason"], new_promoted["message"]))
    return events
