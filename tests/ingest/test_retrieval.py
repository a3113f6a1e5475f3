"""Retrieval: filters, prompt, and generation through huggingface_hub's InferenceClient."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from llmtwin.retrieval import Retriever, source_filter
from tests.ingest.conftest import drop, make_twin


@pytest.fixture
def retriever(pipeline, inbox, embedder):
    drop(inbox, "2025/fog.md", "# Fog\n\nFog took the town street by street; the foghorn sounds two notes.")
    drop(inbox, "2026/ferry.md", "# Ferry\n\nThe winter ferry leaves at eight and at four.")
    for key in ("2025/fog.md", "2026/ferry.md"):
        assert pipeline.put("essays", key).outcome == "ingested"
    return Retriever(pipeline.twin, pipeline.store, embedder)


def test_filters_restrict_sources(retriever):
    question = "What sound does the foghorn make?"
    assert retriever.retrieve(question)[0].key == "2025/fog.md"
    only_2026 = retriever.retrieve(question, filter=source_filter(key_prefix="2026/"))
    assert [h.key for h in only_2026] == ["2026/ferry.md"]
    assert retriever.retrieve(question, filter=source_filter(bucket="other")) == []
    assert retriever.retrieve(question, filter=source_filter(since=4_000_000_000)) == []


class TgiStandIn(BaseHTTPRequestHandler):
    """Named mock: TGI's container cannot run here; this answers TGI's `/` generate route."""

    requests: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        TgiStandIn.requests.append(body)
        reply = json.dumps([{"generated_text": "At eight and at four."}]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def test_generation_goes_through_the_tgi_api_with_the_retrieved_context(retriever, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # tests run offline for the hub
    server = HTTPServer(("127.0.0.1", 0), TgiStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        twin = make_twin(
            tmp_path / "milvus.db",
            serving={
                "gateway": {"generationEndpoint": f"http://127.0.0.1:{server.server_address[1]}"},
                "maxNewTokens": 64,
            },
        )
        answer = Retriever(twin, retriever.store, retriever.embedder).ask("When does the winter ferry leave?")
    finally:
        server.shutdown()
    assert answer.answer == "At eight and at four."
    sent = TgiStandIn.requests[-1]
    assert sent["parameters"]["max_new_tokens"] == 64
    assert "You are Mara Quill" in sent["inputs"] and "The winter ferry leaves at eight" in sent["inputs"]
    assert answer.wire()["sources"][0]["source"] == "essays/2026/ferry.md"
