"""The MinIO side of the event plane: a bucket exists, and its queue configs are what a twin wants.

Each write is counted in `llmtwin_operator_api_writes_total` (kind Bucket / BucketNotification), so
a reconcile that found everything in place is seen to have written nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from minio import Minio
from minio.error import S3Error
from minio.notificationconfig import NotificationConfig, QueueConfig

from llmtwin.api.conditions import Reason
from llmtwin.api.errors import ReasonedError
from llmtwin.operator.apply import API_WRITES
from llmtwin.operator.eventplane.plan import planned_queue_configs


class StorageError(ReasonedError):
    """A bucket that cannot be wired for a reason StorageReady reports (BucketMissing, ...)."""


def ensure_bucket(client: Minio, bucket: str, may_create: bool) -> bool:
    """Create the bucket if it is missing and allowed; True when it was created."""
    if client.bucket_exists(bucket):
        return False
    if not may_create:
        raise StorageError(Reason.BUCKET_MISSING, f"bucket {bucket!r} does not exist and createBucket is false")
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
