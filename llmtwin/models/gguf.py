"""A GGUF file as a transformers folder: dequantized once (~15 s for 135 M parameters), then reloaded
from safetensors in a fraction of a second.

transformers reads GGUF (`gguf_file=`, with the `gguf` package) but marks the model as quantized and
refuses to `save_pretrained` it; rebuilding the model from its config without the quantization entry
and loading the dequantized weights into it gives an ordinary fp32 checkpoint.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import tempfile
from pathlib import Path

DONE = ".complete"


def cache_key(gguf: Path) -> str:
    stat = gguf.stat()
    return hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]


def dequantized(gguf: Path, cache_dir: Path) -> Path:
    """The folder holding `gguf` dequantized (made on first use; concurrent callers wait for one maker)."""
    target = cache_dir / "gguf" / f"{gguf.stem}-{cache_key(gguf)}"
    if (target / DONE).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / DONE).exists():
            _convert(gguf, target)
    return target


def _convert(gguf: Path, target: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # one conversion, not three progress bars

    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config)
        model.load_state_dict(loaded.state_dict())
        model.generation_config = loaded.generation_config
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / DONE).touch()
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
