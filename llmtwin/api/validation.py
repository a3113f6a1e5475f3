"""Checks the CRD schema cannot express, in one place for `llmtwin validate`, the operator and the steps.

The schema (generated from `v1alpha1`) and its CEL rules reject most bad input at apply time; what is
left needs more than one object (two sources naming one bucket), derived values (the collection
name) or facts about the base model (its linear modules, its context length). Every problem names
the field it is about, with its path in the resource.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmtwin.api.v1alpha1 import LLMTwin

MAX_COLLECTION_NAME = 255  # Milvus' limit
PROMPT_OVERHEAD_TOKENS = 256  # the system prompt, the template's own words and the question, roughly


@dataclass(frozen=True)
class Problem:
    field: str  # path in the resource: spec.sources[1]
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def spec_problems(twin: LLMTwin) -> list[Problem]:
    """What is wrong with a spec that the schema admitted; empty when it can be reconciled."""
    spec = twin.spec
    problems = []
    seen: set[tuple[str, str | None, str]] = set()
    for i, source in enumerate(spec.sources):
        key = (source.bucket, source.endpoint, source.prefix)
        if key in seen:
            problems.append(
                Problem(f"spec.sources[{i}]", f"bucket {source.bucket!r} prefix {source.prefix!r} is listed twice")
            )
        seen.add(key)
    if spec.serving.max_input_tokens >= spec.serving.max_total_tokens:
        problems.append(Problem("spec.serving.maxInputTokens", "must be smaller than spec.serving.maxTotalTokens"))
    context = spec.serving.gateway.top_k * spec.vector_store.chunk_size
    if context + PROMPT_OVERHEAD_TOKENS > spec.serving.max_input_tokens:
        problems.append(
            Problem(
                "spec.serving.gateway.topK",
                f"{spec.serving.gateway.top_k} chunks of {spec.vector_store.chunk_size} tokens plus the prompt exceed"
                f" maxInputTokens ({spec.serving.max_input_tokens}): lower topK or chunkSize, or raise maxInputTokens",
            )
        )
    if len(twin.collection) > MAX_COLLECTION_NAME:
        problems.append(
            Problem("spec.vectorStore.collection", f"the derived name is longer than {MAX_COLLECTION_NAME}; set one")
        )
    return problems


@dataclass(frozen=True)
class ModelFacts:
    """What the training checks need to know about the base model (read from its config by the caller)."""

    linear_modules: frozenset[str]  # suffixes of its linear layers: what LoRA can target
    context_length: int | None  # max_position_embeddings, when the config has one


def training_problems(twin: LLMTwin, model: ModelFacts) -> list[Problem]:
    """Training settings this base model cannot honour."""
    training = twin.spec.training
    problems = []
    missing = [m for m in training.lora.target_modules if m not in model.linear_modules]
    if missing:
        problems.append(
            Problem(
                "spec.training.lora.targetModules",
                f"{missing} not in {twin.spec.base_model.id}; its linear modules are {sorted(model.linear_modules)}",
            )
        )
    if model.context_length and training.max_seq_length > model.context_length:
        problems.append(
            Problem(
                "spec.training.maxSeqLength",
                f"{training.max_seq_length} exceeds the model's context of {model.context_length} tokens",
            )
        )
    return problems
