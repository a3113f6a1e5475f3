"""Which Secret opens a source, and its S3 keys.

A source's `credentialsSecretRef` names the Secret and its keys; a source without one uses the
platform's default Secret (`LLMTWIN_S3_SECRET`) with the keys `accessKey` and `secretKey`.
"""

from __future__ import annotations

from llmtwin.api.v1alpha1 import SecretKeyRef, SourceSpec
from llmtwin.secrets import Secrets
from llmtwin.sources.s3 import Credentials


def secret_ref(source: SourceSpec, default_secret: str) -> SecretKeyRef:
    """The source's Secret, else the platform's default one (with the default key names)."""
    return source.credentials_secret_ref or SecretKeyRef(name=default_secret)


def source_credentials(secrets: Secrets, ref: SecretKeyRef) -> Credentials:
    return Credentials(secrets.value(ref.name, ref.access_key_key), secrets.value(ref.name, ref.secret_key_key))
