"""Settings of every llmtwin process, read from the environment once, at the process's entrypoint.

One class per kind of process, one documented attribute per setting, one `load()` that fails naming
the variable (crate-operator's `config.py`, with pydantic-settings doing the parsing):

- `PlatformSettings`: where the platform's services are (Kafka, MinIO, MLflow, the workflow image).
  The operator hands exactly these to the workflows it renders (`as_env()`), so a step in a pod sees
  the platform the operator saw.
- `OperatorSettings`, `GatewaySettings`, `StepSettings`: the platform plus what that process needs.

Nothing else in `llmtwin/` reads the environment; code receives a settings object (or the values
it needs) from its caller.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "LLMTWIN_"


class SettingsError(ValueError):
    """An environment variable that does not parse; the message starts with its name."""


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True, populate_by_name=True)

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable that sets `field`."""
        alias = cls.model_fields[field].validation_alias
        if isinstance(alias, str):
            return alias
        if isinstance(alias, AliasChoices):
            return str(alias.choices[0])
        return ENV_PREFIX + field.upper()


class PlatformSettings(_Settings):
    """The platform every twin runs on: shared by the operator, the gateway, the steps and `llmtwin up`."""

    workflow_image: str = Field(
        "ghcr.io/llmtwin/workflows:0.1.0", description="Image of the workflow steps (`llmtwin step ...`)."
    )
    milvus_uri: str = Field(
        "http://milvus.milvus.svc:19530",
        description="The platform's Milvus, for every twin whose spec.vectorStore.uri is empty.",
    )
    kafka_bootstrap: str = Field(
        "kafka.llmtwin-system.svc:9092", description="Kafka bootstrap servers; empty: no Kafka (embedded mode)."
    )
    objects_topic: str = Field("llmtwin.objects", description="Topic MinIO publishes bucket notifications to.")
    alerts_topic: str = Field("llmtwin.alerts", description="Topic the Alertmanager webhook publishes alerts to.")
    dlq_topic: str = Field("llmtwin.dlq", description="Dead-letter topic: messages the gateway cannot use.")
    queries_topic: str = Field(
        "llmtwin.queries", description="Topic the front doors record every question and feedback on (drift)."
    )
    s3_endpoint: str = Field(
        "http://minio.minio.svc:9000", description="Object store of sources that name no endpoint."
    )
    s3_secret: str = Field(
        "llmtwin-s3",
        description="Secret (keys accessKey, secretKey) for sources without credentialsSecretRef, in the twin's"
        " namespace.",
    )
    minio_kafka_target: str = Field(
        "llmtwin", description="Id of MinIO's Kafka notification target (MINIO_NOTIFY_KAFKA_*_<id>)."
    )
    mlflow_tracking_uri: str = Field(
        "http://mlflow.mlflow.svc:5000",
        validation_alias="MLFLOW_TRACKING_URI",
        description="MLflow tracking server and model registry.",
    )

    def as_env(self) -> dict[str, str]:
        """The platform settings as environment variables (rendered into pods and ConfigMaps)."""
        return {PlatformSettings.env_name(f): str(getattr(self, f)) for f in PlatformSettings.model_fields}


class _KubeAccess(_Settings):
    kubeconfig: str | None = Field(
        None, validation_alias="KUBECONFIG", description="Kubeconfig file; unset: in-cluster, else ~/.kube/config."
    )


class _MountedSecrets(_Settings):
    secrets_dir: Path = Field(
        Path("/var/run/secrets/llmtwin"),
        description="Mounted Secrets, one folder per Secret name, one file per key (as the kubelet mounts them): "
        "the sources' S3 keys, the Milvus token and CA bundle.",
    )


class _ModelCache(_Settings):
    model_cache: Path = Field(
        Path.home() / ".cache" / "llmtwin" / "models",
        description="Where resolved base models live: dequantized GGUF files, s3:// downloads.",
    )


class _DriftMonitor(_Settings):
    drift_evaluate_seconds: float = Field(
        5.0, gt=0, description="How often the drift monitor scores every twin (its windows slide by time)."
    )


class OperatorSettings(PlatformSettings, _KubeAccess):
    """`llmtwin operator`."""

    resync_seconds: float = Field(
        60.0, gt=0, description="Every twin is reconciled at least this often (drift in children, storage retries)."
    )
    promotion_poll_seconds: float = Field(
        10.0,
        gt=0,
        description="While a candidate is in its canary, its twin is reconciled this often (the Rollout's "
        "progress read, the outcome recorded): the most a promotion or rejection waits after the controller decides.",
    )
    max_workers: int = Field(8, ge=1, le=256, description="Twins reconciled at once.")
    metrics_port: int = Field(0, ge=0, le=65535, description="Port of /metrics; 0: no metrics server.")
    metrics_addr: str = Field("0.0.0.0", description="Address the metrics server binds.")
    topic_partitions: int = Field(3, ge=1, le=1000, description="Partitions of the topics the operator creates.")


