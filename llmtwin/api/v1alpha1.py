"""The `LLMTwin` API, version v1alpha1: the single source of truth.

These pydantic models are what every component reads (operator, gateway, workflows, CLI), and
`llmtwin.api.crd` generates the CRD's OpenAPI schema from them, so defaults, bounds, enums and the
cross-field CEL rules live here once. Field names are camelCase on the wire (Kubernetes style) and
snake_case in Python.
"""

from __future__ import annotations

import re
import string
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from llmtwin.api.conditions import Phase
from llmtwin.api.names import GROUP, default_collection

VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "LLMTwin"
PLURAL = "llmtwins"
SINGULAR = "llmtwin"
SHORT_NAMES = ["twin", "twins"]

# Go-style durations as Kubernetes users write them ("30s", "10m", "1h30m").
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# S3 bucket naming rules (lowercase, digits, dots, hyphens; 3-63 chars).
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
K8S_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$"

Duration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32)]
Quantity = Annotated[str, Field(pattern=QUANTITY_PATTERN, max_length=32)]


def duration_seconds(value: str) -> float:
    """Parse a Go-style duration ("1h30m") into seconds."""
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(f"not a duration: {value!r} (expected e.g. 30s, 10m, 1h30m)")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are errors, as in the CRD."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", validate_default=True)

    def wire(self) -> dict[str, Any]:
        """The camelCase JSON form, as it appears in the resource."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One `x-kubernetes-validations` entry; the CRD generator copies these into the schema."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


# ----------------------------------------------------------------------------------------- author


class AuthorSpec(ApiModel):
    """Whose voice the twin imitates."""

    name: str = Field(min_length=1, max_length=200, description="The author's display name, used in prompts.")
    style_notes: str = Field(
        default="",
        max_length=4000,
        description="Free-text notes on the author's style (tone, vocabulary), added to prompts and datasets.",
    )


# ------------------------------------------------------------------------------------- base model


class BaseModelSpec(ApiModel):
    """The model that LoRA adapters are trained on and served with."""

    id: str = Field(
        min_length=1,
        max_length=512,
        description=(
            "Model to fine-tune and serve: a hub id (`org/name` or `hf://org/name`), an `s3://bucket/prefix`,"
            " or a local directory path."
        ),
    )
    revision: str | None = Field(default=None, max_length=128, description="Hub revision or commit to pin.")
    tokenizer: str | None = Field(
        default=None, max_length=512, description="Tokenizer location when it differs from the model's."
    )
    chat_template: str | None = Field(
        default=None,
        max_length=20000,
        description="Jinja chat template overriding the tokenizer's; used for datasets and generation.",
    )


# ---------------------------------------------------------------------------------------- sources

FileType = Literal["txt", "md", "html", "pdf", "json", "jsonl"]
ALL_FILE_TYPES: list[FileType] = ["txt", "md", "html", "pdf", "json", "jsonl"]
# How a key's type is known (the parser reads by it; self-query recognises file names by it).
FILE_SUFFIXES: dict[str, FileType] = {
    ".txt": "txt",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".json": "json",
    ".jsonl": "jsonl",
}


def file_type_of(key: str) -> FileType | None:
    return FILE_SUFFIXES.get(PurePosixPath(key).suffix.lower())


class SecretKeyRef(ApiModel):
    """Credentials come from a Secret in the twin's namespace, never from the spec itself."""

    name: str = Field(pattern=K8S_NAME_PATTERN, max_length=253, description="Secret name.")
    access_key_key: str = Field(default="accessKey", description="Key holding the S3 access key id.")
    secret_key_key: str = Field(default="secretKey", description="Key holding the S3 secret key.")


SECRET_DATA_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"  # what Kubernetes allows as a key of a Secret's data


class MilvusTokenRef(ApiModel):
    """The Secret key holding the Milvus token, in the twin's namespace."""

    name: str = Field(pattern=K8S_NAME_PATTERN, max_length=253, description="Secret name.")
    key: str = Field(default="token", pattern=SECRET_DATA_KEY_PATTERN, max_length=253, description="Key of the token.")


class CaBundleRef(ApiModel):
    """The Secret key holding a PEM CA bundle, in the twin's namespace."""

    name: str = Field(pattern=K8S_NAME_PATTERN, max_length=253, description="Secret name.")
    key: str = Field(
        default="ca.crt", pattern=SECRET_DATA_KEY_PATTERN, max_length=253, description="Key of the PEM bundle."
    )


class MilvusTlsSpec(ApiModel):
    """TLS to the Milvus server: whose certificates to trust and which name to check."""

    ca_secret_ref: CaBundleRef | None = Field(
        default=None,
        description="Secret with the PEM CA bundle that signed the server's certificate (a private CA, "
        "cert-manager's `ca.crt`); unset: the system's trusted roots.",
    )
    server_name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9]([-.A-Za-z0-9]*[A-Za-z0-9])?$",
        max_length=253,
        description="Name the server's certificate must carry, when it is not the uri's host (an IP, a Service alias).",
    )


