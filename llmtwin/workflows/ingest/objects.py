"""Where a source's objects are read from: MinIO/S3, or a folder (`llmtwin up`'s inbox).

Keys are untrusted input: the folder store resolves them strictly inside the bucket folder, and
neither store reads past the spec's size limit.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from llmtwin.api.v1alpha1 import SourceSpec
from llmtwin.settings import Settings


class ObjectTooLarge(ValueError):
    pass


class ObjectMissing(FileNotFoundError):
    pass


class UnsafeKey(ValueError):
    pass


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    key: str
    size: int
    etag: str


class ObjectStore(Protocol):
    def stat(self, bucket: str, key: str) -> ObjectInfo: ...
    def read(self, bucket: str, key: str, max_bytes: int) -> bytes: ...
    def list(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]: ...


class FolderStore:
    """`<root>/<bucket>/<key>`; the etag is the content hash, so an unchanged file is a no-op."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, bucket: str, key: str) -> Path:
        base = (self.root / bucket).resolve()
        target = (base / key).resolve()
        if base not in target.parents:
            raise UnsafeKey(f"key {key!r} escapes bucket {bucket!r}")
        return target

    def stat(self, bucket: str, key: str) -> ObjectInfo:
        path = self.path(bucket, key)
        if not path.is_file():
            raise ObjectMissing(f"{bucket}/{key}")
        digest = hashlib.sha1(path.read_bytes()).hexdigest()
        return ObjectInfo(bucket, key, path.stat().st_size, digest)

    def read(self, bucket: str, key: str, max_bytes: int) -> bytes:
        path = self.path(bucket, key)
        if path.stat().st_size > max_bytes:
            raise ObjectTooLarge(f"{path.stat().st_size} bytes > limit {max_bytes}")
        return path.read_bytes()

    def list(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        base = self.root / bucket
        if not base.is_dir():
            return
        for path in sorted(p for p in base.rglob("*") if p.is_file() and not p.name.startswith(".")):
            key = path.relative_to(base).as_posix()
            if key.startswith(prefix):
                yield self.stat(bucket, key)


class MinioStore:
    def __init__(self, endpoint: str, access_key: str, secret_key: str):
        from minio import Minio

        url = urlparse(endpoint)
        self.client = Minio(url.netloc, access_key=access_key, secret_key=secret_key, secure=url.scheme == "https")

    def stat(self, bucket: str, key: str) -> ObjectInfo:
        from minio.error import S3Error

        try:
            st = self.client.stat_object(bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                raise ObjectMissing(f"{bucket}/{key}") from exc
            raise
        return ObjectInfo(bucket, key, st.size, (st.etag or "").strip('"'))

    def read(self, bucket: str, key: str, max_bytes: int) -> bytes:
        response = self.client.get_object(bucket, key)
        try:
            chunks, total = [], 0
            for part in response.stream(64 * 1024):
                total += len(part)
                if total > max_bytes:
                    raise ObjectTooLarge(f"more than {max_bytes} bytes")
                chunks.append(part)
            return b"".join(chunks)
        finally:
            response.close()
            response.release_conn()

    def list(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        for obj in self.client.list_objects(bucket, prefix=prefix, recursive=True):
            yield ObjectInfo(bucket, obj.object_name, obj.size, (obj.etag or "").strip('"'))


def store_for_source(source: SourceSpec, settings: Settings, inbox: Path | None) -> ObjectStore:
    """A source with an endpoint (or any source in a cluster) is S3; without one under `llmtwin up`, a folder."""
    if source.endpoint is None and inbox is not None:
        return FolderStore(inbox)
    return MinioStore(
        source.endpoint or settings.s3_endpoint,
        os.environ.get("LLMTWIN_S3_ACCESS_KEY", ""),
        os.environ.get("LLMTWIN_S3_SECRET_KEY", ""),
    )
