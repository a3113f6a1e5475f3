"""Process-wide settings from the environment (endpoints, names), never hard-coded in logic.

Every component reads the same variables, so the operator can hand its own view of the platform
to the workflows it renders (through the twin's ConfigMap) and `llmtwin up` can point them at
embedded services.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields


def _setting(env: str, default: str):
    return field(default_factory=lambda: os.environ.get(env, default), metadata={"env": env})


@dataclass(frozen=True)
class Settings:
    # Image of the workflow steps (`llmtwin step ...`).
    workflow_image: str = _setting("LLMTWIN_WORKFLOW_IMAGE", "ghcr.io/llmtwin/workflows:0.1.0")
    workflow_service_account: str = _setting("LLMTWIN_WORKFLOW_SA", "llmtwin-workflow")
    # Event plane.
    kafka_bootstrap: str = _setting("LLMTWIN_KAFKA_BOOTSTRAP", "kafka.llmtwin-system.svc:9092")
    objects_topic: str = _setting("LLMTWIN_OBJECTS_TOPIC", "llmtwin.objects")
    alerts_topic: str = _setting("LLMTWIN_ALERTS_TOPIC", "llmtwin.alerts")
    dlq_topic: str = _setting("LLMTWIN_DLQ_TOPIC", "llmtwin.dlq")
    # Default object store when a source names no endpoint, and its credentials Secret.
    s3_endpoint: str = _setting("LLMTWIN_S3_ENDPOINT", "http://minio.minio.svc:9000")
    s3_secret: str = _setting("LLMTWIN_S3_SECRET", "llmtwin-s3")
    minio_kafka_target: str = _setting("LLMTWIN_MINIO_KAFKA_TARGET", "llmtwin")
    # Model registry.
    mlflow_tracking_uri: str = _setting("MLFLOW_TRACKING_URI", "http://mlflow.mlflow.svc:5000")

    def as_env(self) -> dict[str, str]:
        """The same settings as environment variables (for rendered pods and ConfigMaps)."""
        return {f.metadata["env"]: getattr(self, f.name) for f in fields(self)}


def load() -> Settings:
    return Settings()
