"""The twin's corpus → an instruction dataset in the author's voice, hashed and versioned.

1. Snapshot every chunk of the twin's Milvus collection (text, source document, position, and the
   embedding ingest already computed), recording the snapshot's identity.
2. Passages longer than `maxChars` are split at sentence boundaries; passages shorter than
   `minChars`, or mostly not letters (tables, numbers, code), are dropped.
3. Exact duplicates (same words, any case and spacing) and near duplicates (embedding cosine at or
   above `nearDuplicateThreshold`, greedily in corpus order) are dropped, before the split, so a
   copy of a held-out passage cannot hide in the training set.
4. Documents, not passages, are split into train and eval by a seeded hash of their source key:
   deterministic, and no document has passages on both sides.
5. Each passage becomes a conversation: a system prompt naming the author, an instruction derived
   from the document's title, the passage's heading or the text just before it (or written by the
   served model with the `served-model` recipe), and the author's passage as the response. The
   conversation is rendered with the tokenizer's chat template (or spec.baseModel.chatTemplate);
   a tokenizer without one gets `FALLBACK_PROMPT` below.

Output: `train.jsonl`, `eval.jsonl` (records sorted by document and position) and `manifest.json`,
whose `hash` is the sha256 of both files: the same corpus and spec give the same hash on every run.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from llmtwin.api.errors import SpecError
from llmtwin.api.v1alpha1 import DatasetSpec, LLMTwin
from llmtwin.corpus.store import ChunkStore
from llmtwin.workflows.retrain.progress import publish

SYSTEM_PROMPT = "You are {author}. Write in your own voice. {style}"
# For tokenizers without a chat template: an Alpaca-style layout; the response ends with EOS.
FALLBACK_PROMPT = "{system}\n\n### Instruction:\n{instruction}\n\n### Response:\n"
SERVED_MODEL_PROMPT = (
    "Here is a passage by {author}:\n\n{text}\n\n"
    "Write the one-sentence request to which this passage is the answer. Request:"
)
MIN_LETTER_RATIO = 0.6  # below this share of letters among non-space characters a passage is not prose
CONTEXT_TAIL_CHARS = 300  # how much of the preceding passage a continuation instruction quotes
SNAPSHOT_FIELDS = ["id", "text", "bucket", "key", "chunk_index", "title", "ingested_at", "vector"]
_HEADING = re.compile(r"^[ \t]*#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


@dataclass(frozen=True)
class Passage:
    id: str
    document: str  # bucket/key of the source object
    index: int  # position in the document
    title: str
    text: str


def snapshot(store: ChunkStore) -> tuple[list[Passage], np.ndarray, dict[str, Any]]:
    """Every chunk of the collection in (document, position) order, their unit vectors, and an identity."""
    rows = [row for batch in store.scan(SNAPSHOT_FIELDS) for row in batch]
    rows.sort(key=lambda r: (r["bucket"], r["key"], r["chunk_index"]))
    passages = [
        Passage(r["id"], f"{r['bucket']}/{r['key']}", int(r["chunk_index"]), r["title"], r["text"]) for r in rows
    ]
    vectors = np.asarray([r["vector"] for r in rows], dtype=np.float32).reshape(len(rows), -1)
    identity = {
        "collection": store.collection,
        "chunks": len(rows),
        "documents": len({p.document for p in passages}),
        # Chunk ids hash the source key, position and content: this names exactly what was read.
        "content_sha256": hashlib.sha256("\n".join(sorted(p.id for p in passages)).encode()).hexdigest(),
        "last_ingested_at": max((int(r["ingested_at"]) for r in rows), default=0),
    }
    return passages, _unit(vectors), identity


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


class Embed(Protocol):
    def __call__(self, texts: list[str]) -> list[list[float]]: ...


def split_long(
    passages: list[Passage], vectors: np.ndarray, max_chars: int, embed: Embed
) -> tuple[list[Passage], np.ndarray, int]:
    """Split passages over `max_chars` at sentence boundaries; only the new pieces are embedded."""
    long = {i for i, p in enumerate(passages) if len(p.text) > max_chars}
    if not long:
        return passages, vectors, 0
    from llama_index.core.node_parser import SentenceSplitter

    splitter = SentenceSplitter(chunk_size=max_chars, chunk_overlap=0, tokenizer=list)  # list: length in chars
    out_passages: list[Passage] = []
    out_vectors: list[np.ndarray] = []
    pieces_added = 0
    for i, passage in enumerate(passages):
        if i not in long:
            out_passages.append(passage)
            out_vectors.append(vectors[i])
            continue
        pieces = splitter.split_text(passage.text)
        out_passages += [replace(passage, id=f"{passage.id}:{k}", text=t) for k, t in enumerate(pieces)]
        out_vectors += list(_unit(np.asarray(embed(pieces), dtype=np.float32)))
        pieces_added += len(pieces)
    return out_passages, np.stack(out_vectors), pieces_added


def rejection(text: str, min_chars: int) -> str | None:
    """Why a passage is not training material, or None."""
    stripped = text.strip()
    if len(stripped) < min_chars:
        return "too_short"
    visible = [c for c in stripped if not c.isspace()]
    if sum(c.isalpha() for c in visible) < MIN_LETTER_RATIO * len(visible):
        return "low_quality"
    return None


def exact_key(text: str) -> str:
    return hashlib.sha256(" ".join(text.lower().split()).encode()).hexdigest()


def near_duplicates(vectors: np.ndarray, threshold: float, block: int = 1024) -> np.ndarray:
    """True for each row whose cosine to an earlier kept row is >= threshold (greedy, in order)."""
    duplicate = np.zeros(len(vectors), dtype=bool)
    kept: list[int] = []
    for start in range(0, len(vectors), block):
        rows = vectors[start : start + block]
        against_kept = rows @ vectors[kept].T if kept else np.zeros((len(rows), 0), dtype=vectors.dtype)
        within = rows @ rows.T
        kept_here: list[int] = []
        for i in range(len(rows)):
            if (against_kept.shape[1] and against_kept[i].max() >= threshold) or (
                kept_here and within[i, kept_here].max() >= threshold
            ):
                duplicate[start + i] = True
            else:
                kept_here.append(i)
        kept += [start + i for i in kept_here]
    return duplicate


def select(passages: list[Passage], vectors: np.ndarray, spec: DatasetSpec) -> tuple[list[Passage], Counter[str]]:
    """The passages that pass the length and quality filters and are no (near) copy of an earlier one."""
    counts: Counter[str] = Counter()
    keep: list[int] = []
    seen: set[str] = set()
    for i, passage in enumerate(passages):
        reason = rejection(passage.text, spec.min_chars)
        key = exact_key(passage.text)
        if reason is None and key in seen:
            reason = "exact_duplicates"
        if reason:
            counts[reason] += 1
            continue
        seen.add(key)
        keep.append(i)
    near = near_duplicates(vectors[keep], spec.near_duplicate_threshold)
    counts["near_duplicates"] = int(near.sum())
    return [passages[i] for i, duplicate in zip(keep, near, strict=True) if not duplicate], counts


def eval_documents(documents: list[str], eval_fraction: float, seed: int) -> set[str]:
    """The held-out documents: the lowest seeded hashes, at least one, never all."""
    if len(documents) < 2:
        raise ValueError(f"a train/eval split needs at least 2 source documents, the corpus has {len(documents)}")
    ranked = sorted(documents, key=lambda d: hashlib.sha256(f"{seed}:{d}".encode()).hexdigest())
    count = min(len(documents) - 1, max(1, round(len(documents) * eval_fraction)))
    return set(ranked[:count])


def derived_instruction(passage: Passage, previous: Passage | None) -> str:
    """An instruction from the document's title, the headings in the passage, or the text before it."""
    title = passage.title.strip()
    headings = [h.strip() for h in _HEADING.findall(passage.text) if h.strip().lower() != title.lower()]
    if headings and passage.text.lstrip().startswith("#"):
        return f'Write the section "{headings[0]}" of your piece "{title}".'
    if previous is None:
        return f'Write the opening of your piece "{title}".'
    into = f', on into the section "{headings[0]}"' if headings else ""
    tail = previous.text[-CONTEXT_TAIL_CHARS:]
    tail = tail[tail.find(" ") + 1 :] if len(previous.text) > CONTEXT_TAIL_CHARS else tail  # from a word start
    return f'Continue your piece "{title}"{into}. It so far ends with:\n\n…{tail.strip()}'


