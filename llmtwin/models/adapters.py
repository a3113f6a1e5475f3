"""LoRA adapters in the MLflow model registry: a registered version's files, downloaded whole.

The retrain steps register versions (`workflows/retrain/registry.py`); evaluation, the serving pod's
fetch-adapter init container and `llmtwin serve` download them through here.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

MODELS_URI = "models:/"


def download_adapter(tracking_uri: str, model_name: str, version: str, dest: Path) -> Path:
    """A registered adapter version's files, placed directly in `dest` (replaced whole, never half-written).

    The version's source is resolved with our client rather than through a `models:/` URI, which
    MLflow resolves against the process-wide registry URI instead of the one passed in.
    """
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    source = MlflowClient(tracking_uri=tracking_uri).get_model_version_download_uri(model_name, version)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        downloaded = Path(download_artifacts(artifact_uri=source, dst_path=str(staging), tracking_uri=tracking_uri))
        shutil.rmtree(dest, ignore_errors=True)
        downloaded.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def parse_models_uri(uri: str) -> tuple[str, str] | None:
    """`models:/<registered model>/<version>` -> (name, version); None for anything else (a folder)."""
    if not uri.startswith(MODELS_URI):
        return None
    name, _, version = uri.removeprefix(MODELS_URI).rpartition("/")
    if not name or not version:
        raise ValueError(f"{uri!r}: expected models:/<registered model>/<version>")
    return name, version
