"""The event plane of one twin: its buckets exist and notify MinIO's Kafka target, and the topics exist.

`wire` converges all of it for one twin and reports per bucket what it found (`status.buckets`), and
removes the twin's notification from buckets its spec no longer names; `unwire` removes the twin's
bucket notifications (deletionPolicy: Delete). Both only read when nothing needs to change,
and every write is counted in the operator's API write counter. Credentials come only from Secrets in
the twin's namespace: the source's `credentialsSecretRef`, else the platform Secret named by
`LLMTWIN_S3_SECRET` (keys `accessKey` / `secretKey`, the same ones the workflow pods read).

Notification configs are ours when their id starts with `llmtwin-`, and a twin's own when it starts
with `llmtwin-<namespace>.<name>_`: two twins on one bucket each keep their config (MinIO sends one
message per target however many configs match), so deleting one never silences the other, and a
config left behind by a spec edit (a new prefix) is replaced. Configs anyone else set are kept.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlparse

import certifi
import urllib3
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kubernetes import client as kube
from kubernetes.client.exceptions import ApiException
from minio import Minio
from minio.error import MinioException, S3Error
from minio.notificationconfig import NotificationConfig, PrefixFilterRule, QueueConfig, SuffixFilterRule

from llmtwin.api.v1alpha1 import BucketStatus, LLMTwin, SecretKeyRef, SourceSpec
from llmtwin.operator.apply import API_READS, API_WRITES
from llmtwin.settings import Settings

NOTIFY_EVENTS = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]
CONFIG_ID_PREFIX = "llmtwin-"
# A reconcile must not hang on a dead endpoint (minio's default is 5 minutes and 5 retries).
S3_TIMEOUT = urllib3.Timeout(connect=3, read=15)
S3_RETRIES = urllib3.Retry(total=1, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504])
KAFKA_TIMEOUT_MS = 5000

# StorageReady reasons. The first two need a user to fix the twin's namespace (Degraded too); the
# others may heal by themselves, so the resync timer retries them.
SECRET_MISSING = "SecretMissing"
SECRET_INVALID = "SecretInvalid"
BUCKET_MISSING = "BucketMissing"
STORAGE_UNAVAILABLE = "StorageUnavailable"
STORAGE_REJECTED = "StorageRejected"
KAFKA_UNAVAILABLE = "KafkaUnavailable"
CONFIGURATION_REASONS = frozenset({SECRET_MISSING, SECRET_INVALID})
# status.buckets states besides the reasons above: notification in place; left the spec but its
# notification could not be removed yet.
NOTIFYING = "Notifying"
REMOVING = "Removing"


class WiringError(RuntimeError):
    """A step of the event plane failed in a way the StorageReady condition reports as `reason`."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str


@dataclass(frozen=True)
class Failure:
    reason: str
    message: str


@dataclass
class Wiring:
    """What `wire` found for one twin: a `status.buckets` entry per bucket, the failures, the writes
    it made, and what it could not clean up (for the log)."""

    buckets: list[BucketStatus] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------ pure parts


def kafka_target_arn(settings: Settings, region: str = "") -> str:
    """The ARN of MinIO's native Kafka target `MINIO_NOTIFY_KAFKA_*_<id>` (id from settings)."""
    return f"arn:minio:sqs:{region}:{settings.minio_kafka_target}:kafka"


def event_topics(settings: Settings) -> list[str]:
    return [settings.objects_topic, settings.alerts_topic, settings.dlq_topic]


def secret_ref(source: SourceSpec, settings: Settings) -> SecretKeyRef:
    """The source's Secret, else the platform's default one (with the default key names)."""
    return source.credentials_secret_ref or SecretKeyRef(name=settings.s3_secret)


def credentials_from_secret(data: dict[str, str], ref: SecretKeyRef) -> Credentials:
    """Decode the access and secret keys from a Secret's `data` (base64 values)."""
    missing = [key for key in (ref.access_key_key, ref.secret_key_key) if not data.get(key)]
    if missing:
        raise WiringError(SECRET_INVALID, f"Secret {ref.name} has no key {', '.join(missing)}")
    return Credentials(
        access_key=base64.b64decode(data[ref.access_key_key]).decode(),
        secret_key=base64.b64decode(data[ref.secret_key_key]).decode(),
    )


