"""A change to one object of a source, as an ingest Workflow carries it: the gateway writes a batch of
them as a JSON list into the Workflow's `objects` parameter, the `ingest-objects` step reads it back."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Literal

EVENT_TYPES = ("put", "delete")


@dataclass(frozen=True)
class ObjectChange:
    bucket: str
    key: str
    event_type: Literal["put", "delete"] = "put"
    # What the notification said; the ingest step reads the object's current state, whatever these say.
    etag: str = ""
    version_id: str = ""
    event_id: str = ""


def encode_changes(changes: list[ObjectChange]) -> str:
    # vars(), not asdict(): the fields are flat strings, and asdict's deep copy was a fifth of the gateway's time.
    return json.dumps([vars(c) for c in changes], separators=(",", ":"), ensure_ascii=False)


def decode_changes(text: str) -> list[ObjectChange]:
    """The changes of an `objects` parameter; a ValueError names what is wrong with it."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"objects is not JSON: {exc}") from exc
    if not isinstance(items, list):
        raise ValueError("objects must be a JSON list")
    known = {f.name for f in fields(ObjectChange)}
    changes = []
    for i, item in enumerate(items):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("bucket"), str)
            or not isinstance(item.get("key"), str)
        ):
            raise ValueError(f"objects[{i}] needs a bucket and a key")
        if item.get("event_type", "put") not in EVENT_TYPES or set(item) - known:
            raise ValueError(f"objects[{i}]: event_type must be one of {EVENT_TYPES}; fields are {sorted(known)}")
        changes.append(ObjectChange(**{k: str(v) for k, v in item.items()}))
    return changes
