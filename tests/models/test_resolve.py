"""Where `spec.baseModel.id` resolves to: a folder, a .gguf file, an s3:// prefix (real MinIO), a hub id
(a bundled model; offline and absent, an error naming the field and the way to provide the model)."""

from __future__ import annotations

import io

import pytest

from llmtwin.api.errors import SpecError
from llmtwin.api.v1alpha1 import BaseModelSpec
from llmtwin.models.catalog import bundled_gguf
from llmtwin.models.resolve import ModelResolver
from llmtwin.sources.objects import ObjectStores
from tests.retrain.tiny import build_tiny_model

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
pytestmark = pytest.mark.models  # a tiny model is built, the bundled one dequantized (cached) and read


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return build_tiny_model(["The tide comes in twice a day at Port Ellery."] * 20, tmp_path_factory.mktemp("tiny"))


def test_a_hub_model_that_is_not_here_is_refused_naming_the_field_and_the_way_out(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    with pytest.raises(SpecError) as refused:
        ModelResolver(tmp_path).resolve(BaseModelSpec(id="acme/not-downloaded"))
    assert refused.value.field == "spec.baseModel.id"
    assert "acme/not-downloaded" in str(refused.value) and "hf download" in str(refused.value)


def test_a_local_folder_is_itself_and_a_missing_one_is_refused(tmp_path, tiny_folder):
    resolved = ModelResolver(tmp_path).resolve(BaseModelSpec(id=str(tiny_folder)))
    assert (resolved.folder, resolved.origin) == (tiny_folder, "folder")
    with pytest.raises(SpecError, match=r"^spec\.baseModel\.id: no model folder or .gguf file"):
        ModelResolver(tmp_path).resolve(BaseModelSpec(id=str(tmp_path / "nothing")))


def test_the_bundled_model_and_its_gguf_file_resolve_to_one_dequantized_folder():
    from llmtwin.config import EmbeddedSettings

    cache = EmbeddedSettings().model_cache  # shared with the other tests: dequantized once
    by_id = ModelResolver(cache).resolve(BaseModelSpec(id=SMOLLM2))
    by_file = ModelResolver(cache).resolve(BaseModelSpec(id=str(bundled_gguf(SMOLLM2))))
    assert by_id.origin == "bundled" and by_file.origin == "gguf" and by_id.folder == by_file.folder
    assert (by_id.folder / "config.json").is_file() and (by_id.folder / "model.safetensors").is_file()


def test_an_s3_prefix_is_downloaded_once(tmp_path, tiny_folder, minio_server):
    client = minio_server.client()
    client.make_bucket("models")
    for path in sorted(p for p in tiny_folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        client.put_object("models", f"tiny/v1/{path.relative_to(tiny_folder)}", io.BytesIO(data), len(data))

    class Keys:
        def value(self, name, key):
            assert name == "platform-s3"  # no credentialsSecretRef on a base model: the platform's Secret
            return {"accessKey": minio_server.access_key, "secretKey": minio_server.secret_key}[key]

    resolver = ModelResolver(tmp_path / "cache", ObjectStores(minio_server.endpoint, "platform-s3", Keys()))
    resolved = resolver.resolve(BaseModelSpec(id="s3://models/tiny/v1"))
    assert (
        resolved.origin == "s3"
        and (resolved.folder / "config.json").read_bytes() == (tiny_folder / "config.json").read_bytes()
    )
    stamps = {p: p.stat().st_mtime_ns for p in resolved.folder.rglob("*") if p.is_file() and p.name != ".etags.json"}
    assert resolver.resolve(BaseModelSpec(id="s3://models/tiny/v1")).folder == resolved.folder
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing fetched again
    with pytest.raises(SpecError, match="no objects under s3://models/none"):
        resolver.resolve(BaseModelSpec(id="s3://models/none"))
