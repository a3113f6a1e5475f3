"""MinIO bucket notifications (as MinIO's Kafka target writes them) <-> `ObjectEvent`s.

Everything in a record is untrusted: keys arrive URL-encoded (Go's `url.QueryEscape`, so `+` is a
space), may hold any unicode, `%` or `..`, and are only ever passed on as data, never used as paths.
A message that cannot be understood raises `MalformedEvent` with a reason for the dead-letter topic.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote_plus, unquote_plus

from llmtwin.api.errors import ReasonedError

EventType = Literal["put", "delete"]
ORIGIN_ELEMENT = "x-minio-origin-endpoint"  # in each record's responseElements
MAX_KEY_BYTES = 1024  # S3's limit on object key length
# ObjectCreated events that change metadata only: the content (and so the index) is unchanged.
METADATA_ONLY = ("s3:ObjectCreated:PutTagging", "s3:ObjectCreated:PutRetention", "s3:ObjectCreated:PutLegalHold")


class MalformedEvent(ReasonedError):
    """A message that is not a usable notification; dead-lettered with reason `malformed` and this detail."""

    def __init__(self, detail: str):
        super().__init__("malformed", detail)


@dataclass(frozen=True)
class ObjectEvent:
    bucket: str
    key: str
    event_type: EventType
    etag: str
    version_id: str
    sequencer: str
    size: int
    event_time: float  # unix seconds, from the record (for end-to-end latency)
    event_id: str
    # The MinIO that sent it (`x-minio-origin-endpoint`: MINIO_SERVER_URL, else the node's own address);
    # "" when the record does not say (the folder watcher of `llmtwin up`).
    origin: str = ""

    @property
    def order(self) -> int:
        """MinIO's sequencer is the event's time in hex nanoseconds: larger is newer."""
        try:
            return int(self.sequencer, 16)
        except ValueError:
            return 0

    @property
    def revision(self) -> str:
        """What identifies this state of the object: the version in a versioned bucket, else the etag."""
        return self.version_id or self.etag

    def dedupe_key(self, twin_namespace: str, twin_name: str) -> str:
        """Same event delivered twice (replay after a crash, MinIO retry) -> same key -> same Workflow.

        The sequencer is part of it so that a re-upload after a delete is a new event, not a replay.
        """
        return "/".join(
            (twin_namespace, twin_name, self.bucket, self.key, self.revision, self.event_type, self.sequencer)
        )


def _field(record: dict[str, Any], *path: str, required: bool = True, default: Any = "") -> Any:
    value: Any = record
    for part in path:
        if not isinstance(value, dict) or part not in value:
            if required:
                raise MalformedEvent(f"record has no {'.'.join(path)}")
            return default
        value = value[part]
    return value


def _event_time(value: str) -> float:
    if not value:
        return time.time()
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise MalformedEvent(f"eventTime {value[:64]!r} is not ISO 8601") from exc


def _key(raw: Any) -> str:
    if not isinstance(raw, str) or not raw:
        raise MalformedEvent("s3.object.key is empty or not a string")
    key = unquote_plus(raw, errors="strict")
    if "\x00" in key:
        raise MalformedEvent("object key contains NUL")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise MalformedEvent(f"object key longer than {MAX_KEY_BYTES} bytes")
    return key


def _parse_record(record: Any) -> ObjectEvent | None:
    if not isinstance(record, dict):
        raise MalformedEvent("record is not an object")
    name = _field(record, "eventName")
    if not isinstance(name, str):
        raise MalformedEvent("eventName is not a string")
    if name in METADATA_ONLY:
        return None
    if name.startswith("s3:ObjectCreated:"):
        event_type: EventType = "put"
    elif name.startswith("s3:ObjectRemoved:"):
        event_type = "delete"
    else:
        raise MalformedEvent(f"unsupported eventName {name[:100]!r}")
    bucket = _field(record, "s3", "bucket", "name")
    if not isinstance(bucket, str) or not bucket:
        raise MalformedEvent("s3.bucket.name is empty or not a string")
    try:
        key = _key(_field(record, "s3", "object", "key"))
    except UnicodeDecodeError as exc:
        raise MalformedEvent("object key is not valid UTF-8 after URL-decoding") from exc
    obj = _field(record, "s3", "object")
    size = obj.get("size", 0)
    sequencer = str(obj.get("sequencer", ""))
    return ObjectEvent(
        bucket=bucket,
        key=key,
        event_type=event_type,
        etag=str(obj.get("eTag", "")).strip('"'),
        version_id=str(obj.get("versionId", "")),
        sequencer=sequencer,
        size=size if isinstance(size, int) and size >= 0 else 0,
        event_time=_event_time(str(_field(record, "eventTime", required=False))),
        event_id=hashlib.sha1(f"{bucket}/{key}/{name}/{sequencer}".encode()).hexdigest()[:20],
        origin=str((record.get("responseElements") or {}).get(ORIGIN_ELEMENT, "")),
    )


def parse_minio_message(value: bytes | None) -> list[ObjectEvent]:
    """The object events in one notification (metadata-only events are skipped, not errors)."""
    if not value:
        raise MalformedEvent("empty message")
    try:
        doc = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEvent(f"not JSON: {str(exc)[:200]}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("Records"), list) or not doc["Records"]:
        raise MalformedEvent("no Records[] in message")
    return [event for event in map(_parse_record, doc["Records"]) if event is not None]


def minio_message(
    bucket: str,
    key: str,
    event_type: EventType,
    etag: str = "",
    *,
    version_id: str = "",
    size: int = 0,
    sequencer: str | None = None,
    event_name: str | None = None,
    origin: str = "",
) -> bytes:
    """A notification in MinIO's format (for the folder watcher of `llmtwin up` and for tests)."""
    now = time.time_ns()
    name = event_name or ("s3:ObjectCreated:Put" if event_type == "put" else "s3:ObjectRemoved:Delete")
    obj: dict[str, Any] = {"key": quote_plus(key), "sequencer": sequencer or f"{now:X}"}
    if event_type == "put":
        obj.update(size=size, eTag=etag)
    if version_id:
        obj["versionId"] = version_id
    record = {
        "eventVersion": "2.0",
        "eventSource": "minio:s3",
        "eventTime": datetime.fromtimestamp(now / 1e9, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "eventName": name,
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket}, "object": obj},
    }
    if origin:
        record["responseElements"] = {ORIGIN_ELEMENT: origin}
    return json.dumps({"EventName": name, "Key": f"{bucket}/{key}", "Records": [record]}).encode()