class SourceSpec(ApiModel):
    """A MinIO/S3 bucket (optionally a prefix of it) whose objects are the author's documents."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.endpoint) || has(self.credentialsSecretRef)",
                    "credentialsSecretRef is required when endpoint is set",
                    ".credentialsSecretRef",
                ),
            ]
        }
    )

    bucket: str = Field(pattern=BUCKET_PATTERN, description="Bucket name (S3 naming rules).")
    prefix: str = Field(default="", max_length=1024, description="Only objects under this key prefix.")
    suffix: str = Field(default="", max_length=256, description="Only objects whose key ends with this.")
    file_types: list[FileType] = Field(
        default_factory=lambda: list(ALL_FILE_TYPES),
        min_length=1,
        description="Parsers to apply; other files are recorded as unsupported.",
    )
    endpoint: str | None = Field(
        default=None,
        pattern=r"^https?://",
        max_length=512,
        description="S3 endpoint URL. Empty: the operator's default MinIO (cluster) or a watched folder (llmtwin up).",
    )
    credentials_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret with the access and secret keys for this bucket."
    )
    create_bucket: bool = Field(default=True, description="Create the bucket if it does not exist.")
    max_object_bytes: int = Field(
        default=50 * 1024 * 1024,
        ge=1,
        le=5 * 1024**3,
        description="Objects larger than this are recorded as failed and not downloaded.",
    )

    def matches(self, bucket: str, key: str) -> bool:
        """Whether an object belongs to this source (the same filters the bucket notification uses)."""
        return bucket == self.bucket and key.startswith(self.prefix) and key.endswith(self.suffix)


# ----------------------------------------------------------------------------------- vector store

IndexType = Literal["FLAT", "IVF_FLAT", "HNSW", "AUTOINDEX"]
RetrievalMode = Literal["hybrid", "dense", "bm25"]
MetricType = Literal["COSINE", "IP", "L2"]
DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


# The fields that define a collection's vectors: changing one after creation would leave the stored
# chunks unreadable (another model, dimension or metric) or orphaned (another name). The API server
# rejects such an update (a CEL transition rule); a new twin is the way to change them.
# Milvus Lite (a file URI) builds FLAT, IVF_FLAT and AUTOINDEX only; a server builds every type.
MILVUS_SERVER_ONLY_INDEXES = ("HNSW",)
# Milvus Lite's own rule for its data file's name (milvus_lite/server.py).
MILVUS_LITE_FILE_PATTERN = r"(^|/)[A-Za-z0-9._-]{1,36}$"
MILVUS_LITE_FILE_MESSAGE = "a Milvus Lite file's name has at most 36 letters, digits, dots, dashes and underscores"
MILVUS_LITE_INDEX_MESSAGE = "Milvus Lite (a file uri) has no HNSW index: use AUTOINDEX (the default), FLAT or IVF_FLAT"
MILVUS_FILE_ON_CLUSTER_MESSAGE = (
    "a file path is Milvus Lite, on one machine: pods cannot share it. On a cluster leave uri empty (the "
    "platform's Milvus) or give http(s)://host:port; file paths are for `llmtwin up`"
)
MILVUS_TLS_OVER_HTTP_MESSAGE = "tls needs an https:// uri (http:// says: no TLS)"
MILVUS_LITE_ACCESS_MESSAGE = "Milvus Lite (a file uri) has no authentication and no TLS: drop tokenSecretRef and tls"
IMMUTABLE_VECTOR_STORE_FIELDS = ("collection", "embeddingModel", "dimension", "metric", "indexType")
_OPTIONAL_VECTOR_STORE_FIELDS = {"collection"}


def immutable(field: str, optional: bool = False) -> dict[str, str]:
    """A CEL transition rule: `field` keeps its value (and its presence, when optional) on update."""
    rule = (
        f"has(self.{field}) == has(oldSelf.{field}) && (!has(self.{field}) || self.{field} == oldSelf.{field})"
        if optional
        else f"self.{field} == oldSelf.{field}"
    )
    return cel(rule, f"{field} is immutable: the collection's chunks depend on it; create a new twin", f".{field}")


class VectorStoreSpec(ApiModel):
    """Where the twin's chunks live and how they are cut and embedded."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.chunkOverlap < self.chunkSize",
                    "chunkOverlap must be smaller than chunkSize",
                    ".chunkOverlap",
                ),
                # Only the API server runs CEL, so this rule is what "on a cluster" means: a file there
                # would be one pod's, and every step and front door pod would get a different, empty one.
                cel(
                    "!has(self.uri) || self.uri == '' || self.uri.startsWith('http://') || "
                    "self.uri.startsWith('https://')",
                    MILVUS_FILE_ON_CLUSTER_MESSAGE,
                    ".uri",
                ),
                cel(
                    "!has(self.tls) || !has(self.uri) || !self.uri.startsWith('http://')",
                    MILVUS_TLS_OVER_HTTP_MESSAGE,
                    ".tls",
                ),
                *(immutable(f, f in _OPTIONAL_VECTOR_STORE_FIELDS) for f in IMMUTABLE_VECTOR_STORE_FIELDS),
            ]
        }
    )

    uri: str = Field(
        default="",
        max_length=512,
        description="Milvus: `http(s)://host:port` for a server; empty (the default) for the platform's Milvus on a "
        "cluster (the operator's LLMTWIN_MILVUS_URI) and `<data dir>/milvus.db` under `llmtwin up`; a file path "
        "(Milvus Lite) only under `llmtwin up`.",
    )
    token_secret_ref: MilvusTokenRef | None = Field(
        default=None,
        description="Secret key holding the Milvus token: `user:password` of a Milvus user, or an API key. Unset: "
        "no authentication. Mounted into the steps and the front door; the operator (finalizer) and the gateway "
        "(drift monitor) read it by name.",
    )
    tls: MilvusTlsSpec | None = Field(
        default=None,
        description="Connect with TLS, with these options (an https:// uri connects with TLS and the system's roots "
        "without it). Not with an http:// uri.",
    )
    collection: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$",
        description="Collection name. Default: `twin_<namespace>_<name>` with dashes as underscores. Immutable.",
    )
    embedding_model: str = Field(
        default=DEFAULT_EMBEDDING_MODEL, min_length=1, description="Sentence-transformers model id or path. Immutable."
    )
    dimension: int = Field(default=384, ge=2, le=32768, description="Embedding dimension of that model. Immutable.")
    index_type: IndexType = Field(
        default="AUTOINDEX",
        description="Milvus index type: AUTOINDEX lets Milvus choose (a graph index on a server). Milvus Lite (a "
        "file uri) builds AUTOINDEX, FLAT and IVF_FLAT only. Immutable.",
    )
    metric: MetricType = Field(default="COSINE", description="Similarity metric. Immutable.")
    chunk_size: int = Field(default=256, ge=16, le=8192, description="Chunk size in tokens.")
    chunk_overlap: int = Field(default=32, ge=0, le=4096, description="Overlap between chunks in tokens.")
    embed_batch_size: int = Field(default=32, ge=1, le=1024, description="Chunks embedded per batch.")
    pii_scrub: bool = Field(default=False, description="Mask e-mail addresses and phone numbers before indexing.")

    def secret_names(self) -> list[str]:
        """The Secrets whatever opens the collection reads: the token's and the CA bundle's."""
        refs = (self.token_secret_ref, self.tls and self.tls.ca_secret_ref)
        return sorted({ref.name for ref in refs if ref})

    @model_validator(mode="after")
    def _overlap_below_size(self) -> VectorStoreSpec:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("vectorStore.chunkOverlap must be smaller than vectorStore.chunkSize")
        if self.uri and not self.uri.startswith(("http://", "https://")):
            if self.index_type in MILVUS_SERVER_ONLY_INDEXES:
                raise ValueError(f"vectorStore.indexType: {MILVUS_LITE_INDEX_MESSAGE}")
            if not re.search(MILVUS_LITE_FILE_PATTERN, self.uri):
                raise ValueError(f"vectorStore.uri {self.uri!r}: {MILVUS_LITE_FILE_MESSAGE}")
            if self.token_secret_ref or self.tls:
                raise ValueError(f"vectorStore: {MILVUS_LITE_ACCESS_MESSAGE}")
        if self.tls and self.uri.startswith("http://"):
            raise ValueError(f"vectorStore.tls: {MILVUS_TLS_OVER_HTTP_MESSAGE}")
        return self


