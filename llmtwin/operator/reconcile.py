"""What the kopf handlers do, without kopf's decorators: observe (validate, render, apply, wire the
event plane), decide the status (`status.decide`, pure), write it.

`reconcile` is level-based and idempotent: the create/update/resume handlers, the periodic resync
timer and, while a candidate is in its canary, the promotion timer all call it; when nothing changed
it makes no API writes at all (nor MinIO, Kafka or MLflow writes). The resync timer is also what
retries storage that was unreachable.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import kopf
from kubernetes.client.exceptions import ApiException
from mlflow.exceptions import MlflowException
from prometheus_client import Counter, Histogram
from pydantic import ValidationError

from llmtwin.api.conditions import Reason
from llmtwin.api.v1alpha1 import LLMTwin, LLMTwinStatus
from llmtwin.api.validation import spec_problems
from llmtwin.config import PlatformSettings
from llmtwin.corpus.store import milvus_access
from llmtwin.operator import builders, promotion
from llmtwin.operator.apply import API_WRITES, rejected
from llmtwin.operator.eventplane.wiring import wire
from llmtwin.operator.platform import Platform
from llmtwin.operator.status import Failure, Observation, StatusUpdate, decide
from llmtwin.operator.tenancy import Claim, claim, collection_conflict, collection_key
from llmtwin.secrets import KubernetesSecrets, SecretError, Secrets

RECONCILES = Counter("llmtwin_operator_reconciles_total", "Reconciles by the phase they left", ["result"])
RECONCILE_SECONDS = Histogram("llmtwin_operator_reconcile_seconds", "Time to reconcile one twin")
APPLY_RETRY_SECONDS = 10


def parse_twin(body: kopf.Body, settings: PlatformSettings) -> LLMTwin:
    """The twin as this platform runs it: an empty vectorStore.uri is the platform's Milvus."""
    twin = LLMTwin.model_validate(
        {
            "apiVersion": body.get("apiVersion"),
            "kind": body.get("kind"),
            "metadata": dict(body.metadata),
            "spec": dict(body.spec),
            "status": dict(body.status),
        }
    )
    return twin.with_default_milvus(settings.milvus_uri)


def promoting(status: dict) -> bool:
    """Whether a candidate is in its canary (what the promotion timer runs for)."""
    try:
        return LLMTwinStatus.model_validate(dict(status)).promoting_version is not None
    except ValidationError:
        return False


Collections = Mapping[tuple[str, str], Iterable[Claim]]  # the kopf index `main.twin_collections`


def collection_claim(body: kopf.Body, settings: PlatformSettings) -> dict[tuple[str, str], Claim] | None:
    """The twin's entry in the collections index; None for a spec that does not validate (it claims nothing)."""
    try:
        twin = parse_twin(body, settings)
    except ValidationError:
        return None
    return {collection_key(twin): claim(twin)}


def reconcile(
    body: kopf.Body, patch: kopf.Patch, platform: Platform, collections: Collections, logger: logging.Logger
) -> None:
    with RECONCILE_SECONDS.time():
        update = decide(observe(body, platform, collections, logger), dict(body.status))
        write_status(body, patch, update, logger)
    RECONCILES.labels(update.phase.lower()).inc()


def observe(body: kopf.Body, platform: Platform, collections: Collections, logger: logging.Logger) -> Observation:
    observation = Observation(generation=body.metadata.get("generation"))
    try:
        twin = parse_twin(body, platform.settings)
    except ValidationError as exc:
        # The schema admitted it but the typed model did not: report, do not retry in a loop.
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        observation.problems.append(Failure(Reason.SPEC_INVALID, f"spec does not validate: {where}: {error['msg']}"))
        return observation
    observation.problems += [Failure(Reason.SPEC_INVALID, str(p)) for p in spec_problems(twin)]
    if conflict := collection_conflict(twin, collections.get(collection_key(twin), [])):
        observation.problems.append(conflict)
    if observation.problems:
        return observation
    observation.promotion = promote(twin, platform, logger)
    # Rendered from the status after the decision: a rejected candidate's Rollout goes back at once.
    twin.status = observation.promotion.applied_to(twin.status)
    children = builders.children(twin, platform.settings)
    observation.problems += apply_children(body, twin, children, platform, logger)
    observation.fields["children"] = [f"{c['kind']}/{c['metadata']['name']}" for c in children]
    prune_children(body, observation.fields["children"], platform, logger)
    observation.fields["collection"] = twin.collection
    secrets = KubernetesSecrets(platform.core, twin.namespace)
    observation.problems += milvus_secret_problems(twin, secrets)

    wiring = wire(twin, platform.settings, secrets)
    if wiring.writes:
        logger.info("event plane: wrote %s", ", ".join(wiring.writes))
    for warning in wiring.warnings:
        logger.warning("event plane: %s", warning)
    observation.fields["buckets"] = [b.wire() for b in wiring.buckets]
    topics = platform.topics.failure()
    observation.storage = ([topics] if topics else []) + wiring.failures
    observation.storage_message = "; ".join(f"{b.bucket}: {b.state}" for b in wiring.buckets)
    return observation


