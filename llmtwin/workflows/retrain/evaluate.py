"""Evaluate the candidate adapter against production (or the base model) on the held-out documents.

For each model (base; production, when the twin has a production version; candidate):
- perplexity of the author's held-out responses given their prompts (prompt tokens not scored);
- style similarity: mean embedding cosine between the model's greedy continuation of a held-out
  prompt and the author's actual passage (the twin's own embedding model);
- grounded answers: questions about held-out documents answered from retrieved context (the
  serving path's `Retriever` and prompt); the mean cosine of answer to retrieved context, plus
  how often retrieval found the document asked about. Reported, not gated.

The gate (spec.training.gate) compares one metric of the candidate with the reference model
(production if there is one, else base) as a relative improvement; report.json says why the
candidate was or was not promoted.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmtwin.api.v1alpha1 import GateSpec, LLMTwin
from llmtwin.corpus.store import ChunkStore
from llmtwin.models.load import detect_precision, load_model, load_tokenizer, quiet_transformers
from llmtwin.models.resolve import ResolvedModel
from llmtwin.workflows.retrain.dataset import read_jsonl
from llmtwin.workflows.retrain.packing import PackedBatches, learned_tokens, tokenize
from llmtwin.workflows.retrain.progress import publish
from llmtwin.workflows.retrain.workspace import RetrainWorkspace

LOWER_IS_BETTER = {"perplexity": True, "style_similarity": False}
MAX_NEW_TOKENS = 64
EVAL_BATCH_ROWS = 4
GROUNDED_QUESTION = "What do you have to say about {title}?"


def perplexity(model: Any, batches: PackedBatches, device: str) -> float:
    nll, counted = 0.0, 0
    with torch.no_grad():
        for number in range(batches.per_epoch):
            batch, _ = batches.batch(number)
            # num_items_in_batch=1 makes the model's loss the summed NLL of the batch's response tokens.
            nll += model(**{k: v.to(device) for k, v in batch.items()}, num_items_in_batch=1).loss.item()
            counted += learned_tokens(batch)
    return math.exp(nll / counted)


def generate(model: Any, tokenizer: Any, prompt: str, device: str) -> str:
    """Greedy continuation; the prompt is cut from the left to leave room in the model's context."""
    context = getattr(model.config, "max_position_embeddings", None) or 2048
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    ids = ids[:, -(context - MAX_NEW_TOKENS) :]
    with torch.no_grad():
        output = model.generate(
            input_ids=ids.to(device),
            attention_mask=torch.ones_like(ids).to(device),
            max_new_tokens=MAX_NEW_TOKENS,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    return tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True).strip()


def cosine_pairs(embed: Any, left: list[str], right: list[str]) -> float:
    """Mean cosine of left[i] and right[i] (the embedder returns unit vectors)."""
    if not left:
        return float("nan")
    vectors = np.asarray(embed(left + right))
    return float(np.mean(np.sum(vectors[: len(left)] * vectors[len(left) :], axis=1)))


def spread(items: list[Any], count: int) -> list[Any]:
    """`count` items evenly spaced through the list (deterministic, covers every held-out document)."""
    if count >= len(items):
        return items
    return [items[round(i * (len(items) - 1) / max(1, count - 1))] for i in range(count)]