class IngestSpec(ApiModel):
    """How the event gateway turns this twin's object events into ingest Workflows."""

    batch_size: int = Field(
        default=100,
        ge=1,
        le=1000,
        description="Objects per ingest Workflow: the twin's objects that change within the gateway's coalescing "
        "window are ingested together, at most this many per Workflow (one pod; embeddings batched across files). "
        "The twin's ingest Workflows run one at a time.",
    )


# --------------------------------------------------------------------------------------- training


class LoraSpec(ApiModel):
    """The shape of the LoRA adapter trained on the base model."""

    r: int = Field(default=16, ge=1, le=512, description="LoRA rank.")
    alpha: int = Field(default=32, ge=1, le=4096, description="LoRA alpha (scaling numerator).")
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0, description="LoRA dropout.")
    target_modules: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=lambda: ["q_proj", "v_proj"],
        min_length=1,
        description="Module names to adapt; must exist in the base model.",
    )


DatasetRecipe = Literal["passages", "served-model"]


class DatasetSpec(ApiModel):
    """How the corpus becomes an instruction dataset in the author's voice."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self.minChars <= self.maxChars", "minChars must not exceed maxChars", ".minChars"),
            ]
        }
    )

    recipe: DatasetRecipe = Field(
        default="passages",
        description=(
            "`passages`: instructions derived from titles and preceding context, no external model."
            " `served-model`: ask the currently served model for instructions (needs serving)."
        ),
    )
    min_chars: int = Field(default=200, ge=1, description="Drop passages shorter than this.")
    max_chars: int = Field(default=4000, ge=1, description="Split or drop passages longer than this.")
    eval_fraction: float = Field(default=0.1, gt=0.0, lt=0.9, description="Share of documents held out.")
    near_duplicate_threshold: float = Field(
        default=0.95,
        gt=0.0,
        le=1.0,
        description="Cosine similarity above which passages count as duplicates.",
    )

    @model_validator(mode="after")
    def _min_below_max(self) -> DatasetSpec:
        if self.min_chars > self.max_chars:
            raise ValueError("training.dataset.minChars must not exceed training.dataset.maxChars")
        return self


GateMetric = Literal["perplexity", "style_similarity"]


class GateSpec(ApiModel):
    """A candidate adapter is promoted only if it beats production by this much."""

    metric: GateMetric = Field(default="perplexity", description="Primary metric the gate compares.")
    min_improvement: float = Field(
        default=0.01, ge=0.0, le=1.0, description="Minimum relative improvement over production (0.01 = 1%)."
    )


class Toleration(ApiModel):
    """A Kubernetes toleration (GPU node pools are usually tainted)."""

    key: str | None = Field(default=None, description="Taint key to tolerate; empty with Exists: every taint.")
    operator: Literal["Exists", "Equal"] | None = Field(default=None, description="Exists or Equal (default).")
    value: str | None = Field(default=None, description="Taint value (with Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to tolerate; empty: all effects."
    )
    toleration_seconds: int | None = Field(default=None, description="How long a NoExecute taint is tolerated.")


class ComputeSpec(ApiModel):
    """Resources and placement for a pod (training job or model server)."""

    gpu: int = Field(default=0, ge=0, le=16, description="nvidia.com/gpu count.")
    cpu: Quantity = Field(default="2", description="CPU request.")
    memory: Quantity = Field(default="8Gi", description="Memory request and limit.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels to schedule on.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Taints to tolerate (GPU nodes).")


class TrainingSpec(ApiModel):
    """LoRA retraining: adapter shape, optimisation, dataset, the gate a candidate must pass, and when
    a drift alert may start a run."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self.maxSteps > 0 || self.epochs > 0", "set epochs or maxSteps", ".epochs"),
            ]
        }
    )

    lora: LoraSpec = Field(default_factory=LoraSpec, description="Adapter shape.")
    learning_rate: float = Field(default=2e-4, gt=0.0, lt=1.0, description="Peak learning rate.")
    epochs: int = Field(default=1, ge=0, le=100, description="Passes over the dataset (ignored if maxSteps > 0).")
    max_steps: int = Field(default=0, ge=0, le=1_000_000, description="Optimizer steps; 0 means use epochs.")
    batch_size: int = Field(default=4, ge=1, le=1024, description="Sequences per device step.")
    gradient_accumulation_steps: int = Field(
        default=1, ge=1, le=1024, description="Micro-batches accumulated into one optimizer step."
    )
    max_seq_length: int = Field(default=512, ge=16, le=131072, description="Tokens per packed sequence.")
    seed: int = Field(default=42, ge=0, description="Seed for data split, init and shuffling.")
    dataset: DatasetSpec = Field(default_factory=DatasetSpec, description="How the instruction dataset is built.")
    gate: GateSpec = Field(default_factory=GateSpec, description="What a candidate must beat to be promoted.")
    cooldown: Duration = Field(default="1h", description="Minimum time between two retrains of this twin.")
    resources: ComputeSpec = Field(default_factory=ComputeSpec, description="Training pod resources.")

    @model_validator(mode="after")
    def _has_length(self) -> TrainingSpec:
        if self.max_steps <= 0 and self.epochs <= 0:
            raise ValueError("training: set epochs or maxSteps")
        return self


