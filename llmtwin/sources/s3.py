"""MinIO/S3 clients with bounded timeouts (minio's default waits minutes on a dead endpoint)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import urlparse

import urllib3
from minio import Minio

# An operator reconcile must not hang on a dead endpoint; a step can afford a few retries.
FAST_FAIL = urllib3.Retry(total=1, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504])
PATIENT = urllib3.Retry(total=5, backoff_factor=0.5, status_forcelist=[500, 502, 503, 504])
TIMEOUT = urllib3.Timeout(connect=3, read=15)


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str

    def __repr__(self) -> str:  # never log a secret key
        return f"Credentials(access_key={self.access_key!r}, secret_key=***)"


def minio_client(endpoint: str, credentials: Credentials, retries: urllib3.Retry = PATIENT) -> Minio:
    """A client for `http(s)://host:port`; TLS verified against the system's trust store (OpenSSL's
    defaults, so SSL_CERT_FILE / SSL_CERT_DIR add a private CA)."""
    url = urlparse(endpoint)
    http = urllib3.PoolManager(timeout=TIMEOUT, retries=retries, ssl_context=ssl.create_default_context())
    return Minio(
        url.netloc,
        access_key=credentials.access_key,
        secret_key=credentials.secret_key,
        secure=url.scheme == "https",
        http_client=http,
    )
