"""Which Secret opens a source, and reading it: through the API (the operator) or from files
mounted the way the kubelet mounts Secrets (workflow pods, and `llmtwin up` with a local folder).

A source's `credentialsSecretRef` names the Secret and its keys; a source without one uses the
platform's default Secret (`LLMTWIN_S3_SECRET`) with the keys `accessKey` and `secretKey`.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Protocol

from llmtwin.api.conditions import Reason
from llmtwin.api.errors import ReasonedError
from llmtwin.api.v1alpha1 import SecretKeyRef, SourceSpec
from llmtwin.sources.s3 import Credentials


class CredentialsError(ReasonedError):
    """A Secret that is missing (reason SecretMissing) or lacks a key (SecretInvalid)."""


class CredentialSource(Protocol):
    def credentials(self, ref: SecretKeyRef) -> Credentials: ...


def secret_ref(source: SourceSpec, default_secret: str) -> SecretKeyRef:
    """The source's Secret, else the platform's default one (with the default key names)."""
    return source.credentials_secret_ref or SecretKeyRef(name=default_secret)


def credentials_from_secret_data(data: dict[str, str], ref: SecretKeyRef) -> Credentials:
    """The keys from a Secret's `data` (base64 values, as the API returns them)."""
    missing = [key for key in (ref.access_key_key, ref.secret_key_key) if not data.get(key)]
    if missing:
        raise CredentialsError(Reason.SECRET_INVALID, f"Secret {ref.name} has no key {', '.join(missing)}")
    return Credentials(
        access_key=base64.b64decode(data[ref.access_key_key]).decode(),
        secret_key=base64.b64decode(data[ref.secret_key_key]).decode(),
    )


class SecretFiles:
    """Secrets mounted as `<root>/<secret name>/<key>` (one file per key, the value as its content)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def credentials(self, ref: SecretKeyRef) -> Credentials:
        folder = self.root / ref.name
        if not folder.is_dir():
            raise CredentialsError(Reason.SECRET_MISSING, f"Secret {ref.name} is not mounted at {folder}")
        values = {}
        for key in (ref.access_key_key, ref.secret_key_key):
            path = folder / key
            if not path.is_file() or not path.read_text().strip():
                raise CredentialsError(Reason.SECRET_INVALID, f"Secret {ref.name} has no key {key} ({path})")
            values[key] = path.read_text().strip()
        return Credentials(values[ref.access_key_key], values[ref.secret_key_key])
