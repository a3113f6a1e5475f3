"""What changed between the sources and the collection: the resume point after any stop.

The inbox folder stands in for a bucket (`<inbox>/<bucket>/<key>`); a source that names an endpoint
is listed from MinIO/S3 instead (no bucket notifications reach a laptop without Kafka).
"""

from __future__ import annotations

from pathlib import Path

from llmtwin.api.v1alpha1 import SourceSpec
from llmtwin.sources.changes import ObjectChange
from llmtwin.sources.objects import ObjectStore


def pending_changes(
    sources: list[tuple[SourceSpec, ObjectStore]], stored: dict[tuple[str, str], str]
) -> list[ObjectChange]:
    """Objects whose etag differs from the stored one (new or changed), and stored ones now gone."""
    changes = []
    present = set()
    for source, objects in sources:
        for info in objects.list(source.bucket, source.prefix):
            present.add((info.bucket, info.key))
            if stored.get((info.bucket, info.key)) != info.etag:
                changes.append(ObjectChange(info.bucket, info.key, "put"))
    buckets = {source.bucket for source, _ in sources}
    changes += [ObjectChange(b, k, "delete") for (b, k) in stored if b in buckets and (b, k) not in present]
    return changes


def change_for_path(inbox: Path, path: str, deleted: bool) -> ObjectChange | None:
    """The object a file event in the inbox is about; None outside a bucket folder or for hidden files."""
    try:
        relative = Path(path).resolve().relative_to(inbox.resolve())
    except ValueError:
        return None
    parts = relative.parts
    if len(parts) < 2 or any(p.startswith(".") for p in parts):
        return None
    return ObjectChange(parts[0], "/".join(parts[1:]), "delete" if deleted else "put")