# ---------------------------------------------------------------------------------------- serving

ServingEngine = Literal["tgi", "vllm", "llmtwin"]


class CanaryStep(ApiModel):
    """One step of the canary: send this share of traffic to the new adapter, then hold."""

    set_weight: int = Field(ge=1, le=100, description="Percent of traffic to the canary at this step.")
    pause: Duration | None = Field(
        default=None,
        description="How long to hold this weight; empty: on to the next step at once (never a pause that "
        "waits for a human).",
    )


class AnalysisSpec(ApiModel):
    """Prometheus checks that decide promote or roll back."""

    max_error_ratio: float = Field(default=0.05, ge=0.0, le=1.0, description="Max 5xx / requests.")
    max_p95_latency_seconds: float = Field(default=2.0, gt=0.0, description="Max p95 request latency.")
    interval: Duration = Field(
        default="1m", description="Measurement interval; the first measurement is one interval after the canary starts."
    )
    failure_limit: int = Field(
        default=1,
        ge=0,
        le=100,
        description="Failed measurements tolerated; one more aborts the canary. A measurement fails when its "
        "value is above the bound, and when it has none or NaN (no traffic reached the canary in the interval).",
    )
    prometheus_address: str = Field(
        default="http://prometheus-operated.monitoring.svc:9090",
        pattern=r"^https?://",
        description="Prometheus the analysis queries.",
    )


