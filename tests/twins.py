"""The one place tests find the repository and the example twin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.secrets import Secrets

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "twin.yaml"


def twin_doc(name: str | None = None, namespace: str | None = None, **spec: Any) -> dict[str, Any]:
    """examples/twin.yaml as a dict, renamed and with top-level spec fields replaced."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    if name:
        doc["metadata"]["name"] = name
    if namespace:
        doc["metadata"]["namespace"] = namespace
    doc["spec"].update(spec)
    return doc


def example_twin(name: str | None = None, namespace: str | None = None, **spec: Any) -> LLMTwin:
    return LLMTwin.model_validate(twin_doc(name, namespace, **spec))


DEMO_CORPUS_BUCKET = "corpus"  # examples/corpus read as bucket `corpus` of a folder store rooted at examples/


def ingest_demo_corpus(twin: LLMTwin, secrets: Secrets | None = None) -> int:
    """examples/corpus into the twin's collection (its source must be bucket `corpus`): the real ingest
    pipeline and embedder, and the Secrets its Milvus token and CA are in. Returns the number of documents."""
    from llmtwin.corpus.embed import embedder_for
    from llmtwin.corpus.store import store_for
    from llmtwin.sources.objects import FolderStore
    from llmtwin.workflows.ingest.pipeline import IngestPipeline

    store = store_for(twin, secrets)
    pipeline = IngestPipeline(
        twin, lambda _: FolderStore(ROOT / "examples"), store, embedder_for(twin.spec.vector_store.embedding_model)
    )
    outcomes = [pipeline.put(DEMO_CORPUS_BUCKET, p.name).outcome for p in sorted((ROOT / "examples/corpus").iterdir())]
    assert set(outcomes) == {"ingested"}, outcomes
    store.flush()
    return len(outcomes)
