"""Kopf entrypoint: decorators only; each handler delegates to `reconcile`, `finalize`, `platform` or
`twin_metrics`.

Run with `llmtwin operator` (what the Deployment does). The settings are read here, once, when the
module loads: the resync interval must be known when the timer is declared.
"""

from __future__ import annotations

import logging

import kopf

from llmtwin.api.names import FINALIZER, GROUP
from llmtwin.api.v1alpha1 import PLURAL, VERSION
from llmtwin.config import OperatorSettings, load
from llmtwin.operator import finalize, platform, reconcile, twin_metrics

RESOURCE = (GROUP, VERSION, PLURAL)
SETTINGS = load(OperatorSettings)
# A resync timer still reconciling when its twin is deleted holds the finalizer until kopf next polls
# for the timer's exit (every 60 s by default); seconds suffice for a reconcile.
CANCELLATION_POLLING_SECONDS = 2


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_) -> None:
    # Our own annotations and finalizer name; handler results never land in status.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.scanning.disabled = True
    settings.peering.standalone = True
    settings.background.cancellation_polling = CANCELLATION_POLLING_SECONDS
    settings.execution.max_workers = SETTINGS.max_workers
    memo.platform = platform.connect(SETTINGS)


@kopf.on.cleanup()
def shutdown(memo: kopf.Memo, **_) -> None:
    if getattr(memo, "platform", None):
        memo.platform.topics.stop()


# Every twin's (Milvus uri, collection): who else names this twin's collection, without an API call.
@kopf.index(*RESOURCE)
def twin_collections(body: kopf.Body, **_) -> dict | None:
    return reconcile.collection_claim(body, SETTINGS)


@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE)
@kopf.on.resume(*RESOURCE)
def reconcile_twin(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, twin_collections: kopf.Index, logger: logging.Logger, **_
) -> None:
    reconcile.reconcile(body, patch, memo.platform, twin_collections, logger)


@kopf.timer(
    *RESOURCE,
    interval=SETTINGS.resync_seconds,
    initial_delay=SETTINGS.resync_seconds,
    when=lambda status, **_: not reconcile.promoting(status),
)
def resync_twin(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, twin_collections: kopf.Index, logger: logging.Logger, **_
) -> None:
    if body.metadata.get("deletionTimestamp"):
        return
    reconcile.reconcile(body, patch, memo.platform, twin_collections, logger)


# While a candidate is in its canary: the Rollout's outcome is read every few seconds, not every minute.
@kopf.timer(*RESOURCE, interval=SETTINGS.promotion_poll_seconds, when=lambda status, **_: reconcile.promoting(status))
def follow_canary(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, twin_collections: kopf.Index, logger: logging.Logger, **_
) -> None:
    if body.metadata.get("deletionTimestamp"):
        return
    reconcile.reconcile(body, patch, memo.platform, twin_collections, logger)


@kopf.on.delete(*RESOURCE)
def finalize_twin(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: logging.Logger, **_) -> None:
    finalize.finalize(body, patch, memo.platform, logger)


@kopf.on.event(*RESOURCE)
def export_twin_state(event: kopf.RawEvent, body: kopf.Body, **_) -> None:
    # Every watch event, status changes included (they never reach the spec handlers above).
    twin_metrics.on_event(event.get("type"), body)


@kopf.on.probe(id="twins")
def probe_twins(memo: kopf.Memo, **_) -> str:
    return "ok" if getattr(memo, "platform", None) else "starting"
