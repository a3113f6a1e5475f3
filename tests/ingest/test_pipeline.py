"""Ingestion into Milvus Lite with the real embedding model."""

import json
from pathlib import Path

import pytest

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
    drop(inbox, "binary.txt", bytes(range(256)) * 8)
    drop(inbox, "latin1.txt", "An old note about crème brûlée at the harbour café.".encode("latin-1"))
    drop(inbox, "huge.txt", "x" * 30_000)  # over the twin's 20 kB maxObjectBytes
    drop(inbox, "good.md", "# Good\n\nThe good file about the harbour master's cat.")
    keys = ("corrupt.pdf", "empty.md", "binary.txt", "latin1.txt", "huge.txt", "good.md")
    outcomes = {k: pipeline.put("essays", k) for k in keys}
    assert {k: o.outcome for k, o in outcomes.items()} == {
        "corrupt.pdf": "rejected",
        "empty.md": "rejected",
        "binary.txt": "rejected",
        "latin1.txt": "ingested",  # an older encoding is text all the same
        "huge.txt": "rejected",
        "good.md": "ingested",
    }
    assert outcomes["corrupt.pdf"].reason.startswith("corrupt")
    assert outcomes["empty.md"].reason.startswith("empty")
    assert outcomes["binary.txt"].reason.startswith(("binary", "undecodable"))
    assert outcomes["huge.txt"].reason.startswith("too-large")
    assert pipeline.store.counts() == (2, 2)
    [hit] = pipeline.store.search(pipeline.embedder.embed(["crème brûlée"])[0], 1, 'key == "latin1.txt"')
    assert "crème brûlée" in hit.text and hit.meta["encoding"] == "cp1252"


def test_changes_to_objects_no_source_holds_are_rejected_not_applied(pipeline, inbox):
    from llmtwin.sources.changes import ObjectChange

    drop(inbox, "kept.md", "# Kept\n\nThe harbour master's cat sleeps on the bollard.")
    assert pipeline.put("essays", "kept.md").outcome == "ingested"
    outcomes = pipeline.ingest([ObjectChange("elsewhere", "kept.md", "delete"), ObjectChange("elsewhere", "x.md")])
    assert [(o.outcome, o.reason.split(":")[0]) for o in outcomes] == [("rejected", "unrouted")] * 2
    assert pipeline.store.counts() == (1, 1)


def test_unsafe_keys_cannot_escape_the_bucket(pipeline, inbox):
    (inbox / "secret.md").write_text("# Secret\n\nnot part of the essays bucket")
    outcome = pipeline.put("essays", "../secret.md")
    assert outcome.outcome == "rejected" and outcome.reason.startswith("unsafe-key")
    assert pipeline.store.counts() == (0, 0)


def posts(*entries: tuple[str, str, str]) -> str:
    return "\n".join(
        json.dumps({"id": i, "title": f"Post {i}", "text": text, "date": date}) for i, text, date in entries
    )


def by_post(pipeline, key: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for row in pipeline.store.object_chunks("essays", key):
        found.setdefault(row["document_id"], set()).add(row["id"])
    return found


def test_an_export_is_one_document_per_post_and_edits_touch_only_their_post(pipeline, inbox):
    swim = ("swim", "Swam at the slipway this morning. Water at nine degrees. " * 30, "2026-01-12")
    ferry = ("ferry", "The winter ferry runs at eight and at four; miss it and stay.", "2026-02-03")
    fog = ("fog", "The foghorn at Gull Rock sounds two notes, low then lower.", "2026-03-01")
    drop(inbox, "posts.jsonl", posts(swim, ferry, fog))
    first = pipeline.put("essays", "posts.jsonl")
    assert (first.outcome, first.documents) == ("ingested", 3) and first.embedded == first.chunks
    before = by_post(pipeline, "posts.jsonl")
    assert set(before) == {"swim", "ferry", "fog"} and len(before["swim"]) > 1
    assert pipeline.store.counts() == (3, first.chunks)
    [hit] = pipeline.store.search(pipeline.embedder.embed(["When does the ferry run?"])[0], 1)
    assert (hit.source, hit.title) == ("essays/posts.jsonl#ferry", "Post ferry")

    # The export again, with the ferry post edited and the fog post removed: only the ferry is embedded
    # again, the fog post's chunks go, the swim post's stay as they were.
    edited = ("ferry", "The winter ferry now runs at nine and at five.", "2026-02-03")
    drop(inbox, "posts.jsonl", posts(swim, edited))
    second = pipeline.put("essays", "posts.jsonl")
    after = by_post(pipeline, "posts.jsonl")
    assert set(after) == {"swim", "ferry"} and after["swim"] == before["swim"]
    assert after["ferry"].isdisjoint(before["ferry"])
    assert (second.documents, second.embedded) == (2, len(after["ferry"]))
    [hit] = pipeline.store.search(pipeline.embedder.embed(["When does the ferry run?"])[0], 1)
    assert "nine and at five" in hit.text

    # The same file once more changes nothing.
    assert pipeline.put("essays", "posts.jsonl").outcome == "unchanged"
    assert by_post(pipeline, "posts.jsonl") == after


def test_a_collection_from_an_older_llmtwin_is_refused_with_the_fix(tmp_path):
    from pymilvus import DataType, MilvusClient

    from llmtwin.corpus.store import ChunkStore, CollectionOutdated, milvus_client

    uri = str(tmp_path / "old.db")
    client = milvus_client(uri)
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=4)
    index = client.prepare_index_params()
    index.add_index("vector", index_type="FLAT", metric_type="COSINE")
    client.create_collection("old", schema=schema, index_params=index)
    client.close()
    with pytest.raises(CollectionOutdated, match=r"older llmtwin.*delete the file.*vectorStore.collection"):
        ChunkStore(uri, "old", 4)


def test_a_collection_is_its_twins_own_and_only_its_twin_drops_it(tmp_path):
    from llmtwin.corpus.store import ChunkStore, CollectionTaken, drop_collection, milvus_client

    uri = str(tmp_path / "shared.db")
    ChunkStore(uri, "essays", 4, owner="team-a/alice").client.close()  # as the first ingest creates it
    with pytest.raises(CollectionTaken, match="belongs to LLMTwin team-a/alice"):
        ChunkStore(uri, "essays", 4, owner="team-b/bob")
    assert drop_collection(uri, "essays", "team-b/bob") == "team-a/alice"  # kept: not bob's
    assert milvus_client(uri).has_collection("essays")
    assert drop_collection(uri, "essays", "team-a/alice") == "dropped"
    assert drop_collection(uri, "essays", "team-a/alice") == "absent"
    ChunkStore(uri, "by_hand", 4).client.close()  # no owner recorded: not created for a twin
    assert drop_collection(uri, "by_hand", "team-a/alice") == "unrecorded"
