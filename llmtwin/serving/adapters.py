"""LoRA adapters on the served model, loaded and unloaded at run time (TGI loads them only at start).

An adapter comes from a folder (a peft adapter: adapter_config.json + weights) or from the MLflow
registry as `models:/<registered model>/<version>` (downloaded once into the model cache). The
first adapter turns the base model into a `PeftModel`; the base model stays reachable as the
adapter-less variant. Loads and generation never overlap: both hold the engine's model lock.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmtwin.models.adapters import download_adapter, parse_models_uri


class UnknownAdapter(KeyError):
    pass


class AdapterRegistry:
    def __init__(self, model: Any, cache_dir: Path, tracking_uri: str | None = None):
        self.model = model
        self.cache_dir = Path(cache_dir)
        self.tracking_uri = tracking_uri
        self.sources: dict[str, str] = {}  # name -> where it was loaded from
        self.lock = threading.RLock()  # held while generating and while (un)loading

    def names(self) -> list[str]:
        return sorted(self.sources)

    def _folder(self, name: str, source: str) -> Path:
        if registered := parse_models_uri(source):
            if not self.tracking_uri:
                raise ValueError(f"{source}: this server has no MLflow tracking URI (MLFLOW_TRACKING_URI)")
            model_name, version = registered
            return download_adapter(
                self.tracking_uri, model_name, version, self.cache_dir / "adapters" / model_name / version
            )
        folder = Path(source).expanduser()
        if not (folder / "adapter_config.json").is_file():
            raise ValueError(f"{source}: not a LoRA adapter folder (no adapter_config.json)")
        return folder

    def load(self, name: str, source: str) -> None:
        """Load (or replace) adapter `name`; the model serves it from the next batch on."""
        from peft import PeftModel

        if not name or "/" in name:
            raise ValueError(f"adapter name {name!r}: expected a non-empty name without '/'")
        folder = self._folder(name, source)
        with self.lock:
            if name in self.sources:
                self.model.delete_adapter(name)
                del self.sources[name]
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(str(folder), adapter_name=name)
            else:
                self.model = PeftModel.from_pretrained(self.model, str(folder), adapter_name=name)
            self.model.eval()
            self.sources[name] = source

    def unload(self, name: str) -> None:
        with self.lock:
            if name not in self.sources:
                raise UnknownAdapter(name)
            del self.sources[name]
            if self.sources:
                self.model.delete_adapter(name)
            else:  # the last one: back to the plain base model (peft keeps no adapter-less PeftModel)
                self.model = self.model.unload()

    @contextlib.contextmanager
    def active(self, name: str) -> Iterator[None]:
        """Generate with adapter `name`, or with the base model for `""`."""
        with self.lock:
            if not name:
                if self.sources:
                    with self.model.disable_adapter():
                        yield
                else:
                    yield
                return
            if name not in self.sources:
                raise UnknownAdapter(name)
            self.model.set_adapter(name)
            yield
