"""Ingestion into Milvus Lite with the real embedding model."""

from pathlib import Path

from tests.ingest.conftest import drop

CORPUS = Path(__file__).resolve().parents[2] / "examples/corpus"


def load_corpus(inbox):
    for path in CORPUS.iterdir():
        drop(inbox, path.name, path.read_bytes())


def ids(pipeline, key):
    return sorted(r["id"] for r in pipeline.store.object_chunks("essays", key))


def test_question_retrieves_the_dropped_documents_chunk_first(pipeline, inbox, embedder):
    load_corpus(inbox)
    for path in CORPUS.iterdir():
        assert pipeline.put("essays", path.name).outcome == "ingested"
    for question, source in [
        ("How many iron rings are on the harbour wall?", "harbour-walls.pdf"),
        ("How long does Mara's bread take to make?", "sourdough.txt"),
        ("When does the winter ferry leave?", "posts.jsonl"),
        ("Why does Mara admire gulls?", "gulls.md"),
    ]:
        hits = pipeline.store.search(embedder.embed([question])[0], 3)
        assert hits[0].key == source, (question, [h.key for h in hits])


def test_reingest_is_a_noop_overwrite_replaces_delete_removes(pipeline, inbox):
    drop(inbox, "a.md", "# Nets\n\n" + "Fishing nets are mended on the quay every Tuesday. " * 40)
    assert pipeline.put("essays", "a.md").outcome == "ingested"
    first_ids, counts = ids(pipeline, "a.md"), pipeline.store.counts()
    assert len(first_ids) > 1
    assert pipeline.put("essays", "a.md").outcome == "unchanged"
    assert ids(pipeline, "a.md") == first_ids and pipeline.store.counts() == counts

    drop(inbox, "a.md", "# Nets\n\nThe nets are gone; the quay is quiet now.")
    assert pipeline.put("essays", "a.md").outcome == "ingested"
    rows = pipeline.store.object_chunks("essays", "a.md")
    assert len(rows) == 1 and rows[0]["id"] not in first_ids

    assert pipeline.delete("essays", "a.md").outcome == "deleted"
    assert pipeline.store.object_chunks("essays", "a.md") == []
    assert pipeline.store.counts() == (0, 0)


def test_bad_files_are_recorded_and_the_rest_ingested(pipeline, inbox):
    drop(inbox, "corrupt.pdf", b"%PDF-1.4 garbage that is not a pdf")
    drop(inbox, "empty.md", b"")
    drop(inbox, "latin1.txt", "crème brûlée".encode("latin-1"))
    drop(inbox, "huge.txt", "x" * 30_000)  # over the twin's 20 kB maxObjectBytes
    drop(inbox, "good.md", "# Good\n\nThe good file about the harbour master's cat.")
    outcomes = {k: pipeline.put("essays", k) for k in ("corrupt.pdf", "empty.md", "latin1.txt", "huge.txt", "good.md")}
    assert {k: o.outcome for k, o in outcomes.items()} == {
        "corrupt.pdf": "rejected",
        "empty.md": "rejected",
        "latin1.txt": "rejected",
        "huge.txt": "rejected",
        "good.md": "ingested",
    }
    assert outcomes["corrupt.pdf"].reason.startswith("corrupt")
    assert outcomes["empty.md"].reason.startswith("empty")
    assert outcomes["latin1.txt"].reason.startswith("not-utf8")
    assert outcomes["huge.txt"].reason.startswith("too-large")
    assert pipeline.store.counts() == (1, 1)


def test_unsafe_keys_cannot_escape_the_bucket(pipeline, inbox):
    (inbox / "secret.md").write_text("# Secret\n\nnot part of the essays bucket")
    outcome = pipeline.put("essays", "../secret.md")
    assert outcome.outcome == "rejected" and outcome.reason.startswith("unsafe-key")
    assert pipeline.store.counts() == (0, 0)
