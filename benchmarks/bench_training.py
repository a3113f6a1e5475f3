"""Retraining benchmark: our packed LoRA loop against a plain `transformers.Trainer` + peft, same run.

1. Dataset build time for N chunks (default 10k): a Milvus Lite collection of the tiny author's
   passages is snapshotted, filtered, deduplicated (exact and by embedding), split by document and
   rendered with the chat template by the `retrain-dataset` code. The vectors are random unit
   vectors (the dedup cost does not depend on their values; embedding happened at ingest).
2. Training throughput, ours against the baseline on the same model (BPE tokenizer + random-init
   Llama: the tests' tiny one, and a wider one), the same LoRA spec and the same examples, one
   epoch each: tokens of real examples per second of training, and the peak RSS of each run.
   Each run is its own child process (so the RSS is its own); each loop runs `--repeats` times,
   alternating, and the best run counts (the machine may be shared). The baseline pads each batch
   to its longest example (`DataCollatorForSeq2Seq`), as a plain Trainer does; ours packs examples
   into rows (`llmtwin/workflows/retrain/packing.py`).

Usage: .venv/bin/python benchmarks/bench_training.py [--chunks 10000] [--train-examples 600] [--repeats 2] [--smoke]

--smoke: the same code paths (dataset build, both loops on both models, each in its own process) with a
few hundred chunks, a handful of training examples and one run of each loop, to prove that the
benchmark still runs. Its figures mean nothing; it exits non-zero if any step fails or times out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from report import exit_on_sigterm, print_table  # noqa: E402

from llmtwin.api.v1alpha1 import LLMTwin  # noqa: E402
from llmtwin.corpus.store import ChunkStore, chunk_row  # noqa: E402
from llmtwin.workflows.retrain.workspace import RetrainWorkspace  # noqa: E402
from tests.retrain.tiny import author_document, build_tiny_model, resolved, tiny_twin  # noqa: E402

CHUNKS_PER_DOCUMENT = 3  # the paragraphs of one tiny-author document
UPSERT_BATCH = 1000
# The tiny test model, and a wider one where, as in real models, the linear layers outweigh attention.
MODELS = [("tiny", 64, 2), ("wider", 256, 4)]
DIMENSION = 384
WORKER_TIMEOUT = 3600  # seconds one training run may take before the benchmark fails
# --smoke: every row (both models, both loops), smallest sizes.
SMOKE = {"chunks": 300, "train_examples": 16, "repeats": 1}


def fill_collection(twin: LLMTwin, chunks: int) -> ChunkStore:
    """`chunks` passages of the tiny author (its documents' paragraphs as chunks) with random unit vectors."""
    rng = random.Random(5)
    store = ChunkStore(twin.spec.vector_store.uri, twin.collection, DIMENSION, "FLAT")
    rows = []
    paragraphs: list[str] = []
    for i in range(chunks):
        document, index = divmod(i, CHUNKS_PER_DOCUMENT)
        if index == 0:
            text = author_document(rng, f"Notes {document}")
            paragraphs = [p for p in text.split("\n\n") if not p.startswith("#")]
        vector = np.random.default_rng(i).standard_normal(DIMENSION)
        vector = (vector / np.linalg.norm(vector)).tolist()
        key = f"notes-{document}.md"
        rows.append(chunk_row("essays", key, index, paragraphs[index], title=f"Notes {document}", vector=vector))
        if len(rows) == UPSERT_BATCH or i == chunks - 1:
            store.client.upsert(store.collection, rows)
            rows = []
    store.flush()
    return store


def dataset_build(twin: LLMTwin, store: ChunkStore, out: Path) -> tuple[float, dict]:
    """Seconds to build the dataset from the collection, and the manifest's counts."""
    from llmtwin.models.load import load_tokenizer
    from llmtwin.workflows.retrain.dataset import build_dataset

    tokenizer = load_tokenizer(resolved(twin))
    started = time.perf_counter()
    manifest = build_dataset(twin, store, tokenizer, out)
    return time.perf_counter() - started, manifest["counts"]


def worker(kind: str, twin_file: Path, workspace: Path) -> dict:
    """One training run in this process: ours or the Trainer baseline; returns its measurements."""
    twin = LLMTwin.model_validate_json(twin_file.read_text())
    if kind == "ours":
        from llmtwin.workflows.retrain.train import train_adapter

        result = train_adapter(twin, resolved(twin), RetrainWorkspace(workspace), checkpoint_steps=10**9)
        measured = {"tokens": result.tokens, "seconds": result.seconds, "final_loss": result.final_loss}
        measured["padding"] = result.padding_ratio
    else:
        measured = trainer_baseline(twin, RetrainWorkspace(workspace))
    return {**measured, "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's high-water RSS (VmHWM; ru_maxrss would carry the parent's peak across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def trainer_baseline(twin: LLMTwin, workspace: RetrainWorkspace) -> dict:
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments, set_seed

    from llmtwin.models.load import detect_precision, load_tokenizer, quiet_transformers
    from llmtwin.workflows.retrain.dataset import read_jsonl
    from llmtwin.workflows.retrain.packing import tokenize
    from llmtwin.workflows.retrain.train import WARMUP_FRACTION, lora_model

    quiet_transformers()
    training = twin.spec.training
    tokenizer = load_tokenizer(resolved(twin))
    examples = tokenize(read_jsonl(workspace.train_file), tokenizer, training.max_seq_length)
    features = [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]
    set_seed(training.seed)
    model = lora_model(twin, resolved(twin), detect_precision())
    args = TrainingArguments(
        output_dir=str(workspace.root / "trainer"),
        per_device_train_batch_size=training.batch_size,
        gradient_accumulation_steps=training.gradient_accumulation_steps,
        num_train_epochs=training.epochs,
        learning_rate=training.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=math.ceil(
            WARMUP_FRACTION * len(features) / training.batch_size / training.gradient_accumulation_steps
        ),
        save_strategy="no",
        logging_steps=10**9,
        report_to=[],
        seed=training.seed,
        disable_tqdm=True,
        remove_unused_columns=False,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=features,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100),
    )
    started = time.perf_counter()
    output = trainer.train()
    return {
        "tokens": sum(len(e) for e in examples),
        "seconds": time.perf_counter() - started,
        "final_loss": output.training_loss,
    }


def run_worker(kind: str, twin_file: Path, dataset_dir: Path, work: Path) -> dict:
    workspace = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=work))
    shutil.copytree(dataset_dir, workspace / "dataset")
    done = subprocess.run(
        [sys.executable, __file__, "--worker", kind, "--twin-file", str(twin_file), "--workspace", str(workspace)],
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT,
    )
    if done.returncode:
        raise RuntimeError(f"{kind} run failed:\n{done.stderr[-3000:]}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    return {**measured, "rate": measured["tokens"] / measured["seconds"]}


def compare(twin: LLMTwin, dataset_dir: Path, work: Path, repeats: int) -> tuple[dict, dict]:
    """Best of `repeats` alternating runs of each loop (the machine may be shared: best = least disturbed)."""
    twin_file = work / f"{twin.name}.json"
    twin_file.write_text(twin.model_dump_json(by_alias=True))
    runs: dict[str, list[dict]] = {"ours": [], "trainer": []}
    for _ in range(repeats):
        for kind, results in runs.items():
            results.append(run_worker(kind, twin_file, dataset_dir, work))
    return max(runs["ours"], key=lambda r: r["rate"]), max(runs["trainer"], key=lambda r: r["rate"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--train-examples", type=int, default=600, help="Examples both training runs use.")
    parser.add_argument("--repeats", type=int, default=2, help="Runs of each loop per model; the best counts.")
    parser.add_argument("--smoke", action="store_true", help="Smallest sizes, one run each: proves the benchmark runs.")
    parser.add_argument("--worker", choices=["ours", "trainer"], help=argparse.SUPPRESS)
    parser.add_argument("--twin-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workspace", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.twin_file, args.workspace)))
        return
    exit_on_sigterm()
    if args.smoke:
        chunks, train_examples, repeats = SMOKE["chunks"], SMOKE["train_examples"], SMOKE["repeats"]
    else:
        chunks, train_examples, repeats = args.chunks, args.train_examples, args.repeats

    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="llmtwin-bench-train-") as tmp:
        work = Path(tmp)
        rng = random.Random(1)
        texts = [author_document(rng, f"Notes {i}") for i in range(200)]
        for label, hidden, layers in MODELS:
            model_dir = build_tiny_model(texts, work / label, hidden=hidden, layers=layers)
            twin = tiny_twin(
                label,
                model_dir,
                work / "milvus.db",
                maxSteps=0,
                epochs=1,
                dataset={"minChars": 100, "evalFraction": 0.1},
            )
            if not rows:  # the dataset is built once, with the tokenizer both models share
                seconds, counts = dataset_build(twin, fill_collection(twin, chunks), work / "dataset")
                # Both training loops get the same first N training examples of that dataset.
                train_file = work / "dataset" / "train.jsonl"
                train_file.write_text("".join(train_file.read_text().splitlines(True)[:train_examples]))
                rows += [
                    (
                        f"dataset build, {chunks} chunks",
                        f"{seconds:.2f} s",
                        f"{chunks / seconds:,.0f} chunks/s",
                    ),
                    (
                        "dataset examples",
                        f"{counts['train_examples']}/{counts['eval_examples']}",
                        f"train/eval; dropped {counts.get('exact_duplicates', 0)} exact, "
                        f"{counts.get('near_duplicates', 0)} near duplicates",
                    ),
                ]
            ours, baseline = compare(twin, work / "dataset", work, repeats)
            model = f"{label} (hidden {hidden}, {layers} layers)"
            rows += [
                (f"{model}: examples", str(train_examples), f"{ours['tokens']:,} tokens, 1 epoch, batch 4"),
                ("  ours, packed rows", f"{ours['rate']:,.0f} tok/s", f"{ours['padding']:.1%} of batch slots padding"),
                ("  Trainer + peft, padded", f"{baseline['rate']:,.0f} tok/s", "pads each batch to its longest"),
                ("  throughput ratio", f"{ours['rate'] / baseline['rate']:.2f}", "target >= 1.0"),
                (
                    "  peak RSS ours / Trainer",
                    f"{ours['peak_rss_mb']:.0f} / {baseline['peak_rss_mb']:.0f} MB",
                    "each in its own process, incl. imports and model",
                ),
                (
                    "  final loss ours / Trainer",
                    f"{ours['final_loss']:.3f} / {baseline['final_loss']:.3f}",
                    "ours: last step; Trainer: mean over the run",
                ),
            ]
    print_table(rows)


if __name__ == "__main__":
    main()
