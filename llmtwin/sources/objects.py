"""Where a source's objects are read from: MinIO/S3, or a folder (`llmtwin up`'s inbox).

Keys are untrusted input: the folder store resolves them strictly inside the bucket folder, and
neither store reads past the spec's size limit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from minio import Minio
from minio.error import S3Error

from llmtwin.api.timestamps import unix_seconds
from llmtwin.api.v1alpha1 import SourceSpec
from llmtwin.secrets import Secrets
from llmtwin.sources.credentials import secret_ref, source_credentials
from llmtwin.sources.s3 import minio_client


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
    modified: int = 0  # last modified, seconds since the epoch: the date of a document that declares none


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
        stat = path.stat()
        return ObjectInfo(bucket, key, stat.st_size, digest, int(stat.st_mtime))

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
    def __init__(self, client: Minio):
        self.client = client

    def stat(self, bucket: str, key: str) -> ObjectInfo:
        try:
            st = self.client.stat_object(bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                raise ObjectMissing(f"{bucket}/{key}") from exc
            raise
        return ObjectInfo(bucket, key, st.size, (st.etag or "").strip('"'), unix_seconds(st.last_modified))

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
            yield ObjectInfo(
                bucket, obj.object_name, obj.size, (obj.etag or "").strip('"'), unix_seconds(obj.last_modified)
            )


class ObjectStores:
    """The object store of each source: its endpoint (or the platform's) opened with its Secret; with an
    inbox folder (`llmtwin up`), sources that name no endpoint are read from `<inbox>/<bucket>/<key>`."""

    def __init__(self, default_endpoint: str, default_secret: str, secrets: Secrets, inbox: Path | None = None):
        self.default_endpoint = default_endpoint
        self.default_secret = default_secret
        self.secrets = secrets
        self.inbox = inbox
        self._opened: dict[tuple[str, str, str, str], ObjectStore] = {}

    def for_source(self, source: SourceSpec) -> ObjectStore:
        if source.endpoint is None and self.inbox is not None:
            return FolderStore(self.inbox)
        ref = secret_ref(source, self.default_secret)
        endpoint = source.endpoint or self.default_endpoint
        key = (endpoint, ref.name, ref.access_key_key, ref.secret_key_key)
        if key not in self._opened:  # one connection pool per endpoint and Secret
            self._opened[key] = MinioStore(minio_client(endpoint, source_credentials(self.secrets, ref)))
        return self._opened[key]
