"""The dataset step: a snapshot of the collection → deduplicated, split-by-document chat examples."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pytest

from llmtwin.api.errors import SpecError
from llmtwin.corpus.embed import embedder_for
from llmtwin.corpus.store import store_for
from llmtwin.models.load import load_tokenizer
from llmtwin.workflows.retrain.dataset import (
    FALLBACK_PROMPT,
    SERVED_MODEL_PROMPT,
    SYSTEM_PROMPT,
    ChatFormat,
    build_dataset,
    read_jsonl,
)
from tests.retrain.tiny import resolved


def records(workspace) -> list[dict]:
    return read_jsonl(workspace.train_file) + read_jsonl(workspace.eval_file)


def test_exact_and_near_duplicates_are_removed(twin, built_dataset):
    manifest = json.loads(built_dataset.manifest.read_text())
    assert manifest["counts"]["exact_duplicates"] >= 1  # the verbatim copy of essay-00
    assert manifest["counts"]["near_duplicates"] >= 1  # the copy with one word changed
    responses = [r["response"] for r in records(built_dataset)]
    assert len(responses) >= 10 and len(set(responses)) == len(responses)
    vectors = np.asarray(embedder_for(twin.spec.vector_store.embedding_model).embed(responses))
    threshold = twin.spec.training.dataset.near_duplicate_threshold
    assert all(float(vectors[i] @ vectors[j]) < threshold for i, j in combinations(range(len(vectors)), 2))
    documents = {r["document"] for r in records(built_dataset)}
    assert not {"essays/copies/essay-00-again.md", "essays/copies/essay-00-edited.md"} <= documents


def test_no_document_is_in_both_splits(built_dataset):
    manifest = json.loads(built_dataset.manifest.read_text())
    train = {r["document"] for r in read_jsonl(built_dataset.train_file)}
    held_out = {r["document"] for r in read_jsonl(built_dataset.eval_file)}
    assert train and held_out and not train & held_out
    assert manifest["documents"] == {"train": sorted(train), "eval": sorted(held_out)}


def test_hash_is_stable_across_runs_and_follows_the_content(twin, built_dataset, tmp_path):
    tokenizer = load_tokenizer(resolved(twin))
    again = build_dataset(twin, store_for(twin), tokenizer, tmp_path / "again")
    assert again == json.loads(built_dataset.manifest.read_text())
    assert (tmp_path / "again" / "train.jsonl").read_bytes() == built_dataset.train_file.read_bytes()
    renamed = twin.model_copy(deep=True)
    renamed.spec.author.name = "Someone Else"
    other = build_dataset(renamed, store_for(twin), tokenizer, tmp_path / "renamed")
    assert other["snapshot"] == again["snapshot"] and other["hash"] != again["hash"]


def test_examples_are_the_authors_passages_in_the_chat_template(twin, built_dataset):
    tokenizer = load_tokenizer(resolved(twin))
    system = SYSTEM_PROMPT.format(author=twin.spec.author.name, style=twin.spec.author.style_notes)
    for record in records(built_dataset):
        messages = [{"role": "system", "content": system}, {"role": "user", "content": record["instruction"]}]
        assert record["prompt"] == tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert record["completion"].startswith(record["response"])
        assert record["title"] in record["instruction"]
    openings = [r for r in records(built_dataset) if r["instruction"].startswith("Write the opening")]
    assert openings and all(r["response"].lstrip().startswith("#") for r in openings)
    assert any(r["instruction"].startswith("Continue your piece") for r in records(built_dataset))
    assert any('section "On the ' in r["instruction"] for r in records(built_dataset))


def test_a_tokenizer_without_chat_template_gets_the_documented_fallback(twin):
    tokenizer = load_tokenizer(resolved(twin))
    tokenizer.chat_template = None
    prompt, completion = ChatFormat(tokenizer).render("You are M.", "Write.", "The tide waits.")
    assert prompt == FALLBACK_PROMPT.format(system="You are M.", instruction="Write.")
    assert completion == "The tide waits." + tokenizer.eos_token


def test_length_filter_drops_short_passages(twin, tmp_path):
    strict = twin.model_copy(deep=True)
    strict.spec.training.dataset.min_chars = 400
    manifest = build_dataset(strict, store_for(twin), load_tokenizer(resolved(twin)), tmp_path)
    assert manifest["counts"]["too_short"] >= 1
    kept = read_jsonl(tmp_path / "train.jsonl")
    assert kept and all(len(r["response"].strip()) >= 400 for r in kept)


def test_served_model_recipe_needs_an_endpoint(twin, tmp_path):
    served = twin.model_copy(deep=True)
    served.spec.training.dataset.recipe = "served-model"
    with pytest.raises(SpecError, match="spec.training.dataset.recipe"):
        build_dataset(served, store_for(twin), load_tokenizer(resolved(twin)), tmp_path)


def test_served_model_recipe_asks_the_served_model_for_instructions(twin, tmp_path):
    """The instructions come from a real `llmtwin serve` (the tiny model, greedy): the same request to
    the same server gives the same text, so every instruction can be checked against it."""
    from llmtwin.serving.api import ServerLimits
    from llmtwin.serving.client import model_server_client
    from llmtwin.serving.server import BackgroundServer, start_engine
    from tests.harness import free_port

    engine = start_engine(resolved(twin), {}, tmp_path / "models", None)
    server = BackgroundServer(engine, ServerLimits(model_id="tiny", max_input_tokens=4096, max_total_tokens=8192),
                              "127.0.0.1", free_port()).start()  # fmt: skip
    try:
        served = twin.model_copy(deep=True)
        served.spec.training.dataset.recipe = "served-model"
        served.spec.serving.gateway.generation_endpoint = server.url
        manifest = build_dataset(served, store_for(twin), load_tokenizer(resolved(twin)), tmp_path / "dataset")
        written = read_jsonl(tmp_path / "dataset" / "train.jsonl") + read_jsonl(tmp_path / "dataset" / "eval.jsonl")
        client = model_server_client(server.url)
        asked = [
            client.text_generation(
                SERVED_MODEL_PROMPT.format(author=twin.spec.author.name, text=r["response"]),
                max_new_tokens=64,
                do_sample=False,
            ).strip()
            for r in written[:3]
        ]
    finally:
        server.stop()
        engine.stop()
    assert written and manifest["recipe"] == "served-model"
    for record, text in zip(written, asked, strict=False):
        expected = text.splitlines()[0].strip() if text else None
        assert record["instruction"] == expected or (not expected and record["instruction"].startswith("Write"))