def _comma_list(value: Any) -> Any:
    return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value


class GatewaySettings(PlatformSettings, _KubeAccess, _DriftMonitor):
    """`llmtwin gateway` (command-line options override these)."""

    port: int = Field(8080, ge=1, le=65535, validation_alias="LLMTWIN_GATEWAY_PORT", description="HTTP port.")
    group: str = Field(
        "llmtwin-gateway", min_length=1, validation_alias="LLMTWIN_GATEWAY_GROUP", description="Kafka consumer group."
    )
    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias="LLMTWIN_GATEWAY_NAMESPACES",
        description="Comma-separated namespaces whose twins get events; empty: all.",
    )
    webhook_token_file: Path | None = Field(
        None,
        description="File holding the Alertmanager webhook's bearer token (a mounted Secret); unset: every webhook"
        " request is refused.",
    )
    coalesce_seconds: float = Field(
        0.3,
        ge=0,
        validation_alias="LLMTWIN_GATEWAY_COALESCE_SECONDS",
        description="Events for one object within this window after a batch's first message become one ingest.",
    )
    max_batch_messages: int = Field(
        500,
        ge=1,
        le=100_000,
        validation_alias="LLMTWIN_GATEWAY_MAX_BATCH_MESSAGES",
        description="Messages handled (and committed) together at most: a flood of uploads becomes batches of this "
        "many, each split into ingest Workflows of spec.ingest.batchSize objects per twin.",
    )
    max_body_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        validation_alias="LLMTWIN_GATEWAY_MAX_BODY_BYTES",
        description="Larger HTTP bodies get 413.",
    )
    submit_workers: int = Field(
        16,
        ge=1,
        le=256,
        validation_alias="LLMTWIN_GATEWAY_SUBMIT_WORKERS",
        description="Workflow creates in flight at once.",
    )

    _split_namespaces = field_validator("namespaces", mode="before")(_comma_list)


class StepSettings(PlatformSettings, _KubeAccess, _ModelCache, _MountedSecrets):
    """`llmtwin step NAME ...`, the entrypoint of every workflow container (set by the rendered templates)."""

    twin_file: Path = Field(
        Path("/etc/llmtwin/twin.json"), description="The resolved twin (the twin's ConfigMap, mounted)."
    )
    workspace: Path = Field(Path("/workspace"), description="Files shared by the steps of one Workflow.")
    status_sink: str = Field(
        "kubernetes",
        pattern=r"^(kubernetes|file:.+)$",
        description="Where steps report the twin's status: `kubernetes` (the status subresource) or `file:<path>`.",
    )


class ServeSettings(PlatformSettings, _ModelCache, _MountedSecrets):
    """`llmtwin serve`: the model cache, MLflow (adapters named `models:/<name>/<version>`), and the object
    store with its mounted Secrets (base models named `s3://...`)."""


class FrontDoorSettings(PlatformSettings, _MountedSecrets):
    """`llmtwin frontdoor`: a twin's front door on a cluster (the operator renders its Deployment)."""

    twin_file: Path = Field(
        Path("/etc/llmtwin/twin.json"), description="The resolved twin (the twin's ConfigMap, mounted)."
    )
    model_server: str = Field(
        "",
        description="The model server to generate with (the Rollout's stable Service); empty: the twin's"
        " generationEndpoint, else answers carry the retrieved passages only.",
    )


class EmbeddedSettings(PlatformSettings, _ModelCache, _DriftMonitor):
    """`llmtwin up` and `llmtwin train`: the platform (MinIO for sources with an endpoint, MLflow), the
    model cache and the drift monitor's pace."""


S = TypeVar("S", bound=_Settings)


def load(kind: type[S]) -> S:
    """Read `kind` from the environment; a bad value raises SettingsError naming its variable."""
    try:
        return kind()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = str(error["loc"][0]) if error["loc"] else ""
            field = next(
                (f for f in kind.model_fields if f == where or kind.env_name(f).lower() == where.lower()), None
            )
            problems.append(f"{kind.env_name(field) if field else where}: {error['msg']}")
        raise SettingsError("; ".join(problems)) from exc