def milvus_secret_problems(twin: LLMTwin, secrets: Secrets) -> list[Failure]:
    """The Milvus token and CA bundle the spec names must be there: the steps and the front door mount them
    (their pods wait for a missing one) and the finalizer reads them to drop the collection."""
    try:
        milvus_access(twin, secrets)
    except SecretError as exc:
        return [Failure(exc.reason, f"spec.vectorStore: {exc.detail}")]
    return []


def promote(twin: LLMTwin, platform: Platform, logger: logging.Logger) -> promotion.Promotion:
    """Decide the candidate's fate from the Rollout's state; move MLflow's aliases to match."""
    decision = promotion.decide(twin.status, promotion.read_rollout(platform.applier, twin))
    if decision.action in ("promote", "reject"):
        try:
            promotion.record(decision, twin, platform.settings.mlflow_tracking_uri)
        except (MlflowException, OSError) as exc:  # MLflow down: the status waits (the decision is redone)
            raise kopf.TemporaryError(f"MLflow: {decision.action} version {decision.version}: {exc}", delay=10) from exc
        logger.info("version %s: %s %s", decision.version, decision.action, decision.reason)
    return decision


def apply_children(
    body: kopf.Body, twin: LLMTwin, children: list[dict], platform: Platform, logger: logging.Logger
) -> list[Failure]:
    """Apply each child (owned by the twin); the ones the API rejects are returned as failures."""
    failures, written = [], []
    for child in children:
        kopf.append_owner_reference(child, owner=body)
        what = f"{child['kind']}/{child['metadata']['name']}"
        try:
            if platform.applier.apply(child, builders.kept_live_fields(twin, child)):
                written.append(what)
        except ApiException as exc:
            if not rejected(exc):
                raise kopf.TemporaryError(
                    f"applying {what}: {exc.status} {exc.reason}", delay=APPLY_RETRY_SECONDS
                ) from exc
            detail = (exc.body or "")[:500]
            failures.append(Failure(Reason.APPLY_FAILED, f"{what}: {exc.status} {exc.reason}: {detail}"))
    if written:
        logger.info("applied %s", ", ".join(written))
    return failures


def prune_children(body: kopf.Body, rendered: list[str], platform: Platform, logger: logging.Logger) -> None:
    """Delete the optional children the last reconcile rendered and this one does not (an HPA after
    autoscaling is turned off: left alone it would keep scaling the Rollout)."""
    for child in set(body.status.get("children") or []) - set(rendered):
        kind, _, name = child.partition("/")
        if kind in builders.OPTIONAL_CHILDREN and platform.applier.delete(
            builders.OPTIONAL_CHILDREN[kind], kind, name, body.metadata.namespace
        ):
            logger.info("deleted %s: no longer in the spec", child)


def write_status(body: kopf.Body, patch: kopf.Patch, update: StatusUpdate, logger: logging.Logger) -> None:
    for key, value in update.status.items():
        patch.status[key] = value
    if update.status:  # kopf sends the patch when the handler returns: one write
        API_WRITES.labels("LLMTwin", "patch-status").inc()
    for event in update.events:
        API_WRITES.labels("Event", "create").inc()
        kopf.event(body, type=event.type, reason=event.reason, message=event.message[:1024])
        (logger.warning if event.type == "Warning" else logger.info)("%s: %s", event.reason, event.message)