def twin_config_prefix(twin: LLMTwin) -> str:
    # Unambiguous: a namespace has no `.`, and no Kubernetes name has a `_`.
    return f"{CONFIG_ID_PREFIX}{twin.namespace}.{twin.name}_"


def owned_by(twin: LLMTwin) -> Callable[[str], bool]:
    """Whether a notification config id is one of this twin's."""
    prefix = twin_config_prefix(twin)
    return lambda config_id: config_id.startswith(prefix)


def config_id(source: SourceSpec, owner_prefix: str = CONFIG_ID_PREFIX) -> str:
    """One queue config per owner and (prefix, suffix) filter; the digest keeps the id short."""
    digest = hashlib.sha1(f"{source.prefix}\0{source.suffix}".encode()).hexdigest()[:12]
    return f"{owner_prefix}{digest}"


def desired_queue_config(source: SourceSpec, target_arn: str, owner_prefix: str = CONFIG_ID_PREFIX) -> QueueConfig:
    return QueueConfig(
        queue=target_arn,
        events=NOTIFY_EVENTS,
        config_id=config_id(source, owner_prefix),
        prefix_filter_rule=PrefixFilterRule(source.prefix) if source.prefix else None,
        suffix_filter_rule=SuffixFilterRule(source.suffix) if source.suffix else None,
    )


def _identity(config: QueueConfig) -> tuple:
    """What a queue config does, as MinIO returns it (events in any order, absent filters as None)."""

    def value(rule) -> str | None:
        return rule.value if rule else None

    return (
        config.config_id or "",
        config.queue,
        tuple(sorted(config.events)),
        value(config.prefix_filter_rule),
        value(config.suffix_filter_rule),
    )


def planned_queue_configs(
    current: list[QueueConfig], wanted: list[QueueConfig], owns: Callable[[str], bool]
) -> list[QueueConfig] | None:
    """The bucket's queue configs with the ones `owns` claims replaced by `wanted`; None when they
    already match (no write needed)."""
    mine = [q for q in current if owns(q.config_id or "")]
    if sorted(map(_identity, mine)) == sorted(map(_identity, wanted)):
        return None
    return [q for q in current if not owns(q.config_id or "")] + wanted


BucketGroups = dict[tuple[str, str], list[SourceSpec]]


def buckets_of(twin: LLMTwin, settings: Settings) -> BucketGroups:
    """The twin's sources grouped by (endpoint, bucket): one bucket, one notification write."""
    groups: BucketGroups = {}
    for source in twin.spec.sources:
        groups.setdefault((source.endpoint or settings.s3_endpoint, source.bucket), []).append(source)
    return groups


def dropped_buckets(twin: LLMTwin, settings: Settings) -> BucketGroups:
    """Buckets in `status.buckets` that no source names any more, each as a source that reaches it
    (endpoint and Secret as recorded when it was wired)."""
    current = buckets_of(twin, settings)
    return {
        (b.endpoint, b.bucket): [
            SourceSpec(bucket=b.bucket, endpoint=b.endpoint, credentials_secret_ref=b.credentials_secret_ref)
        ]
        for b in twin.status.buckets
        if (b.endpoint, b.bucket) not in current
    }


# ------------------------------------------------------------------------------------ MinIO, Kafka


def read_secret(namespace: str, name: str) -> dict[str, str] | None:
    """A Secret's data, None when it does not exist (kopf's startup loaded the kube config)."""
    API_READS.labels("Secret").inc()
    try:
        return kube.CoreV1Api().read_namespaced_secret(name, namespace).data or {}
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def source_credentials(twin: LLMTwin, source: SourceSpec, settings: Settings) -> Credentials:
    ref = secret_ref(source, settings)
    data = read_secret(twin.namespace, ref.name)
    if data is None:
        which = "credentialsSecretRef" if source.credentials_secret_ref else "platform default (LLMTWIN_S3_SECRET)"
        raise WiringError(
            SECRET_MISSING, f"Secret {twin.namespace}/{ref.name} not found ({which} of bucket {source.bucket!r})"
        )
    return credentials_from_secret(data, ref)


