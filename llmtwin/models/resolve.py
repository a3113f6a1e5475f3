"""Where `spec.baseModel.id` is on this machine: a folder `from_pretrained` reads.

- a local folder: as it is; a folder holding one `.gguf` file, or a `.gguf` file: dequantized once
  into the model cache (`gguf.py`);
- `s3://bucket/prefix`: the prefix downloaded once from the platform's object store (the source
  endpoint and Secret rules of `ObjectStores`; unchanged objects are not fetched again);
- a hub id (`org/name`, `hf://org/name`): a model a package here ships (`catalog.py`), else the
  local Hugging Face cache, else a download, which fails with the way to provide the model when
  the hub cannot be reached (always the case here: no model hub is reachable).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from llmtwin.api.errors import SpecError
from llmtwin.api.v1alpha1 import BaseModelSpec, SourceSpec
from llmtwin.models import catalog, gguf
from llmtwin.sources.objects import ObjectStores

FIELD = "spec.baseModel.id"
HOW_TO_PROVIDE = (
    "provide it as a local folder (`hf download {id} --local-dir DIR` on a machine with hub access), "
    "a .gguf file, or an s3:// prefix of the platform's object store"
)


@dataclass(frozen=True)
class ResolvedModel:
    spec: BaseModelSpec
    folder: Path  # what from_pretrained reads
    origin: str  # how it got here: folder | gguf | s3 | bundled | hub-cache | hub


def _looks_local(location: str) -> bool:
    return location.startswith(("/", "./", "../", "~")) or Path(location).exists()


class ModelResolver:
    def __init__(self, cache_dir: Path, objects: ObjectStores | None = None):
        self.cache_dir = Path(cache_dir)
        self.objects = objects

    def resolve(self, spec: BaseModelSpec) -> ResolvedModel:
        location = spec.id
        if location.startswith("s3://"):
            return self._from_s3(spec)
        if location.startswith("hf://") or not _looks_local(location):
            return self._from_hub(spec, location.removeprefix("hf://"))
        path = Path(location).expanduser()
        if path.is_file() and path.suffix == ".gguf":
            return ResolvedModel(spec, gguf.dequantized(path, self.cache_dir), "gguf")
        if path.is_dir():
            return self._from_folder(spec, path, "folder")
        raise SpecError(FIELD, f"no model folder or .gguf file at {location}")

    def _from_folder(self, spec: BaseModelSpec, folder: Path, origin: str) -> ResolvedModel:
        if (folder / "config.json").is_file():
            return ResolvedModel(spec, folder, origin)
        ggufs = sorted(folder.glob("*.gguf"))
        if len(ggufs) == 1:
            return ResolvedModel(spec, gguf.dequantized(ggufs[0], self.cache_dir), origin)
        raise SpecError(FIELD, f"{folder} holds neither a transformers model (config.json) nor one .gguf file")

    def _from_hub(self, spec: BaseModelSpec, repo_id: str) -> ResolvedModel:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

        if bundled := catalog.bundled_gguf(repo_id):
            return ResolvedModel(spec, gguf.dequantized(bundled, self.cache_dir), "bundled")
        try:
            folder = snapshot_download(repo_id, revision=spec.revision, local_files_only=True)
            return ResolvedModel(spec, Path(folder), "hub-cache")
        except (LocalEntryNotFoundError, OSError, ValueError):
            pass
        try:
            folder = snapshot_download(repo_id, revision=spec.revision)
        except (OfflineModeIsEnabled, LocalEntryNotFoundError) as exc:
            raise SpecError(
                FIELD,
                f"{repo_id} is not in the local Hugging Face cache and the hub is offline (HF_HUB_OFFLINE); "
                + HOW_TO_PROVIDE.format(id=repo_id),
            ) from exc
        except Exception as exc:  # the hub client raises many transport errors; all mean "cannot fetch"
            raise SpecError(
                FIELD, f"{repo_id} could not be downloaded ({type(exc).__name__}); " + HOW_TO_PROVIDE.format(id=repo_id)
            ) from exc
        return ResolvedModel(spec, Path(folder), "hub")

    def _from_s3(self, spec: BaseModelSpec) -> ResolvedModel:
        if self.objects is None:
            raise SpecError(FIELD, "s3:// models need the platform's object store, which this process has not")
        bucket, _, prefix = spec.id.removeprefix("s3://").partition("/")
        store = self.objects.for_source(SourceSpec(bucket=bucket))
        target = self.cache_dir / "s3" / bucket / (prefix.strip("/") or "_root")
        manifest_path = target / ".etags.json"
        fetched: dict[str, str] = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
        found = 0
        for info in store.list(bucket, prefix):
            found += 1
            relative = info.key[len(prefix) :].lstrip("/")
            if not relative or fetched.get(relative) == info.etag:
                continue
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(store.read(bucket, info.key, max_bytes=info.size))
            fetched[relative] = info.etag
            manifest_path.write_text(json.dumps(fetched))  # after each file: an interrupted copy resumes
        if not found:
            raise SpecError(FIELD, f"no objects under {spec.id}")
        return self._from_folder(spec, target, "s3")
