"""The event plane of one twin: its buckets notify Kafka, and the Kafka topics exist.

Pure-ish functions the operator's handlers call with a MinIO client built from the twin's Secret:
each one converges (calling it twice changes nothing the second time) and says whether it wrote.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import urlparse

from minio import Minio
from minio.error import S3Error
from minio.notificationconfig import NotificationConfig, PrefixFilterRule, QueueConfig, SuffixFilterRule

from llmtwin.api.v1alpha1 import SourceSpec
from llmtwin.settings import Settings

NOTIFY_EVENTS = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]
# Our queue configs carry this id prefix, so we never touch notifications someone else set.
CONFIG_ID_PREFIX = "llmtwin-"


class BucketMissing(RuntimeError):
    """The bucket does not exist and the spec says not to create it (createBucket: false)."""


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str


def kafka_target_arn(settings: Settings, region: str = "") -> str:
    """The ARN of MinIO's native Kafka target `MINIO_NOTIFY_KAFKA_*_<id>` (id from settings)."""
    return f"arn:minio:sqs:{region}:{settings.minio_kafka_target}:kafka"


def minio_client_for(source: SourceSpec, settings: Settings, credentials: Credentials) -> Minio:
    """A client for the source's endpoint (or the platform's default MinIO) with Secret credentials."""
    url = urlparse(source.endpoint or settings.s3_endpoint)
    return Minio(
        url.netloc, access_key=credentials.access_key, secret_key=credentials.secret_key, secure=url.scheme == "https"
    )


def ensure_bucket(client: Minio, source: SourceSpec) -> bool:
    """Create the source bucket if allowed; True when it was created. BucketMissing when not allowed."""
    if client.bucket_exists(source.bucket):
        return False
    if not source.create_bucket:
        raise BucketMissing(f"bucket {source.bucket!r} does not exist and createBucket is false")
    try:
        client.make_bucket(source.bucket)
    except S3Error as exc:
        if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
        return False
    return True


def config_id(source: SourceSpec) -> str:
    """One queue config per (prefix, suffix) of a bucket: two twins on one prefix share it."""
    digest = hashlib.sha1(f"{source.prefix}\0{source.suffix}".encode()).hexdigest()[:12]
    return f"{CONFIG_ID_PREFIX}{digest}"


def desired_queue_config(source: SourceSpec, target_arn: str) -> QueueConfig:
    return QueueConfig(
        queue=target_arn,
        events=NOTIFY_EVENTS,
        config_id=config_id(source),
        prefix_filter_rule=PrefixFilterRule(source.prefix) if source.prefix else None,
        suffix_filter_rule=SuffixFilterRule(source.suffix) if source.suffix else None,
    )


def _same(a: QueueConfig, b: QueueConfig) -> bool:
    def rule(r) -> str | None:
        return r.value if r else None

    return (
        a.queue == b.queue
        and sorted(a.events) == sorted(b.events)
        and rule(a.prefix_filter_rule) == rule(b.prefix_filter_rule)
        and rule(a.suffix_filter_rule) == rule(b.suffix_filter_rule)
    )


def ensure_bucket_notification(client: Minio, source: SourceSpec, target_arn: str) -> bool:
    """Put our queue config for this source (keeping every other config); True when it wrote."""
    current = client.get_bucket_notification(source.bucket)
    wanted = desired_queue_config(source, target_arn)
    mine = [q for q in current.queue_config_list if q.config_id == wanted.config_id]
    if len(mine) == 1 and _same(mine[0], wanted):
        return False
    others = [q for q in current.queue_config_list if q.config_id != wanted.config_id]
    client.set_bucket_notification(
        source.bucket,
        NotificationConfig(
            cloud_func_config_list=current.cloud_func_config_list,
            queue_config_list=[*others, wanted],
            topic_config_list=current.topic_config_list,
        ),
    )
    return True


def remove_bucket_notification(client: Minio, source: SourceSpec) -> bool:
    """Remove our queue config for this source (deletionPolicy: Delete); True when it wrote."""
    if not client.bucket_exists(source.bucket):
        return False
    current = client.get_bucket_notification(source.bucket)
    keep = [q for q in current.queue_config_list if q.config_id != config_id(source)]
    if len(keep) == len(current.queue_config_list):
        return False
    config = NotificationConfig(
        cloud_func_config_list=current.cloud_func_config_list,
        queue_config_list=keep,
        topic_config_list=current.topic_config_list,
    )
    if keep or current.cloud_func_config_list or current.topic_config_list:
        client.set_bucket_notification(source.bucket, config)
    else:
        client.delete_bucket_notification(source.bucket)
    return True


def ensure_topics(bootstrap: str, topics: list[str], partitions: int = 3, replication: int = 1) -> list[str]:
    """Create the missing topics (objects, alerts, DLQ); returns the ones created."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="llmtwin-operator")
    try:
        missing = [t for t in topics if t not in set(admin.list_topics())]
        if not missing:
            return []
        try:
            admin.create_topics([NewTopic(t, partitions, replication) for t in missing])
        except TopicAlreadyExistsError:
            pass  # created concurrently (another replica, or MinIO's auto-create): converged anyway
        return missing
    finally:
        admin.close()


def event_topics(settings: Settings) -> list[str]:
    return [settings.objects_topic, settings.alerts_topic, settings.dlq_topic]
