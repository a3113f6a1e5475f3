"""One twin's event plane, converged by every reconcile and removed by the finalizer.

`wire` makes each bucket of the twin exist and notify MinIO's Kafka target with the twin's own
queue configs, removes them from buckets the spec no longer names, and reports per bucket what it
found (`status.buckets`). `unwire` removes the twin's configs everywhere (deletionPolicy: Delete).
Both only read when nothing needs to change. Credentials come from the twin's namespace only: the
source's `credentialsSecretRef`, else the platform Secret (`LLMTWIN_S3_SECRET`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from llmtwin.api.conditions import USER_ACTION_REASONS, Reason
from llmtwin.api.errors import ReasonedError
from llmtwin.api.v1alpha1 import BucketStatus, LLMTwin, SecretKeyRef, SourceSpec
from llmtwin.config import PlatformSettings
from llmtwin.operator.eventplane.buckets import ensure_bucket, put_queue_configs
from llmtwin.operator.eventplane.plan import (
    BucketGroups,
    buckets_of,
    desired_queue_config,
    dropped_buckets,
    kafka_target_arn,
    owned_by,
    twin_config_prefix,
)
from llmtwin.operator.status import Failure
from llmtwin.secrets import Secrets
from llmtwin.sources.credentials import secret_ref, source_credentials
from llmtwin.sources.s3 import FAST_FAIL, minio_client

# status.buckets states besides the StorageReady reasons: notification in place; left the spec but its
# notification could not be removed yet.
NOTIFYING = "Notifying"
REMOVING = "Removing"


@dataclass
class Wiring:
    """What `wire` found for one twin: a `status.buckets` entry per bucket, the failures, the writes
    it made, and what it could not clean up (for the log)."""

    buckets: list[BucketStatus] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class BucketResult:
    endpoint: str
    bucket: str
    secret: SecretKeyRef
    writes: list[str] = field(default_factory=list)
    failure: Failure | None = None

    def status(self, state: str | None = None) -> BucketStatus:
        state = state or (self.failure.reason if self.failure else NOTIFYING)
        return BucketStatus(bucket=self.bucket, endpoint=self.endpoint, credentials_secret_ref=self.secret, state=state)


_bucket_locks: dict[tuple[str, str], threading.Lock] = {}
_bucket_locks_guard = threading.Lock()


def _bucket_lock(endpoint: str, bucket: str) -> threading.Lock:
    """A bucket's notification config is one document, read, modified and written back: serialise our
    own writers (there is one operator replica) so two twins on one bucket cannot drop each other's."""
    with _bucket_locks_guard:
        return _bucket_locks.setdefault((endpoint, bucket), threading.Lock())


def _failure(exc: Exception, endpoint: str, bucket: str, source: SourceSpec) -> Failure:
    if isinstance(exc, ReasonedError):
        if exc.reason in USER_ACTION_REASONS:  # say which setting names the Secret
            which = "credentialsSecretRef" if source.credentials_secret_ref else "platform default (LLMTWIN_S3_SECRET)"
            return Failure(exc.reason, f"{exc.detail} ({which} of bucket {bucket!r})")
        return Failure(exc.reason, exc.detail)
    if isinstance(exc, S3Error):
        return Failure(Reason.STORAGE_REJECTED, f"{endpoint} bucket {bucket!r}: {exc.code}: {exc.message}")
    cause = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) else exc
    return Failure(Reason.STORAGE_UNAVAILABLE, f"{endpoint} unreachable (bucket {bucket!r}): {cause}")


BucketStep = Callable[[Minio, str, list[SourceSpec]], Iterable[str]]


def _each_bucket(groups: BucketGroups, secrets: Secrets, default_secret: str, step: BucketStep) -> list[BucketResult]:
    """Run `step` (yielding a description of each write it made) on every bucket of `groups`, with a
    client opened with the first source's Secret; failures are reported per bucket, never raised."""
    results = []
    for (endpoint, bucket), sources in groups.items():
        ref = secret_ref(sources[0], default_secret)
        result = BucketResult(endpoint, bucket, ref)
        try:
            client = minio_client(endpoint, source_credentials(secrets, ref), retries=FAST_FAIL)
            with _bucket_lock(endpoint, bucket):
                result.writes += step(client, bucket, sources)
        except (ReasonedError, MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            result.failure = _failure(exc, endpoint, bucket, sources[0])
        results.append(result)
    return results


def _remove_configs_of(twin: LLMTwin) -> BucketStep:
    def remove(client: Minio, bucket: str, sources: list[SourceSpec]) -> Iterable[str]:
        if client.bucket_exists(bucket) and put_queue_configs(client, bucket, [], owned_by(twin)):
            yield f"notification {bucket} removed"

    return remove


def wire(twin: LLMTwin, settings: PlatformSettings, secrets: Secrets) -> Wiring:
    """Converge the twin's buckets and notification configs; buckets the spec dropped lose the twin's
    configs (a failure there keeps the bucket listed, so the next resync tries again)."""
    arn = kafka_target_arn(settings.minio_kafka_target)
    owner = twin_config_prefix(twin)

    def wire_bucket(client: Minio, bucket: str, sources: list[SourceSpec]) -> Iterable[str]:
        if ensure_bucket(client, bucket, may_create=any(s.create_bucket for s in sources)):
            yield f"bucket {bucket}"
        if put_queue_configs(client, bucket, [desired_queue_config(s, arn, owner) for s in sources], owned_by(twin)):
            yield f"notification {bucket}"

    wiring = Wiring()
    endpoint, secret = settings.s3_endpoint, settings.s3_secret
    for result in _each_bucket(buckets_of(twin, endpoint), secrets, secret, wire_bucket):
        wiring.writes += result.writes
        wiring.buckets.append(result.status())
        if result.failure:
            wiring.failures.append(result.failure)
    for result in _each_bucket(dropped_buckets(twin, endpoint), secrets, secret, _remove_configs_of(twin)):
        wiring.writes += result.writes
        if result.failure and result.failure.reason in USER_ACTION_REASONS:
            wiring.warnings.append(f"{result.bucket} left the spec; its notification stays: {result.failure.message}")
        elif result.failure:
            wiring.buckets.append(result.status(REMOVING))
    return wiring


def unwire(twin: LLMTwin, settings: PlatformSettings, secrets: Secrets, logger: logging.Logger) -> None:
    """Remove the twin's notification configs from its buckets, the spec's and any still listed in
    status. A missing Secret or bucket leaves nothing we could remove (the namespace may be going away
    with it); anything else raises, so the finalizer stays and the clean-up is retried."""
    groups = {**dropped_buckets(twin, settings.s3_endpoint), **buckets_of(twin, settings.s3_endpoint)}
    retry = []
    for result in _each_bucket(groups, secrets, settings.s3_secret, _remove_configs_of(twin)):
        for removed in result.writes:
            logger.info(removed)
        if result.failure and result.failure.reason in USER_ACTION_REASONS:
            logger.warning("cannot remove bucket notifications: %s", result.failure.message)
        elif result.failure:
            retry.append(result.failure.message)
    if retry:
        raise RuntimeError("; ".join(retry))
