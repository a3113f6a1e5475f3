"""Condition types, their reasons, and the phases of an LLMTwin (KAITO's `condition_types.go`).

Every type and reason here is set by some code path; `kubectl wait --for=condition=<Type>` works on
each type. Conditions follow Kubernetes semantics: `lastTransitionTime` moves only when the status
changes.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any, Literal

from llmtwin.api.timestamps import now

ConditionStatus = Literal["True", "False", "Unknown"]


class ConditionType(StrEnum):
    READY = "Ready"  # every child applied and the event plane wired
    STORAGE_READY = "StorageReady"  # buckets exist and notify Kafka; the topics exist
    DEGRADED = "Degraded"  # something a user has to fix (spec, Secrets, a rejected child)
    SERVING_READY = "ServingReady"  # the model server's Rollout has available replicas
    PROMOTING = "Promoting"  # a candidate version is in its canary (operator/promotion.py)
    PROMOTED = "Promoted"  # the latest candidate reached production (False: rejected, or still in canary)


class Phase(StrEnum):
    PENDING = "Pending"  # waiting for something that may come by itself (storage, Kafka)
    READY = "Ready"
    DEGRADED = "Degraded"
    DELETING = "Deleting"  # the finalizer's clean-up failed and is retried


class Reason(StrEnum):
    # Ready
    RECONCILED = "Reconciled"
    STORAGE_NOT_READY = "StorageNotReady"
    DEGRADED = "Degraded"
    # Degraded
    AS_EXPECTED = "AsExpected"
    SPEC_INVALID = "SpecInvalid"
    APPLY_FAILED = "ApplyFailed"
    COLLECTION_TAKEN = "CollectionTaken"  # another twin's Milvus collection
    # StorageReady
    WIRED = "Wired"
    SECRET_MISSING = "SecretMissing"
    SECRET_INVALID = "SecretInvalid"
    BUCKET_MISSING = "BucketMissing"
    STORAGE_UNAVAILABLE = "StorageUnavailable"
    STORAGE_REJECTED = "StorageRejected"
    KAFKA_UNAVAILABLE = "KafkaUnavailable"
    # ServingReady
    ROLLOUT_AVAILABLE = "RolloutAvailable"
    ROLLOUT_UNAVAILABLE = "RolloutUnavailable"
    # Promoting and Promoted
    NO_CANDIDATE = "NoCandidate"
    CANARY_PROGRESSING = "CanaryProgressing"
    CANARY_SUCCEEDED = "CanarySucceeded"
    CANARY_ABORTED = "CanaryAborted"
    PROMOTED_BY_HAND = "PromotedByHand"  # `llmtwin promote` / `llmtwin rollback`


# Reasons a user has to act on (a Secret to create or fix): they degrade the twin. The other
# StorageReady reasons may heal by themselves and only keep it Pending.
USER_ACTION_REASONS = frozenset({Reason.SECRET_MISSING, Reason.SECRET_INVALID})


def set_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str = "",
    generation: int | None = None,
    clock: Callable[[], str] = now,
) -> list[dict[str, Any]]:
    """A new condition list with `type_` set; the others are kept as they are."""
    previous = find_condition(conditions, type_)
    changed = previous is None or previous.get("status") != status
    condition = {
        "type": str(type_),
        "status": status,
        "reason": str(reason),
        "message": message,
        "lastTransitionTime": clock() if changed else previous["lastTransitionTime"],
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    if previous is None:
        return [*conditions, condition]
    # In place: a list whose order moved would be a status write with nothing changed.
    return [condition if c.get("type") == type_ else c for c in conditions]


def find_condition(conditions: list[dict[str, Any]], type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)