def minio_client(endpoint: str, credentials: Credentials) -> Minio:
    url = urlparse(endpoint)
    http = urllib3.PoolManager(
        timeout=S3_TIMEOUT,
        retries=S3_RETRIES,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
    )
    return Minio(
        url.netloc,
        access_key=credentials.access_key,
        secret_key=credentials.secret_key,
        secure=url.scheme == "https",
        http_client=http,
    )


def ensure_bucket(client: Minio, bucket: str, may_create: bool) -> bool:
    """Create the bucket if it is missing and allowed; True when it was created."""
    if client.bucket_exists(bucket):
        return False
    if not may_create:
        raise WiringError(BUCKET_MISSING, f"bucket {bucket!r} does not exist and createBucket is false")
    try:
        client.make_bucket(bucket)
    except S3Error as exc:
        if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
        return False
    API_WRITES.labels("Bucket", "create").inc()
    return True


def put_queue_configs(client: Minio, bucket: str, wanted: list[QueueConfig], owns: Callable[[str], bool]) -> bool:
    """Make the configs `owns` claims exactly `wanted`, keeping every other one; True when it wrote."""
    current = client.get_bucket_notification(bucket)
    planned = planned_queue_configs(current.queue_config_list, wanted, owns)
    if planned is None:
        return False
    if planned or current.cloud_func_config_list or current.topic_config_list:
        client.set_bucket_notification(
            bucket,
            NotificationConfig(
                cloud_func_config_list=current.cloud_func_config_list,
                queue_config_list=planned,
                topic_config_list=current.topic_config_list,
            ),
        )
        API_WRITES.labels("BucketNotification", "put").inc()
    else:
        client.delete_bucket_notification(bucket)
        API_WRITES.labels("BucketNotification", "delete").inc()
    return True


def ensure_bucket_notification(client: Minio, source: SourceSpec, target_arn: str) -> bool:
    """One source's queue config, owned by no twin (tests and benchmarks wire a bucket this way)."""
    wanted = desired_queue_config(source, target_arn)
    return put_queue_configs(client, source.bucket, [wanted], lambda config_id: config_id == wanted.config_id)


def ensure_topics(bootstrap: str, topics: list[str], partitions: int = 3, replication: int = -1) -> list[str]:
    """Create the missing topics (replication -1: the broker's default); returns the ones created."""
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="llmtwin-operator",
        bootstrap_timeout_ms=KAFKA_TIMEOUT_MS,
        request_timeout_ms=KAFKA_TIMEOUT_MS,
    )
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if not missing:
            return []
        try:
            admin.create_topics([NewTopic(t, partitions, replication) for t in missing])
        except TopicAlreadyExistsError:
            pass  # created concurrently (another replica, or MinIO's auto-create): converged anyway
        API_WRITES.labels("KafkaTopic", "create").inc(len(missing))
        return missing
    finally:
        admin.close()


# ------------------------------------------------------------------------------------ one twin


_bucket_locks: dict[tuple[str, str], threading.Lock] = {}
_bucket_locks_guard = threading.Lock()


def _bucket_lock(endpoint: str, bucket: str) -> threading.Lock:
    """A bucket's notification config is one document, read, modified and written back: serialise our
    own writers (there is one operator replica) so two twins on one bucket cannot drop each other's."""
    with _bucket_locks_guard:
        return _bucket_locks.setdefault((endpoint, bucket), threading.Lock())


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


def _failure(exc: Exception, endpoint: str, bucket: str) -> Failure:
    if isinstance(exc, WiringError):
        return Failure(exc.reason, str(exc))
    if isinstance(exc, S3Error):
        return Failure(STORAGE_REJECTED, f"{endpoint} bucket {bucket!r}: {exc.code}: {exc.message}")
    cause = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) else exc
    return Failure(STORAGE_UNAVAILABLE, f"{endpoint} unreachable (bucket {bucket!r}): {cause}")