def _default_canary_steps() -> list[CanaryStep]:
    return [CanaryStep(set_weight=10, pause="2m"), CanaryStep(set_weight=50, pause="5m")]


class CanarySpec(ApiModel):
    """How a new adapter reaches serving: Argo Rollouts canary steps judged by Prometheus analysis. Without a
    traffic router (none is configured), weights are approximated by pod counts: the canary runs as one
    extra pod beside the stable ones (a second GPU with one replica), the stable pods keep serving until
    promotion, and with one replica the canary takes about half the requests at every weight below 100."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.steps.map(s, s.setWeight).isSorted() &&"
                    " self.steps.all(a, self.steps.exists_one(b, b.setWeight == a.setWeight))",
                    "canary steps must have strictly increasing setWeight",
                    ".steps",
                ),
            ]
        }
    )

    steps: list[CanaryStep] = Field(
        default_factory=_default_canary_steps, min_length=1, max_length=20, description="Traffic steps."
    )
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec, description="Checks that decide promote or roll back.")

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[CanaryStep]) -> list[CanaryStep]:
        weights = [s.set_weight for s in steps]
        if any(b <= a for a, b in zip(weights, weights[1:], strict=False)):
            raise ValueError(f"serving.canary.steps: setWeight must strictly increase, got {weights}")
        return steps


# Measured on SmolLM2-135M-Instruct: the author in the system message and the passages before the
# question in the user message answered from the passages; one message holding both mostly copied them.
DEFAULT_SYSTEM_PROMPT = "You are {author}, writing in your own voice. {style} Answer from your own writing below."
DEFAULT_PROMPT_TEMPLATE = "From my own writing:\n{context}\n\n{question}"
PROMPT_FIELDS = frozenset({"author", "style", "context", "question"})


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


class GatewaySpec(ApiModel):
    """The twin's front door: retrieval and prompt for every question."""

    top_k: int = Field(default=4, ge=1, le=100, description="Chunks retrieved per question.")
    retrieval: RetrievalMode = Field(
        default="dense",
        description="How chunks are found: `dense` (embedding similarity), `bm25` (the question's words, rare ones "
        "weighing more) or `hybrid` (both candidate lists fused by reciprocal rank). Dense is the default because "
        "it scores best on the labelled paraphrase set over the demo corpus (examples/retrieval-set.yaml; "
        "figures in the README); hybrid can help where questions name things the text names.",
    )
    self_query: bool = Field(
        default=False,
        description='Filter by what a question names: dates ("what did I write in February 2026?", "since 2025"),'
        " matched against the documents' own dates (front matter, a post's date, else the file's), and sources (a"
        ' file name such as "garden.md", or a title in double quotes); a named source this twin does not have'
        ' filters nothing. Off by default: a year in a question is as often its topic ("what was built in 1842?").',
    )
    query_expansion: int = Field(
        default=0,
        ge=0,
        le=4,
        description="Paraphrases of each question written by the twin's model server before retrieval; the question"
        " and each paraphrase are searched and the lists fused by reciprocal rank. 0 (the default) is off: it costs"
        " one generation per question. Needs a model server; without one the question alone is searched.",
    )
    system_prompt: str = Field(
        default=DEFAULT_SYSTEM_PROMPT,
        max_length=20000,
        description="The system message of every answer, with {author} and {style} (the author's style notes).",
    )
    prompt_template: str = Field(
        default=DEFAULT_PROMPT_TEMPLATE,
        max_length=20000,
        description="The question's message, with {context} (the retrieved passages) and {question}; {author} and"
        " {style} also work.",
    )
    generation_endpoint: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="A model server with TGI's API to generate with instead of the twin's own (the Rollout's stable"
        " Service on a cluster, the one `llmtwin up` starts on a laptop).",
    )

    @field_validator("system_prompt", "prompt_template")
    @classmethod
    def _known_placeholders(cls, template: str) -> str:
        try:
            unknown = _placeholders(template) - PROMPT_FIELDS
        except ValueError as exc:
            raise ValueError(f"not a valid template ({exc}); write a literal brace as {{{{ or }}}}") from exc
        if unknown:
            raise ValueError(f"unknown placeholders {sorted(unknown)}; known: {sorted(PROMPT_FIELDS)}")
        return template

    @model_validator(mode="after")
    def _asks_the_question(self) -> GatewaySpec:
        if "question" not in _placeholders(self.prompt_template):
            raise ValueError("serving.gateway.promptTemplate must contain {question}")
        return self