class ServedModelInstructions:
    """The `served-model` recipe: the currently served model writes each passage's instruction."""

    def __init__(self, twin: LLMTwin):
        endpoint = twin.spec.serving.gateway.generation_endpoint
        if not endpoint:
            raise SpecError(
                "spec.training.dataset.recipe", "served-model needs spec.serving.gateway.generationEndpoint"
            )
        from llmtwin.serving.client import model_server_client

        self.client = model_server_client(endpoint)
        self.author = twin.spec.author.name

    def __call__(self, passage: Passage, previous: Passage | None) -> str:
        prompt = SERVED_MODEL_PROMPT.format(author=self.author, text=passage.text)
        written = self.client.text_generation(prompt, max_new_tokens=64, do_sample=False).strip()
        return written.splitlines()[0].strip() if written else derived_instruction(passage, previous)


class ChatFormat:
    """Renders (system, instruction, response) into a prompt and the completion the model learns."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.source = "chat-template" if getattr(tokenizer, "chat_template", None) else "fallback"

    def render(self, system: str, instruction: str, response: str) -> tuple[str, str]:
        if self.source == "fallback":
            prompt = FALLBACK_PROMPT.format(system=system, instruction=instruction)
            return prompt, response + (self.tokenizer.eos_token or "")
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": instruction},
            {"role": "assistant", "content": response},
        ]
        prompt = self.tokenizer.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
        conversation = self.tokenizer.apply_chat_template(messages, tokenize=False)
        if not conversation.startswith(prompt):
            raise SpecError(
                "spec.baseModel.chatTemplate", "the rendered conversation does not start with its generation prompt"
            )
        return prompt, conversation[len(prompt) :]


def _jsonl(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in records).encode()


def curate(twin: LLMTwin, passages: list[Passage], vectors: np.ndarray) -> tuple[list[Passage], Counter[str]]:
    """Long passages split, then the length, quality and duplicate filters; counts say what went where."""
    spec = twin.spec.training.dataset

    def embed_pieces(texts: list[str]) -> list[list[float]]:
        # Loaded only when a passage is split: the other vectors come from the snapshot.
        from llmtwin.corpus.embed import embedder_for

        return embedder_for(twin.spec.vector_store.embedding_model).embed(texts)

    passages, vectors, pieces = split_long(passages, vectors, spec.max_chars, embed_pieces)
    kept, counts = select(passages, vectors, spec)
    counts.update(split_pieces=pieces)
    return kept, counts


def conversations(
    twin: LLMTwin, passages: list[Passage], previous: dict[tuple[str, int], Passage], tokenizer: Any
) -> tuple[dict[str, list[dict[str, Any]]], str]:
    """Each passage as an (instruction, response) record rendered for the model, split by document."""
    spec = twin.spec.training.dataset
    held_out = eval_documents(sorted({p.document for p in passages}), spec.eval_fraction, twin.spec.training.seed)
    instruction_for = ServedModelInstructions(twin) if spec.recipe == "served-model" else derived_instruction
    chat = ChatFormat(tokenizer)
    system = SYSTEM_PROMPT.format(author=twin.spec.author.name, style=twin.spec.author.style_notes).strip()
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "eval": []}
    for passage in passages:
        instruction = instruction_for(passage, previous.get((passage.document, passage.index - 1)))
        prompt, completion = chat.render(system, instruction, passage.text)
        splits["eval" if passage.document in held_out else "train"].append(
            {
                "id": passage.id,
                "document": passage.document,
                "title": passage.title,
                "instruction": instruction,
                "response": passage.text,
                "prompt": prompt,
                "completion": completion,
            }
        )
    if not splits["train"] or not splits["eval"]:
        raise ValueError(f"empty split after filtering: {len(splits['train'])} train, {len(splits['eval'])} eval")
    return splits, chat.source


def write_splits(out_dir: Path, splits: dict[str, list[dict[str, Any]]]) -> str:
    """train.jsonl and eval.jsonl; returns the sha256 over both (names included)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    for name, records in splits.items():
        data = _jsonl(records)
        (out_dir / f"{name}.jsonl").write_bytes(data)
        digest.update(f"{name}.jsonl\n".encode() + data)
    return f"sha256:{digest.hexdigest()}"


