"""LoRA training on the tiny model: it learns, its adapter reloads exactly, it resumes, it refuses bad specs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from pydantic import ValidationError

from llmtwin.api.errors import SpecError
from llmtwin.models.load import detect_precision, load_model, load_tokenizer
from llmtwin.workflows.retrain.dataset import read_jsonl
from llmtwin.workflows.retrain.packing import collate, tokenize
from llmtwin.workflows.retrain.train import completed_checkpoints, train_adapter
from llmtwin.workflows.steps import run_step
from tests.harness import wait_for
from tests.retrain.conftest import step_context
from tests.retrain.tiny import ALL_LINEAR, resolved


def logits(model, batch) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits


@pytest.mark.slow
def test_lora_lowers_the_loss_and_the_saved_adapter_reloads_with_identical_logits(twin, workspace):
    from peft import PeftModel

    result = train_adapter(twin, resolved(twin), workspace)
    losses = [h["loss"] for h in result.history]
    assert len(losses) == twin.spec.training.max_steps
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.1, losses  # nats per response token
    assert json.loads(workspace.loss_json.read_text()) == result.history
    assert workspace.loss_png.read_bytes().startswith(b"\x89PNG")

    tokenizer = load_tokenizer(resolved(twin))
    examples = tokenize(read_jsonl(workspace.eval_file)[:3], tokenizer, twin.spec.training.max_seq_length)
    batch = collate([[e] for e in examples], tokenizer.pad_token_id)
    base = load_model(resolved(twin), detect_precision())
    base_logits = logits(base, batch)
    reloaded = PeftModel.from_pretrained(base, str(workspace.adapter_dir))
    assert torch.equal(logits(reloaded, batch), logits(result.model, batch))
    assert not torch.allclose(logits(reloaded, batch), base_logits)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"lora": {"r": 8, "targetModules": ["q_proj", "qkv_fused"]}}, "spec.training.lora.targetModules"),
        ({"maxSeqLength": 4096}, "spec.training.maxSeqLength"),
    ],
)
def test_bad_training_config_fails_before_any_work_naming_the_field(make_twin, workspace, spec, field):
    bad = make_twin(**spec)
    for step_name in ("retrain-dataset", "retrain-train"):
        with pytest.raises(SpecError) as failure:
            run_step(step_name, {}, step_context(bad, workspace))
        assert failure.value.field == field and str(failure.value).startswith(field)
    assert not workspace.train_dir.exists()


def test_a_missing_base_model_fails_naming_the_field(make_twin, workspace, tmp_path):
    missing = make_twin()
    missing.spec.base_model.id = str(tmp_path / "no-such-model")
    with pytest.raises(SpecError, match=r"^spec\.baseModel\.id: no model folder or .gguf file at"):
        run_step("retrain-train", {}, step_context(missing, workspace))
    assert not workspace.train_dir.exists()


def test_rank_zero_is_refused_by_the_schema_naming_the_field(make_twin):
    with pytest.raises(ValidationError) as failure:
        make_twin(lora={"r": 0, "targetModules": ALL_LINEAR})
    assert [e["loc"] for e in failure.value.errors()] == [("spec", "training", "lora", "r")]


def test_min_chars_over_max_chars_is_refused_by_the_schema(make_twin):
    with pytest.raises(ValidationError) as failure:
        make_twin(dataset={"minChars": 500, "maxChars": 300})
    assert [e["loc"] for e in failure.value.errors()] == [("spec", "training", "dataset")]


@pytest.mark.slow
def test_a_killed_training_run_resumes_from_its_last_checkpoint(make_twin, workspace, tmp_path):
    twin = make_twin(maxSteps=160)
    twin_file = tmp_path / "twin.json"
    twin_file.write_text(twin.model_dump_json(by_alias=True))
    env = {**os.environ, "LLMTWIN_TWIN_FILE": str(twin_file), "LLMTWIN_WORKSPACE": str(workspace.root)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmtwin.cli", "step", "retrain-train", "checkpoint_steps=10"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(
            lambda: proc.poll() is not None or len(completed_checkpoints(workspace.checkpoints_dir)) >= 2,
            timeout=120,
            interval=0.05,
            what="two checkpoints",
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    last = int(completed_checkpoints(workspace.checkpoints_dir)[-1].name.removeprefix("step-"))
    assert 10 <= last < 160 and not workspace.adapter_dir.exists()

    outputs = run_step("retrain-train", {"checkpoint_steps": "10"}, step_context(twin, workspace))
    assert outputs["resumed_from_step"] == last and outputs["steps"] == 160
    history = json.loads(workspace.loss_json.read_text())
    assert [h["step"] for h in history] == list(range(1, 161))
