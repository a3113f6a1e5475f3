"""Loading a resolved base model: its config, its tokenizer (with the spec's chat template), its
weights at the precision the hardware allows, and the facts the training checks need.

Serving, training and evaluation load through here, so a test's tiny local model and a production
model take the same `from_pretrained` path.
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from llmtwin.api.errors import SpecError
from llmtwin.api.validation import ModelFacts
from llmtwin.models.resolve import FIELD, ResolvedModel


def quiet_transformers() -> None:
    """Weight-loading progress bars and advisory warnings would drown the callers' own output."""
    from transformers.utils import logging as transformers_logging

    # peft still calls this transformers method under its old name.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


def load_config(model: ResolvedModel) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(model.folder)
    except (OSError, ValueError) as exc:
        raise SpecError(FIELD, f"cannot load the model config from {model.folder}: {exc}") from exc


def load_tokenizer(model: ResolvedModel) -> Any:
    """The tokenizer (spec.baseModel.tokenizer if set), with the spec's chat template if it has one."""
    from transformers import AutoTokenizer

    spec = model.spec
    field = "spec.baseModel.tokenizer" if spec.tokenizer else FIELD
    location = spec.tokenizer or str(model.folder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
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


def load_model(model: ResolvedModel, precision: Precision) -> Any:
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs: dict[str, Any] = {"dtype": precision.dtype}
    if precision.quantize_4bit:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=precision.dtype,
        )
        kwargs["device_map"] = {"": 0}
    loaded = AutoModelForCausalLM.from_pretrained(model.folder, **kwargs)
    if not precision.quantize_4bit:
        loaded.to(precision.device)
    return loaded


def model_facts(config: Any) -> ModelFacts:
    """What `api.validation.training_problems` needs: the linear layers LoRA can target (read from a
    skeleton built on the meta device, no weights) and the context length."""
    from transformers import AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    linear = {
        name.rsplit(".", 1)[-1]
        for name, module in skeleton.named_modules()
        if name and isinstance(module, torch.nn.Linear | Conv1D)
    }
    return ModelFacts(frozenset(linear), getattr(config, "max_position_embeddings", None))
