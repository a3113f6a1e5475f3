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

from llmtwin.api.conditions import Phase
from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.corpus.store import drop_collection, milvus_access, twin_owner
from llmtwin.operator.eventplane.wiring import unwire
from llmtwin.operator.platform import Platform
from llmtwin.operator.reconcile import parse_twin
from llmtwin.secrets import KubernetesSecrets, SecretError

CleanupHook = Callable[[LLMTwin, Platform, logging.Logger], None]
CLEANUP_HOOKS: list[CleanupHook] = []
RETRY_SECONDS = 30


def cleanup_hook(fn: CleanupHook) -> CleanupHook:
    CLEANUP_HOOKS.append(fn)
    return fn


@cleanup_hook
def drop_twin_collection(twin: LLMTwin, platform: Platform, logger: logging.Logger) -> None:
    try:
        access = milvus_access(twin, KubernetesSecrets(platform.core, twin.namespace))
    except SecretError as exc:  # gone with its namespace, say: nothing can open the collection any more
        logger.warning("kept Milvus collection %s: %s", twin.collection, exc.detail)
        return
    outcome = drop_collection(access, twin.collection, twin_owner(twin))
    if outcome == "dropped":
        logger.info("dropped Milvus collection %s", twin.collection)
    elif outcome != "absent":  # never another twin's chunks, nor a collection llmtwin did not create
        logger.warning("kept Milvus collection %s: it is not this twin's (%s)", twin.collection, outcome)


@cleanup_hook
def remove_bucket_notifications(twin: LLMTwin, platform: Platform, logger: logging.Logger) -> None:
    unwire(twin, platform.settings, KubernetesSecrets(platform.core, twin.namespace), logger)


def finalize(body: kopf.Body, patch: kopf.Patch, platform: Platform, logger: logging.Logger) -> None:
    try:
        twin = parse_twin(body, platform.settings)
    except ValidationError:
        logger.warning("spec does not validate; nothing external to clean up can be identified")
        return
    if twin.spec.deletion_policy == "Retain":
        logger.info("deletionPolicy Retain: keeping collection %s and bucket notifications", twin.collection)
        return
    failures = []
    for hook in CLEANUP_HOOKS:
        try:
            hook(twin, platform, logger)
        except Exception as exc:  # each hook is independent; report all of them
            failures.append(f"{hook.__name__}: {exc}")
    if failures:
        patch.status["phase"] = str(Phase.DELETING)
        patch.status["lastError"] = "; ".join(failures)[:2000]
        raise kopf.TemporaryError(f"clean-up failed, will retry: {'; '.join(failures)}", delay=RETRY_SECONDS)