class AutoscalingSpec(ApiModel):
    """A HorizontalPodAutoscaler on the model server's Rollout, driven by the requests waiting per replica."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.minReplicas <= self.maxReplicas",
                    "minReplicas must be <= maxReplicas",
                    ".minReplicas",
                ),
                cel(
                    "!self.enabled || self.minReplicas >= 1",
                    "an HPA cannot scale to zero: minReplicas must be >= 1 when enabled",
                    ".minReplicas",
                ),
            ]
        }
    )

    enabled: bool = Field(
        default=False,
        description="Render a HorizontalPodAutoscaler for the server's Rollout (it then owns the replica count, "
        "between minReplicas and maxReplicas; serving.replicas is not used). Its metric is served by "
        "prometheus-adapter (README: Serving, Autoscaling).",
    )
    min_replicas: int = Field(default=1, ge=0, le=100, description="Fewest replicas (>= 1 when enabled).")
    max_replicas: int = Field(default=1, ge=1, le=100, description="Most replicas.")
    target_queue_size: float = Field(
        default=4,
        gt=0,
        le=10000,
        description="Requests waiting per replica (the engine's queue gauge, averaged over the server's pods) above "
        "which the HPA adds replicas.",
    )

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError("serving.autoscaling: minReplicas must be <= maxReplicas")
        if self.enabled and self.min_replicas < 1:
            raise ValueError("serving.autoscaling: an HPA cannot scale to zero: minReplicas must be >= 1 when enabled")
        return self


def _default_serving_resources() -> ComputeSpec:
    return ComputeSpec(gpu=1, cpu="4", memory="24Gi")


class ServingSpec(ApiModel):
    """How the twin is served: the model server, its resources, the canary and the front door."""

    engine: ServingEngine = Field(
        default="tgi",
        description="Model server: `tgi` (GPU), `vllm` (GPU; TGI upstream is in maintenance mode), or `llmtwin`"
        " (`llmtwin serve`, transformers + peft, for CPU nodes; TGI's API and metric names).",
    )
    image: str | None = Field(
        default=None,
        max_length=512,
        description="Server image. Default: TGI's or vLLM's official image; the workflow image for `llmtwin`.",
    )
    replicas: int = Field(
        default=1, ge=0, le=100, description="Model server replicas, unless autoscaling is enabled (0 stops serving)."
    )
    autoscaling: AutoscalingSpec = Field(
        default_factory=AutoscalingSpec, description="Replicas chosen by an HPA from the queue (off by default)."
    )
    resources: ComputeSpec = Field(default_factory=_default_serving_resources, description="Server pod resources.")
    max_input_tokens: int = Field(default=2048, ge=1, le=1_000_000, description="Longest prompt accepted, in tokens.")
    max_total_tokens: int = Field(
        default=4096, ge=2, le=1_000_000, description="Longest prompt plus generation, in tokens."
    )
    max_new_tokens: int = Field(default=256, ge=1, le=100_000, description="Default generation length.")
    canary: CanarySpec = Field(default_factory=CanarySpec, description="How new adapters are rolled out.")
    gateway: GatewaySpec = Field(default_factory=GatewaySpec, description="Retrieval and prompt settings.")


# ------------------------------------------------------------------------------------------ drift

DriftDetector = Literal["embedding-centroid", "mmd", "domain-classifier", "feedback"]
# Calibrated on the demo corpus with all-MiniLM-L6-v2 (llmtwin/drift/detectors.py says how).
DRIFT_THRESHOLDS: dict[str, float] = {
    "embedding-centroid": 0.4,
    "mmd": 0.06,
    "domain-classifier": 0.75,
    "feedback": 0.3,
}


class DriftSpec(ApiModel):
    """When the twin's questions have drifted from its corpus far enough to retrain. The gateway's drift
    monitor scores the questions of the last `window` with `detector`; the rendered PrometheusRule
    fires when the score stays above `threshold` for `for`, with at least `minQuestions` in the window."""

    detector: DriftDetector = Field(
        default="embedding-centroid",
        description="`embedding-centroid`: cosine distance of the window's centroid to the corpus sample's;"
        " `mmd`: MMD² (RBF kernel) between the window and the corpus sample; `domain-classifier`: ROC AUC of a"
        " classifier telling the window's questions from the twin's first questions; `feedback`: share of"
        " answers rated negatively.",
    )
    window: Duration = Field(default="1h", description="How far back the questions the score is computed on go.")
    threshold: float | None = Field(
        default=None,
        gt=0.0,
        le=2.0,
        description="Score above which the twin has drifted. Default per detector: embedding-centroid 0.4, mmd"
        " 0.06, domain-classifier 0.75, feedback 0.3.",
    )
    for_: Duration = Field(default="10m", alias="for", description="How long drift must hold before the alert fires.")
    min_questions: int = Field(
        default=20, ge=2, le=100_000, description="Fewer questions than this in the window never fire the alert."
    )
    reference_questions: int = Field(
        default=100,
        ge=10,
        le=10_000,
        description="How many of the twin's first questions are the domain classifier's reference.",
    )

    @property
    def effective_threshold(self) -> float:
        return self.threshold if self.threshold is not None else DRIFT_THRESHOLDS[self.detector]


# ------------------------------------------------------------------------------------------- spec

DeletionPolicy = Literal["Retain", "Delete"]


class LLMTwinSpec(ApiModel):
    """Desired state of one twin: whose voice, which documents, which model, how it is served."""

    author: AuthorSpec = Field(description="Whose voice the twin imitates.")
    base_model: BaseModelSpec = Field(description="The model adapters are trained on and served with.")
    sources: list[SourceSpec] = Field(min_length=1, max_length=32, description="Where the documents are.")
    vector_store: VectorStoreSpec = Field(
        default_factory=VectorStoreSpec, description="Where chunks live and how they are cut and embedded."
    )
    ingest: IngestSpec = Field(default_factory=IngestSpec, description="How object events become ingest Workflows.")
    training: TrainingSpec = Field(default_factory=TrainingSpec, description="LoRA retraining settings.")
    serving: ServingSpec = Field(default_factory=ServingSpec, description="Model server, canary and front door.")
    drift: DriftSpec = Field(default_factory=DriftSpec, description="Drift detection that triggers retraining.")
    deletion_policy: DeletionPolicy = Field(
        default="Retain",
        description="`Delete` also removes the Milvus collection and bucket notifications when the twin is deleted.",
    )


# ----------------------------------------------------------------------------------------- status


class Condition(ApiModel):
    """Kubernetes-style condition (`kubectl wait --for=condition=Ready` reads these); types and
    reasons are defined in `llmtwin.api.conditions`."""

    model_config = ConfigDict(extra="ignore")

    type: str = Field(description="Condition type, e.g. Ready, StorageReady, Degraded.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        max_length=1024,
        description="One CamelCase word saying why.",
    )
    message: str = Field(default="", max_length=32768, description="What happened, for a human.")
    last_transition_time: str = Field(description="When the status last changed.")
    observed_generation: int | None = Field(default=None, description="The spec generation this was computed from.")


class BucketStatus(ApiModel):
    """A bucket the operator wired for this twin. Where and with which Secret are recorded so that a
    bucket later dropped from the spec can still be found and its notification removed."""

    model_config = ConfigDict(extra="ignore")

    bucket: str = Field(description="Bucket name.")
    endpoint: str = Field(description="S3 endpoint the bucket lives on.")
    credentials_secret_ref: SecretKeyRef = Field(description="The Secret the operator used for the bucket.")
    state: str = Field(
        description="Notifying; the StorageReady reason that keeps it from notifying; or Removing "
        "(dropped from the spec, its notification not removed yet)."
    )


TrainingResult = Literal["Running", "Succeeded", "Failed"]
# What a retrain came to: still running, failed, or a registered version the evaluation gate promoted or
# rejected. The operator exports it (names.RETRAIN_DECISION_METRIC); the dashboard draws it.
RetrainDecision = Literal["running", "failed", "promoted", "rejected"]
RETRAIN_DECISIONS: tuple[RetrainDecision, ...] = get_args(RetrainDecision)


class TrainingRun(ApiModel):
    """The twin's latest retrain: what started it and how it ended. The gateway's dispatcher writes the
    start (it claims the run here before creating the Workflow, so two dispatchers cannot both start
    one); the retrain's register step and its exit handler write the end. Single-flight and cooldown
    read this, not Workflow objects (which Argo's TTL deletes)."""

    model_config = ConfigDict(extra="ignore")

    episode: str = Field(default="", description="What started it: `<fingerprint>@<startsAt>` or `manual/<id>`.")
    workflow: str = Field(default="", description="The retrain Workflow's name.")
    started_at: str = Field(default="", description="When it was started (by the dispatcher or `llmtwin train`).")
    finished_at: str | None = Field(default=None, description="When it ended (register step or exit handler).")
    result: TrainingResult = Field(default="Running", description="Running, Succeeded or Failed.")
    version: str | None = Field(default=None, description="The model version it registered.")
    promoted: bool | None = Field(default=None, description="Whether that version passed the evaluation gate.")

    @property
    def decision(self) -> RetrainDecision:
        if self.result == "Running":
            return "running"
        if self.result == "Failed":
            return "failed"
        return "promoted" if self.promoted else "rejected"


class RejectedVersion(ApiModel):
    """A version that passed the evaluation gate but did not reach production: it is never tried again."""

    model_config = ConfigDict(extra="ignore")

    version: str = Field(description="The MLflow model version.")
    reason: str = Field(
        default="", max_length=4096, description="Why: the AnalysisRun's message, or who rolled it back."
    )
    rejected_at: str = Field(default="", description="When.")


MAX_REJECTED_VERSIONS = 20  # the newest are kept; an older one is still tagged `rejected` in MLflow


class LLMTwinStatus(ApiModel):
    """Observed state. The operator writes phase, conditions, children, collection, buckets, modelVersion
    and rejectedVersions; the workflow steps write documents, chunks, lastIngestion, lastError,
    lastTraining and candidateVersion."""

    model_config = ConfigDict(extra="ignore")

    phase: Phase = Field(default=Phase.PENDING, description="Pending, Ready, Degraded or Deleting.")
    observed_generation: int | None = Field(default=None, description="The spec generation last reconciled.")
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, StorageReady, Degraded, ServingReady, Promoting, Promoted."
    )
    collection: str | None = Field(default=None, description="Resolved Milvus collection.")
    children: list[str] = Field(default_factory=list, description="Kind/name of owned objects.")
    model_version: str | None = Field(
        default=None,
        description="Production adapter version (MLflow alias `production`); empty: the base model. Written by "
        "the operator when a candidate's canary succeeds (by `llmtwin up`, `promote` and `rollback` on one machine).",
    )
    candidate_version: str | None = Field(
        default=None,
        description="The last version that passed the evaluation gate (MLflow alias `candidate`), written by the "
        "retrain's register step. It is in its canary while it is neither modelVersion nor rejected.",
    )
    rejected_versions: list[RejectedVersion] = Field(
        default_factory=list,
        max_length=MAX_REJECTED_VERSIONS,
        description="Candidates whose canary aborted (or that a human rolled back), newest last; never retried.",
    )
    documents: int | None = Field(default=None, description="Documents in the collection.")
    chunks: int | None = Field(default=None, description="Chunks in the collection.")
    last_ingestion: str | None = Field(default=None, description="When an ingest step last finished.")
    last_training: TrainingRun | None = Field(default=None, description="The latest retrain and how it ended.")
    last_error: str | None = Field(default=None, description="The last document or clean-up failure.")
    buckets: list[BucketStatus] = Field(default_factory=list, description="Buckets wired to the event plane.")

    @property
    def promoting_version(self) -> str | None:
        """The candidate on its way to production: neither production already nor rejected."""
        candidate = self.candidate_version
        if not candidate or candidate == self.model_version or self.rejected(candidate):
            return None
        return candidate

    def rejected(self, version: str) -> bool:
        return any(r.version == version for r in self.rejected_versions)

    @property
    def serving_version(self) -> str | None:
        """The adapter the model server's pod template carries: the candidate during its canary, else production."""
        return self.promoting_version or self.model_version

    @field_validator("last_training", mode="before")
    @classmethod
    def _drop_timestamp_only_training(cls, value: Any) -> Any:
        # Earlier builds wrote a bare timestamp: nothing to decide single-flight or cooldown with.
        return value if isinstance(value, dict | TrainingRun) else None

    @field_validator("buckets", mode="before")
    @classmethod
    def _drop_unstructured_buckets(cls, value: Any) -> Any:
        # Earlier operator builds wrote "<bucket>: <state>" strings: no endpoint to act on, so skipped.
        return [b for b in value if isinstance(b, dict)] if isinstance(value, list) else value