def _each_bucket(
    twin: LLMTwin,
    settings: Settings,
    groups: BucketGroups,
    step: Callable[[Minio, str, list[SourceSpec]], Iterable[str]],
) -> list[BucketResult]:
    """Run `step` (yielding a description of each write it made) on every bucket of `groups`, with a
    client built from the first source's Secret; failures are reported per bucket, never raised."""
    results = []
    for (endpoint, bucket), sources in groups.items():
        result = BucketResult(endpoint, bucket, secret_ref(sources[0], settings))
        try:
            credentials = source_credentials(twin, sources[0], settings)
            with _bucket_lock(endpoint, bucket):
                result.writes += step(minio_client(endpoint, credentials), bucket, sources)
        except (WiringError, MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            result.failure = _failure(exc, endpoint, bucket)
        results.append(result)
    return results


def _remove_configs_of(twin: LLMTwin) -> Callable[[Minio, str, list[SourceSpec]], Iterable[str]]:
    def remove(client: Minio, bucket: str, sources: list[SourceSpec]) -> Iterable[str]:
        if client.bucket_exists(bucket) and put_queue_configs(client, bucket, [], owned_by(twin)):
            yield f"notification {bucket} removed"

    return remove


def wire(twin: LLMTwin, settings: Settings) -> Wiring:
    """Converge the twin's event plane: the topics (when a Kafka bootstrap is configured), then per
    bucket the bucket itself and the twin's notification configs; buckets the spec dropped lose the
    twin's configs (a failure there keeps the bucket listed, so the next resync tries again)."""
    arn = kafka_target_arn(settings)
    owner = twin_config_prefix(twin)

    def wire_bucket(client: Minio, bucket: str, sources: list[SourceSpec]) -> Iterable[str]:
        if ensure_bucket(client, bucket, may_create=any(s.create_bucket for s in sources)):
            yield f"bucket {bucket}"
        if put_queue_configs(client, bucket, [desired_queue_config(s, arn, owner) for s in sources], owned_by(twin)):
            yield f"notification {bucket}"

    wiring = Wiring()
    if settings.kafka_bootstrap:
        try:
            wiring.writes += [f"topic {t}" for t in ensure_topics(settings.kafka_bootstrap, event_topics(settings))]
        except (KafkaError, OSError) as exc:
            wiring.failures.append(Failure(KAFKA_UNAVAILABLE, f"Kafka {settings.kafka_bootstrap}: {exc}"))
    for result in _each_bucket(twin, settings, buckets_of(twin, settings), wire_bucket):
        wiring.writes += result.writes
        wiring.buckets.append(result.status())
        if result.failure:
            wiring.failures.append(result.failure)
    for result in _each_bucket(twin, settings, dropped_buckets(twin, settings), _remove_configs_of(twin)):
        wiring.writes += result.writes
        if result.failure and result.failure.reason in CONFIGURATION_REASONS:
            wiring.warnings.append(f"{result.bucket} left the spec; its notification stays: {result.failure.message}")
        elif result.failure:
            wiring.buckets.append(result.status(REMOVING))
    return wiring


def unwire(twin: LLMTwin, settings: Settings, logger: logging.Logger) -> None:
    """Remove the twin's notification configs from its buckets, the spec's and any still listed in
    status. A missing Secret or bucket leaves nothing we could remove (the namespace may be going away
    with it); anything else raises, so the finalizer stays and the clean-up is retried."""
    groups = {**dropped_buckets(twin, settings), **buckets_of(twin, settings)}
    retry = []
    for result in _each_bucket(twin, settings, groups, _remove_configs_of(twin)):
        for removed in result.writes:
            logger.info(removed)
        if result.failure and result.failure.reason in CONFIGURATION_REASONS:
            logger.warning("cannot remove bucket notifications: %s", result.failure.message)
        elif result.failure:
            retry.append(result.failure.message)
    if retry:
        raise RuntimeError("; ".join(retry))
