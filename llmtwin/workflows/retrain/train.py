"""LoRA fine-tuning of the base model on the dataset step's train split (transformers + peft).

Our own loop rather than `transformers.Trainer`: it trains on packed rows (see `packing.py`), so
no forward pass is spent on padding, which is where its throughput over a padded Trainer comes
from (`benchmarks/bench_training.py` measures both in one run).

The data order is a pure function of (seed, micro-batch number), so a run can stop anywhere and
continue exactly: every `checkpoint_steps` optimizer steps the adapter, optimizer, scheduler, grad
scaler, RNG states, step and loss history are written to `checkpoints/step-N` (via a temporary
directory and a rename, so a kill mid-save leaves the previous checkpoint intact). A rerun in the
same workspace resumes from the newest checkpoint made from the same dataset.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.models.load import Precision, detect_precision, load_model, load_tokenizer, quiet_transformers
from llmtwin.models.resolve import ResolvedModel
from llmtwin.workflows.retrain.base import check_training_config
from llmtwin.workflows.retrain.dataset import read_jsonl
from llmtwin.workflows.retrain.packing import PackedBatches, learned_tokens, tokenize
from llmtwin.workflows.retrain.progress import publish
from llmtwin.workflows.retrain.workspace import RetrainWorkspace

log = logging.getLogger(__name__)
DEFAULT_CHECKPOINT_STEPS = 100
CHECKPOINTS_KEPT = 2
WARMUP_FRACTION = 0.05
MAX_GRAD_NORM = 1.0


@dataclass
class TrainResult:
    steps: int
    resumed_from_step: int
    final_loss: float
    tokens: int  # example tokens processed by this run (not counting resumed steps)
    seconds: float
    padding_ratio: float
    precision: str
    history: list[dict[str, float]] = field(default_factory=list)
    model: Any = field(default=None, repr=False)  # the trained PeftModel, for in-process callers

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        fields = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("history", "model")}
        return {**fields, "tokens_per_second": round(self.tokens_per_second, 1)}


def lora_model(twin: LLMTwin, base: ResolvedModel, precision: Precision) -> Any:
    """The base model with fresh LoRA adapters from spec.training.lora (QLoRA when 4-bit is on)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    model = load_model(base, precision)
    if precision.quantize_4bit:
        model = prepare_model_for_kbit_training(model)
    lora = twin.spec.training.lora
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_step(path: Path) -> int:
    return int(path.name.removeprefix("step-"))


def completed_checkpoints(directory: Path) -> list[Path]:
    """Checkpoints whose save finished (a killed save leaves only a `.tmp` directory), oldest first."""
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.glob("step-*") if p.suffix != ".tmp"), key=checkpoint_step)


class Checkpoints:
    def __init__(self, directory: Path, dataset_hash: str):
        self.directory = directory
        self.dataset_hash = dataset_hash

    def save(self, model: Any, training_state: dict[str, Any]) -> Path:
        step = training_state["step"]
        final = self.directory / f"step-{step:08d}"
        partial = final.with_suffix(".tmp")
        shutil.rmtree(partial, ignore_errors=True)
        model.save_pretrained(partial / "adapter")
        torch.save({**training_state, "dataset_hash": self.dataset_hash, "rng": _rng_state()}, partial / "state.pt")
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
        for old in completed_checkpoints(self.directory)[:-CHECKPOINTS_KEPT]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def latest(self) -> tuple[Path, dict[str, Any]] | None:
        """The newest checkpoint of this dataset, with its state (RNG states are Python objects: our own file)."""
        for path in reversed(completed_checkpoints(self.directory)):
            state = torch.load(path / "state.pt", weights_only=False)
            if state["dataset_hash"] == self.dataset_hash:
                return path, state
            log.warning("ignoring checkpoint %s: made from dataset %s", path, state["dataset_hash"])
        return None

    @staticmethod
    def restore(path: Path, state: dict[str, Any], model: Any, optimizer: Any, scheduler: Any, scaler: Any) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(model, load_file(path / "adapter" / "adapter_model.safetensors"))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        _restore_rng(state["rng"])


def plot_loss(history: list[dict[str, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display in a pod or a test
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    axes.plot([h["step"] for h in history], [h["loss"] for h in history], linewidth=1.2)
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("training loss (response tokens)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _optimizer_step(
    model: Any,
    micro: list[tuple[dict[str, torch.Tensor], int]],
    optimizer: Any,
    scheduler: Any,
    scaler: Any,
    precision: Precision,
) -> float:
    """Forward/backward over the accumulated micro-batches, then one clipped optimizer step; returns the loss."""
    # The loss is a mean over the response tokens of the whole accumulated step, not per micro-batch.
    counted = torch.tensor(sum(learned_tokens(batch) for batch, _ in micro))
    step_loss = 0.0
    for batch, _ in micro:
        with precision.autocast():
            loss = model(**{k: v.to(precision.device) for k, v in batch.items()}, num_items_in_batch=counted).loss
        scaler.scale(loss).backward()
        step_loss += loss.item()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], MAX_GRAD_NORM)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return step_loss


@dataclass
class TrainingRun:
    """Everything one training run steps through: data, model, optimisation state, where it stands."""

    batches: PackedBatches
    total_steps: int
    accumulation: int
    precision: Precision
    model: Any
    optimizer: Any
    scheduler: Any
    scaler: Any
    checkpoints: Checkpoints
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "history": self.history,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }


