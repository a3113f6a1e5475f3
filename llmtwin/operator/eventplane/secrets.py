"""A twin's S3 credentials, read through the API from Secrets in the twin's namespace (by name only)."""

from __future__ import annotations

from kubernetes.client import CoreV1Api
from kubernetes.client.exceptions import ApiException

from llmtwin.api.conditions import Reason
from llmtwin.api.v1alpha1 import SecretKeyRef
from llmtwin.operator.apply import API_READS
from llmtwin.sources.credentials import CredentialsError, credentials_from_secret_data
from llmtwin.sources.s3 import Credentials


class KubernetesSecrets:
    """Secrets of one namespace as a `CredentialSource` (get by name; never list or watch)."""

    def __init__(self, api: CoreV1Api, namespace: str):
        self.api = api
        self.namespace = namespace

    def credentials(self, ref: SecretKeyRef) -> Credentials:
        API_READS.labels("Secret").inc()
        try:
            data = self.api.read_namespaced_secret(ref.name, self.namespace).data or {}
        except ApiException as exc:
            if exc.status == 404:
                raise CredentialsError(Reason.SECRET_MISSING, f"Secret {self.namespace}/{ref.name} not found") from exc
            raise
        return credentials_from_secret_data(data, ref)