def build_dataset(twin: LLMTwin, store: ChunkStore, tokenizer: Any, out_dir: Path) -> dict[str, Any]:
    """Write train.jsonl, eval.jsonl and manifest.json into out_dir; return the manifest."""
    spec = twin.spec.training.dataset
    passages, vectors, identity = snapshot(store)
    publish("dataset", 1, 4, stage="snapshot", chunks=len(passages))
    previous = {(p.document, p.index): p for p in passages}
    kept, counts = curate(twin, passages, vectors)
    counts.update(chunks=identity["chunks"])
    publish("dataset", 2, 4, stage="filtered", passages=len(kept))
    splits, chat_format = conversations(twin, kept, previous, tokenizer)
    publish("dataset", 3, 4, stage="rendered", examples=len(kept))
    digest = write_splits(out_dir, splits)
    counts.update(train_examples=len(splits["train"]), eval_examples=len(splits["eval"]))
    manifest = {
        "hash": digest,
        "snapshot": identity,
        "base_model": twin.spec.base_model.id,
        "recipe": spec.recipe,
        "chat_format": chat_format,
        "settings": {**spec.wire(), "seed": twin.spec.training.seed},
        "counts": dict(sorted(counts.items())),
        "documents": {name: sorted({r["document"] for r in records}) for name, records in splits.items()},
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    publish("dataset", 4, 4, stage="written", hash=manifest["hash"])
    return manifest


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]
