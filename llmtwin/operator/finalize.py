"""Deletion: children go by owner-reference garbage collection; external state by policy.

With `deletionPolicy: Delete` each clean-up hook removes one kind of state the API server cannot
garbage-collect (the Milvus collection, bucket notifications). A failing hook raises a temporary
error, so kopf keeps the finalizer and retries: nothing is leaked silently.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import kopf
from pydantic import ValidationError

from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.operator import eventplane
from llmtwin.operator.reconcile import parse_twin
from llmtwin.settings import Settings

CleanupHook = Callable[[LLMTwin, Settings, logging.Logger], None]
CLEANUP_HOOKS: list[CleanupHook] = []


def cleanup_hook(fn: CleanupHook) -> CleanupHook:
    CLEANUP_HOOKS.append(fn)
    return fn


@cleanup_hook
def drop_collection(twin: LLMTwin, settings: Settings, logger: logging.Logger) -> None:
    from llmtwin.workflows.ingest.store import drop_collection as drop

    if drop(twin.spec.vector_store.uri, twin.collection):
        logger.info("dropped Milvus collection %s", twin.collection)


@cleanup_hook
def remove_bucket_notifications(twin: LLMTwin, settings: Settings, logger: logging.Logger) -> None:
    eventplane.unwire(twin, settings, logger)


def finalize(body: kopf.Body, patch: kopf.Patch, settings: Settings, logger: logging.Logger) -> None:
    try:
        twin = parse_twin(body)
    except ValidationError:
        logger.warning("spec does not validate; nothing external to clean up can be identified")
        return
    if twin.spec.deletion_policy == "Retain":
        logger.info("deletionPolicy Retain: keeping collection %s and bucket notifications", twin.collection)
        return
    failures = []
    for hook in CLEANUP_HOOKS:
        try:
            hook(twin, settings, logger)
        except Exception as exc:  # each hook is independent; report all of them
            failures.append(f"{hook.__name__}: {exc}")
    if failures:
        patch.status["phase"] = "Deleting"
        patch.status["lastError"] = "; ".join(failures)[:2000]
        raise kopf.TemporaryError(f"clean-up failed, will retry: {'; '.join(failures)}", delay=30)
