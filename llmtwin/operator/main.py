"""Kopf entrypoint: decorators only; each handler delegates to `llmtwin.operator.reconcile`.

Run with `kopf run -m llmtwin.operator.main --all-namespaces` (what the Deployment does) or
`llmtwin operator`.
"""

from __future__ import annotations

import logging
import os

import kopf
from kubernetes import client, config
from prometheus_client import start_http_server

from llmtwin.api.v1alpha1 import GROUP, PLURAL, VERSION
from llmtwin.operator import finalize, reconcile
from llmtwin.operator.apply import FIELD_MANAGER, Applier
from llmtwin.settings import load

RESOURCE = (GROUP, VERSION, PLURAL)
# Level-based resync: catches drift in children and status-driven changes (a new modelVersion).
RESYNC_SECONDS = float(os.environ.get("LLMTWIN_RESYNC_SECONDS", "60"))


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_) -> None:
    # Our own annotations and finalizer name; handler results never land in status.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.scanning.disabled = True
    settings.peering.standalone = True
    # A resync timer still reconciling when its twin is deleted holds the finalizer until kopf next
    # polls for the timer's exit: every 60 s by default, seconds suffice for a reconcile.
    settings.background.cancellation_polling = 2
    settings.execution.max_workers = int(os.environ.get("LLMTWIN_MAX_WORKERS", "8"))
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    memo.applier = Applier(client.ApiClient(), field_manager=FIELD_MANAGER)
    memo.settings = load()
    metrics_port = int(os.environ.get("LLMTWIN_METRICS_PORT", "0"))
    if metrics_port:
        start_http_server(metrics_port, addr=os.environ.get("LLMTWIN_METRICS_ADDR", "0.0.0.0"))


@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE)
@kopf.on.resume(*RESOURCE)
def reconcile_twin(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: logging.Logger, **_) -> None:
    reconcile.reconcile(body, patch, memo.applier, memo.settings, logger)


@kopf.timer(*RESOURCE, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)
def resync_twin(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: logging.Logger, **_) -> None:
    if body.metadata.get("deletionTimestamp"):
        return
    reconcile.reconcile(body, patch, memo.applier, memo.settings, logger)


@kopf.on.delete(*RESOURCE)
def finalize_twin(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: logging.Logger, **_) -> None:
    finalize.finalize(body, patch, memo.settings, logger)


@kopf.on.probe(id="twins")
def probe_twins(memo: kopf.Memo, **_) -> str:
    return "ok" if getattr(memo, "applier", None) else "starting"
