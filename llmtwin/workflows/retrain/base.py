"""The base model the adapters are trained on: where it is, how it loads, and the checks run first.

Every retrain step loads the base model and tokenizer through these functions, so a test's tiny
local model directory and a production hub model take the same `from_pretrained` path. A setting
that cannot work (a missing model, a LoRA target module the model lacks) fails here, before any
training, with a message naming the field.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llmtwin.api.errors import SpecError
from llmtwin.api.v1alpha1 import BaseModelSpec, LLMTwin
from llmtwin.api.validation import ModelFacts, training_problems


def quiet_transformers() -> None:
    """Weight-loading progress bars and advisory warnings would drown the steps' own output."""
    import warnings

    from transformers.utils import logging as transformers_logging

    # peft still calls this transformers method under its old name.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


def model_location(spec: BaseModelSpec) -> str:
    """What `from_pretrained` is given: a local directory as is, a hub id without its `hf://` scheme."""
    if spec.id.startswith("s3://"):
        raise SpecError("spec.baseModel.id", "s3:// base models are not supported by the retrain steps yet")
    return spec.id.removeprefix("hf://")


def _looks_local(location: str) -> bool:
    return location.startswith(("/", "./", "../", "~")) or Path(location).exists()


def load_config(spec: BaseModelSpec) -> Any:
    from transformers import AutoConfig

    location = model_location(spec)
    if _looks_local(location) and not Path(location).expanduser().is_dir():
        raise SpecError("spec.baseModel.id", f"no model directory at {location}")
    try:
        return AutoConfig.from_pretrained(location, revision=spec.revision)
    except (OSError, ValueError) as exc:
        raise SpecError("spec.baseModel.id", f"cannot load {location!r}: {exc}") from exc


def load_tokenizer(spec: BaseModelSpec) -> Any:
    """The tokenizer (spec.baseModel.tokenizer if set), with the spec's chat template if it has one."""
    from transformers import AutoTokenizer

    field = "spec.baseModel.tokenizer" if spec.tokenizer else "spec.baseModel.id"
    location = spec.tokenizer or model_location(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, revision=None if spec.tokenizer else spec.revision)
    except (OSError, ValueError) as exc:
        raise SpecError(field, f"cannot load a tokenizer from {location!r}: {exc}") from exc
    if spec.chat_template:
        tokenizer.chat_template = spec.chat_template
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@dataclass(frozen=True)
class Precision:
    """fp32 on CPU; bf16 (or fp16 where bf16 is missing) on a GPU, 4-bit QLoRA when bitsandbytes is there."""

    device: str
    dtype: torch.dtype
    quantize_4bit: bool

    @property
    def name(self) -> str:
        return ("qlora-" if self.quantize_4bit else "") + str(self.dtype).removeprefix("torch.")

    def autocast(self):
        return torch.autocast(self.device, dtype=self.dtype, enabled=self.device == "cuda")


def detect_precision() -> Precision:
    if not torch.cuda.is_available():
        return Precision("cpu", torch.float32, False)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return Precision("cuda", dtype, importlib.util.find_spec("bitsandbytes") is not None)


def load_base_model(spec: BaseModelSpec, precision: Precision) -> Any:
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs: dict[str, Any] = {"dtype": precision.dtype, "revision": spec.revision}
    if precision.quantize_4bit:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=precision.dtype,
        )
        kwargs["device_map"] = {"": 0}
    model = AutoModelForCausalLM.from_pretrained(model_location(spec), **kwargs)
    if not precision.quantize_4bit:
        model.to(precision.device)
    return model


def _adaptable_module_names(config: Any) -> set[str]:
    """Suffixes peft can target: names of the model's linear layers, built on the meta device (no weights)."""
    from transformers import AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    return {
        name.rsplit(".", 1)[-1]
        for name, module in skeleton.named_modules()
        if name and isinstance(module, torch.nn.Linear | Conv1D)
    }


def check_training_config(twin: LLMTwin) -> Any:
    """Everything about the spec that can be checked without training; returns the model config."""
    config = load_config(twin.spec.base_model)
    facts = ModelFacts(
        linear_modules=frozenset(_adaptable_module_names(config)),
        context_length=getattr(config, "max_position_embeddings", None),
    )
    problems = training_problems(twin, facts)
    if problems:
        raise SpecError(problems[0].field, problems[0].message)
    return config