# --------------------------------------------------------------------------------------- resource


class ObjectMeta(BaseModel):
    """The part of Kubernetes' ObjectMeta the code reads."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = Field(pattern=K8S_NAME_PATTERN, max_length=63)
    namespace: str = "default"
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = Field(default=None, alias="resourceVersion")
    creation_timestamp: str | None = Field(default=None, alias="creationTimestamp")  # who came first (tenancy)


class LLMTwin(BaseModel):
    """An LLMTwin resource: metadata, the desired spec and the observed status."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    api_version: Literal["llmtwin.dev/v1alpha1"] = Field(default=API_VERSION, alias="apiVersion")
    kind: Literal["LLMTwin"] = KIND
    metadata: ObjectMeta
    spec: LLMTwinSpec
    status: LLMTwinStatus = Field(default_factory=LLMTwinStatus)

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def collection(self) -> str:
        """The Milvus collection for this twin (spec override or a name derived from namespace/name)."""
        return self.spec.vector_store.collection or default_collection(self.namespace, self.name)

    def with_default_milvus(self, uri: str) -> LLMTwin:
        """This twin with an empty `vectorStore.uri` made `uri`: the platform's Milvus (a cluster's processes), or
        the data directory's Milvus Lite file (`llmtwin up`). The spec as written keeps it empty."""
        if self.spec.vector_store.uri:
            return self
        twin = self.model_copy(deep=True)
        # Validated again: what a file uri allows (index types, file names) is checked for the filled one.
        twin.spec.vector_store = VectorStoreSpec.model_validate({**self.spec.vector_store.wire(), "uri": uri})
        return twin