def prepare_run(twin: LLMTwin, base: ResolvedModel, workspace: RetrainWorkspace, dataset_hash: str) -> TrainingRun:
    """Data packed, LoRA model built, optimizer and schedule set, resumed from a checkpoint if one fits."""
    from transformers import get_scheduler, set_seed

    training = twin.spec.training
    tokenizer = load_tokenizer(base)
    examples = tokenize(read_jsonl(workspace.train_file), tokenizer, training.max_seq_length)
    if not examples:
        raise ValueError(f"{workspace.train_file}: no example has a response token within maxSeqLength")
    batches = PackedBatches(
        examples, training.max_seq_length, training.batch_size, training.seed, tokenizer.pad_token_id
    )
    accumulation = training.gradient_accumulation_steps
    total_steps = training.max_steps or math.ceil(training.epochs * batches.per_epoch / accumulation)

    set_seed(training.seed)  # the LoRA initialisation and dropout are reproducible too
    precision = detect_precision()
    model = lora_model(twin, base, precision)
    trainable = [p for p in model.parameters() if p.requires_grad]
    # fused: one kernel for all the small LoRA tensors instead of a Python loop over them.
    optimizer = torch.optim.AdamW(trainable, lr=training.learning_rate, weight_decay=0.0, fused=True)
    scheduler = get_scheduler(
        "cosine", optimizer, num_warmup_steps=math.ceil(WARMUP_FRACTION * total_steps), num_training_steps=total_steps
    )
    scaler = torch.amp.GradScaler(precision.device, enabled=precision.dtype == torch.float16)
    checkpoints = Checkpoints(workspace.checkpoints_dir, dataset_hash)
    run = TrainingRun(batches, total_steps, accumulation, precision, model, optimizer, scheduler, scaler, checkpoints)
    if found := run.checkpoints.latest():
        path, state = found
        Checkpoints.restore(path, state, model, optimizer, scheduler, scaler)
        run.step, run.history = state["step"], state["history"]
        log.info("resuming training from %s (step %d of %d)", path, run.step, total_steps)
    return run


def train_steps(run: TrainingRun, checkpoint_steps: int) -> int:
    """Optimizer steps until the run's total, checkpointing on the way; returns the example tokens seen."""
    run.model.train()
    tokens = 0
    while run.step < run.total_steps:
        micro = [run.batches.batch(n) for n in range(run.step * run.accumulation, (run.step + 1) * run.accumulation)]
        step_loss = _optimizer_step(run.model, micro, run.optimizer, run.scheduler, run.scaler, run.precision)
        tokens += sum(example_tokens for _, example_tokens in micro)
        run.step += 1
        run.history.append({"step": run.step, "loss": step_loss, "lr": run.scheduler.get_last_lr()[0]})
        publish("train", run.step, run.total_steps, loss=step_loss)
        if run.step % checkpoint_steps == 0 or run.step == run.total_steps:
            run.checkpoints.save(run.model, run.state())
    return tokens


def train_adapter(
    twin: LLMTwin,
    base: ResolvedModel,
    workspace: RetrainWorkspace,
    checkpoint_steps: int = DEFAULT_CHECKPOINT_STEPS,
) -> TrainResult:
    """Train (or resume) the adapter on the workspace's dataset; leaves adapter/, loss.json/.png, summary.json."""
    quiet_transformers()
    check_training_config(twin, base)
    dataset_hash = json.loads(workspace.manifest.read_text())["hash"]
    run = prepare_run(twin, base, workspace, dataset_hash)
    resumed_from = run.step
    started = time.perf_counter()
    tokens = train_steps(run, checkpoint_steps)
    seconds = time.perf_counter() - started

    workspace.train_dir.mkdir(parents=True, exist_ok=True)
    run.model.save_pretrained(workspace.adapter_dir)
    result = TrainResult(
        steps=run.step,
        resumed_from_step=resumed_from,
        final_loss=run.history[-1]["loss"] if run.history else float("nan"),
        tokens=tokens,
        seconds=seconds,
        padding_ratio=run.batches.padding_ratio(),
        precision=run.precision.name,
        history=run.history,
        model=run.model,
    )
    workspace.loss_json.write_text(json.dumps(run.history))
    plot_loss(run.history, workspace.loss_png, f"{twin.namespace}/{twin.name} LoRA r={twin.spec.training.lora.r}")
    workspace.train_summary.write_text(json.dumps({**result.summary(), "dataset_hash": dataset_hash}, indent=2))
    return result
