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
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmtwin.api.v1alpha1 import GateSpec, LLMTwin
from llmtwin.workflows.retrain.base import detect_precision, load_base_model, load_tokenizer, quiet_transformers
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


def grounded_prompts(twin: LLMTwin, embedder: Any, records: list[dict[str, Any]], count: int) -> list[Any]:
    """(RAG prompt, retrieved hits, document asked about) for questions on `count` held-out documents."""
    from llmtwin.retrieval import Retriever

    if count <= 0:
        return []
    retriever = Retriever(twin, embedder=embedder)
    prompts = []
    for title, document in spread(sorted({(r["title"], r["document"]) for r in records}), count):
        question = GROUNDED_QUESTION.format(title=title)
        hits = retriever.retrieve(question)
        prompts.append((retriever.prompt(question, hits), hits, document))
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


def evaluate_candidate(
    twin: LLMTwin,
    workspace: RetrainWorkspace,
    production_adapter: Path | None,
    production_version: str | None,
    style_samples: int,
    grounded_questions: int,
) -> dict[str, Any]:
    """Score base, production and candidate; decide the gate; write and return report.json."""
    from peft import PeftModel

    from llmtwin.workflows.ingest.embed import embedder_for

    quiet_transformers()
    training = twin.spec.training
    tokenizer = load_tokenizer(twin.spec.base_model)
    records = read_jsonl(workspace.eval_file)
    batches = PackedBatches(
        tokenize(records, tokenizer, training.max_seq_length),
        training.max_seq_length,
        EVAL_BATCH_ROWS,
        training.seed,
        tokenizer.pad_token_id,
    )
    precision = detect_precision()
    model = PeftModel.from_pretrained(
        load_base_model(twin.spec.base_model, precision), str(workspace.adapter_dir), adapter_name="candidate"
    )
    variants = ["base", "candidate"]
    if production_adapter:
        model.load_adapter(str(production_adapter), adapter_name="production")
        variants.insert(1, "production")
    model.eval()

    embedder = embedder_for(twin.spec.vector_store.embedding_model)
    style_records = spread(records, style_samples)
    questions = grounded_prompts(twin, embedder, records, grounded_questions)

    scores: dict[str, dict[str, float]] = {}
    samples: dict[str, list[str]] = {}
    for done, variant in enumerate(variants, 1):
        with active(model, variant):
            generations = [generate(model, tokenizer, r["prompt"], precision.device) for r in style_records]
            answers = [generate(model, tokenizer, prompt, precision.device) for prompt, _, _ in questions]
            scores[variant] = {
                "perplexity": perplexity(model, batches, precision.device),
                "style_similarity": cosine_pairs(embedder.embed, generations, [r["response"] for r in style_records]),
                "grounded_similarity": cosine_pairs(
                    embedder.embed, answers, [" ".join(h.text for h in hits) for _, hits, _ in questions]
                ),
            }
        samples[variant] = generations[:2]
        publish("evaluate", done, len(variants), model=variant, **scores[variant])

    decision = decide(training.gate, scores, production_version)
    report = {
        "promoted": decision.pop("promoted"),
        "reason": decision.pop("reason"),
        "gate": decision,
        "models": scores,
        "production_version": production_version,
        "dataset_hash": json.loads(workspace.manifest.read_text())["hash"],
        "eval": {
            "examples": len(records),
            "documents": len({r["document"] for r in records}),
            "scored_tokens": sum(learned_tokens(batches.batch(n)[0]) for n in range(batches.per_epoch)),
            "style_samples": len(style_records),
            "grounded_questions": len(questions),
            "retrieval_found_document": (
                sum(any(f"{h.bucket}/{h.key}" == doc for h in hits) for _, hits, doc in questions) / len(questions)
                if questions
                else None
            ),
        },
        "samples": samples,
    }
    workspace.evaluate_dir.mkdir(parents=True, exist_ok=True)
    workspace.report.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report
