"""Pure planning of bucket notifications: which queue configs a twin wants, which are its own, what to write.

Notification configs are ours when their id starts with `llmtwin-`, and a twin's own when it starts
with `llmtwin-<namespace>.<name>_`: two twins on one bucket each keep their config (MinIO sends one
message per target however many configs match), so deleting one never silences the other, and a
config left behind by a spec edit (a new prefix) is replaced. Configs anyone else set are kept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from minio.notificationconfig import PrefixFilterRule, QueueConfig, SuffixFilterRule

from llmtwin.api.v1alpha1 import LLMTwin, SourceSpec

NOTIFY_EVENTS = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]
CONFIG_ID_PREFIX = "llmtwin-"

BucketGroups = dict[tuple[str, str], list[SourceSpec]]


def kafka_target_arn(target_id: str, region: str = "") -> str:
    """The ARN of MinIO's native Kafka target `MINIO_NOTIFY_KAFKA_*_<target_id>`."""
    return f"arn:minio:sqs:{region}:{target_id}:kafka"


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


def buckets_of(twin: LLMTwin, default_endpoint: str) -> BucketGroups:
    """The twin's sources grouped by (endpoint, bucket): one bucket, one notification write."""
    groups: BucketGroups = {}
    for source in twin.spec.sources:
        groups.setdefault((source.endpoint or default_endpoint, source.bucket), []).append(source)
    return groups


def dropped_buckets(twin: LLMTwin, default_endpoint: str) -> BucketGroups:
    """Buckets in `status.buckets` that no source names any more, each as a source that reaches it
    (endpoint and Secret as recorded when it was wired)."""
    current = buckets_of(twin, default_endpoint)
    return {
        (b.endpoint, b.bucket): [
            SourceSpec(bucket=b.bucket, endpoint=b.endpoint, credentials_secret_ref=b.credentials_secret_ref)
        ]
        for b in twin.status.buckets
        if (b.endpoint, b.bucket) not in current
    }