def render_chat(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """Messages as the model reads them: its chat template, else the contents one after the other."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return "\n\n".join(m["content"] for m in messages) + "\n\n"


def grounded_prompts(
    twin: LLMTwin, store: ChunkStore, embedder: Any, tokenizer: Any, records: list[dict[str, Any]], count: int
) -> list[Any]:
    """(RAG prompt, retrieved hits, document asked about) for questions on `count` held-out documents:
    the front door's own retrieval and messages."""
    from llmtwin.frontdoor.retrieve import Retriever

    if count <= 0:
        return []
    retriever = Retriever(twin, store, embedder)
    prompts = []
    for title, document in spread(sorted({(r["title"], r["document"]) for r in records}), count):
        question = GROUNDED_QUESTION.format(title=title)
        hits = retriever.retrieve(question)
        prompts.append((render_chat(tokenizer, retriever.messages(question, hits)), hits, document))
    return prompts


@contextlib.contextmanager
def active(model: Any, variant: str):
    """Run `model` as the base model (adapters off) or with one named adapter."""
    if variant == "base":
        with model.disable_adapter():
            yield
        return
    model.set_adapter(variant)
    yield


def decide(gate: GateSpec, scores: dict[str, dict[str, float]], production_version: str | None) -> dict[str, Any]:
    reference = "production" if "production" in scores else "base"
    label = f"production (version {production_version})" if production_version else "the base model"
    reference_value = scores[reference][gate.metric]
    candidate_value = scores["candidate"][gate.metric]
    decision: dict[str, Any] = {
        "metric": gate.metric,
        "min_improvement": gate.min_improvement,
        "reference": reference,
        "reference_value": reference_value,
        "candidate_value": candidate_value,
    }
    if not (math.isfinite(candidate_value) and math.isfinite(reference_value)):
        return {**decision, "improvement": None, "promoted": False, "reason": f"{gate.metric} is not finite"}
    if LOWER_IS_BETTER[gate.metric]:
        improvement = (reference_value - candidate_value) / reference_value
    else:
        improvement = (candidate_value - reference_value) / max(abs(reference_value), 1e-9)
    promoted = improvement >= gate.min_improvement
    reason = (
        f"candidate {gate.metric} {candidate_value:.4g} vs {label} {reference_value:.4g}: "
        f"{improvement:+.2%} relative improvement, {'meets' if promoted else 'below'} the required "
        f"{gate.min_improvement:.2%}"
    )
    return {**decision, "improvement": improvement, "promoted": promoted, "reason": reason}


@dataclass
class Evaluation:
    """What every model variant is scored on: held-out batches, style prompts, grounded questions."""

    tokenizer: Any
    records: list[dict[str, Any]]
    batches: PackedBatches
    style_records: list[dict[str, Any]]
    questions: list[Any]
    embedder: Any


def prepare(
    twin: LLMTwin,
    store: ChunkStore,
    base: ResolvedModel,
    workspace: RetrainWorkspace,
    style_samples: int,
    grounded_questions: int,
) -> Evaluation:
    from llmtwin.corpus.embed import embedder_for

    training = twin.spec.training
    tokenizer = load_tokenizer(base)
    records = read_jsonl(workspace.eval_file)
    batches = PackedBatches(
        tokenize(records, tokenizer, training.max_seq_length),
        training.max_seq_length,
        EVAL_BATCH_ROWS,
        training.seed,
        tokenizer.pad_token_id,
    )
    embedder = embedder_for(twin.spec.vector_store.embedding_model)
    questions = grounded_prompts(twin, store, embedder, tokenizer, records, grounded_questions)
    return Evaluation(tokenizer, records, batches, spread(records, style_samples), questions, embedder)


def load_variants(base: ResolvedModel, workspace: RetrainWorkspace, production_adapter: Path | None, precision) -> Any:
    """The base model with the candidate adapter, and production's when there is one."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(load_model(base, precision), str(workspace.adapter_dir), adapter_name="candidate")
    if production_adapter:
        model.load_adapter(str(production_adapter), adapter_name="production")
    model.eval()
    return model


def score(model: Any, evaluation: Evaluation, device: str) -> tuple[dict[str, float], list[str]]:
    """The active variant's scores, and its first generations (samples for the report)."""
    tokenizer, embed = evaluation.tokenizer, evaluation.embedder.embed
    generations = [generate(model, tokenizer, r["prompt"], device) for r in evaluation.style_records]
    answers = [generate(model, tokenizer, prompt, device) for prompt, _, _ in evaluation.questions]
    contexts = [" ".join(h.text for h in hits) for _, hits, _ in evaluation.questions]
    scores = {
        "perplexity": perplexity(model, evaluation.batches, device),
        "style_similarity": cosine_pairs(embed, generations, [r["response"] for r in evaluation.style_records]),
        "grounded_similarity": cosine_pairs(embed, answers, contexts),
    }
    return scores, generations[:2]


def retrieval_found_document(questions: list[Any]) -> float | None:
    """How often retrieval found the document a grounded question was about."""
    if not questions:
        return None
    return sum(any(f"{h.bucket}/{h.key}" == doc for h in hits) for _, hits, doc in questions) / len(questions)


def evaluate_candidate(
    twin: LLMTwin,
    store: ChunkStore,
    base: ResolvedModel,
    workspace: RetrainWorkspace,
    production_adapter: Path | None,
    production_version: str | None,
    style_samples: int,
    grounded_questions: int,
) -> dict[str, Any]:
    """Score base, production and candidate; decide the gate; write and return report.json."""
    quiet_transformers()
    evaluation = prepare(twin, store, base, workspace, style_samples, grounded_questions)
    precision = detect_precision()
    model = load_variants(base, workspace, production_adapter, precision)
    variants = ["base", "production", "candidate"] if production_adapter else ["base", "candidate"]
    scores: dict[str, dict[str, float]] = {}
    samples: dict[str, list[str]] = {}
    for done, variant in enumerate(variants, 1):
        with active(model, variant):
            scores[variant], samples[variant] = score(model, evaluation, precision.device)
        publish("evaluate", done, len(variants), model=variant, **scores[variant])

    decision = decide(twin.spec.training.gate, scores, production_version)
    batches = evaluation.batches
    report = {
        "promoted": decision.pop("promoted"),
        "reason": decision.pop("reason"),
        "gate": decision,
        "models": scores,
        "production_version": production_version,
        "dataset_hash": json.loads(workspace.manifest.read_text())["hash"],
        "eval": {
            "examples": len(evaluation.records),
            "documents": len({r["document"] for r in evaluation.records}),
            "scored_tokens": sum(learned_tokens(batches.batch(n)[0]) for n in range(batches.per_epoch)),
            "style_samples": len(evaluation.style_records),
            "grounded_questions": len(evaluation.questions),
            "retrieval_found_document": retrieval_found_document(evaluation.questions),
        },
        "samples": samples,
    }
    workspace.evaluate_dir.mkdir(parents=True, exist_ok=True)
    workspace.report.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report
