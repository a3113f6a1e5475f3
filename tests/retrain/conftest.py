"""Fixtures for the retrain suite: the tiny author's corpus in Milvus Lite, the tiny model, MLflow."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.config import PlatformSettings
from llmtwin.corpus.embed import embedder_for
from llmtwin.corpus.store import store_for
from llmtwin.models.resolve import ModelResolver
from llmtwin.secrets import SecretFiles
from llmtwin.sources.objects import FolderStore, ObjectStores
from llmtwin.workflows.ingest.pipeline import IngestPipeline
from llmtwin.workflows.retrain.workspace import RetrainWorkspace
from llmtwin.workflows.status import FileStatusReporter, StatusReporter
from llmtwin.workflows.steps import StepContext
from tests.retrain.tiny import author_document, build_tiny_model, tiny_twin

DOCUMENTS = 14


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    """inbox/essays: the author's documents, plus an exact copy and a near copy of the first one."""
    inbox = tmp_path_factory.mktemp("corpus")
    essays = inbox / "essays"
    essays.mkdir()
    rng = random.Random(11)
    for i in range(DOCUMENTS):
        (essays / f"essay-{i:02d}.md").write_text(author_document(rng, f"Notes from the Coast {i}"))
    first = (essays / "essay-00.md").read_text()
    (essays / "copies").mkdir()
    (essays / "copies" / "essay-00-again.md").write_text(first)
    (essays / "copies" / "essay-00-edited.md").write_text(first.replace(" the ", " that ", 1))
    return inbox


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, corpus_dir) -> Path:
    """A BPE tokenizer trained on the corpus and a random-init Llama (hidden 64, 2 layers), saved to disk."""
    texts = [p.read_text() for p in sorted(corpus_dir.rglob("*.md"))]
    return build_tiny_model(texts, tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def milvus_uri(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("milvus") / "milvus.db"


@pytest.fixture(scope="session")
def make_twin(tiny_model, milvus_uri):
    """An LLMTwin on the tiny model and the test collection; keyword arguments override spec.training."""

    def build(**training) -> LLMTwin:
        return tiny_twin("quill", tiny_model, milvus_uri, **training)

    return build


@pytest.fixture(scope="session")
def twin(make_twin, corpus_dir) -> LLMTwin:
    """The default test twin, its corpus ingested into Milvus Lite by the real ingest pipeline."""
    twin = make_twin()
    pipeline = IngestPipeline(
        twin,
        lambda source: FolderStore(corpus_dir),
        store_for(twin),
        embedder_for(twin.spec.vector_store.embedding_model),
    )
    for path in sorted((corpus_dir / "essays").rglob("*.md")):
        assert pipeline.put("essays", str(path.relative_to(corpus_dir / "essays"))).outcome == "ingested"
    store_for(twin).flush()
    return twin


@pytest.fixture
def settings(mlflow_server) -> PlatformSettings:
    return PlatformSettings(mlflow_tracking_uri=mlflow_server.tracking_uri)


@pytest.fixture
def status_file(tmp_path) -> Path:
    """Where the steps of `step_context(..., status=FileStatusReporter(status_file))` report."""
    return tmp_path / "status.json"


@pytest.fixture(scope="session")
def built_dataset(tmp_path_factory, twin) -> RetrainWorkspace:
    """The dataset step run once; tests that train copy it into their own workspace."""
    from llmtwin.workflows.steps import run_step

    workspace = RetrainWorkspace(tmp_path_factory.mktemp("dataset-workspace"))
    run_step("retrain-dataset", {}, step_context(twin, workspace))
    return workspace


@pytest.fixture
def workspace(tmp_path, built_dataset) -> RetrainWorkspace:
    """A fresh workspace holding the built dataset."""
    target = RetrainWorkspace(tmp_path / "workspace")
    shutil.copytree(built_dataset.dataset_dir, target.dataset_dir)
    return target


def step_context(
    twin: LLMTwin,
    workspace: RetrainWorkspace,
    settings: PlatformSettings | None = None,
    status: StatusReporter | None = None,
) -> StepContext:
    """What a retrain step gets on this machine (no object store: the retrain reads the collection)."""
    secrets = SecretFiles(workspace.root / "secrets")
    objects = ObjectStores("http://unused:9000", "unused", secrets)
    return StepContext(
        twin=twin,
        workspace=workspace.root,
        settings=settings or PlatformSettings(),
        status=status or FileStatusReporter(workspace.root / "status.json"),
        objects=objects,
        models=ModelResolver(workspace.root / "models", objects),
        secrets=secrets,
    )
