"""`llmtwin up` end to end, as a user runs it: a background process, files dropped in the inbox,
`llmtwin ask` polled until it answers from them; stopped with Ctrl-C and restarted."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.harness import free_port, wait_for
from tests.twins import ROOT, twin_doc

pytestmark = [pytest.mark.slow, pytest.mark.models]
CLI = [sys.executable, "-m", "llmtwin.cli"]


@pytest.fixture
def twin_file(tmp_path) -> Path:
    doc = twin_doc()
    doc["spec"]["vectorStore"]["uri"] = str(tmp_path / "milvus.db")
    path = tmp_path / "twin.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300, **kwargs)


def ask(twin_file, data_dir, question) -> dict:
    result = run("ask", question, "-f", str(twin_file), "--data-dir", str(data_dir), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_up_learns_dropped_files_and_resumes_after_restart(tmp_path, twin_file):
    data_dir = tmp_path / "data"
    inbox = data_dir / "inbox" / "essays"
    log = open(tmp_path / "up.log", "w")
    up = subprocess.Popen(
        [*CLI, "up", "-f", str(twin_file), "--data-dir", str(data_dir), "--port", str(free_port())],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(lambda: (data_dir / "state.json").exists() or up.poll() is not None, what="llmtwin up to serve")
        assert up.poll() is None, (tmp_path / "up.log").read_text()
        (inbox / "walls.pdf").write_bytes((ROOT / "examples/corpus/harbour-walls.pdf").read_bytes())
        (inbox / "bread.txt").write_text((ROOT / "examples/corpus/sourdough.txt").read_text())
        answer = wait_for(
            lambda: (
                (a := ask(twin_file, data_dir, "How many iron rings are on the harbour wall?"))["sources"]
                and a["sources"][0]["source"] == "essays/walls.pdf"
                and a
            ),
            what="the twin to answer from walls.pdf",
        )
        assert "forty-one" in answer["sources"][0]["text"]
        wait_for(lambda: json.loads((data_dir / "status.json").read_text()).get("documents") == 2, what="2 docs")
        os.killpg(up.pid, signal.SIGINT)
        assert up.wait(timeout=60) == 0
        assert not (data_dir / "state.json").exists()
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)

    status_before = json.loads((data_dir / "status.json").read_text())
    # While it is down: one file removed, one added. The restart must notice both and redo nothing else.
    (inbox / "bread.txt").unlink()
    (inbox / "gulls.md").write_text((ROOT / "examples/corpus/gulls.md").read_text())
    again = run("up", "-f", str(twin_file), "--data-dir", str(data_dir), "--once")
    assert again.returncode == 0, again.stderr
    assert "'ingested': 1" in again.stderr and "'deleted': 1" in again.stderr
    status = json.loads((data_dir / "status.json").read_text())
    # One single-chunk file out, one single-chunk file in: the same totals, nothing duplicated.
    assert status["documents"] == 2 and status["chunks"] == status_before["chunks"]
    sources = {s["source"] for s in ask(twin_file, data_dir, "gulls and bread and walls")["sources"]}
    assert sources == {"essays/walls.pdf", "essays/gulls.md"}
    # A third start with nothing changed is a no-op.
    third = run("up", "-f", str(twin_file), "--data-dir", str(data_dir), "--once")
    assert "inbox already in sync" in third.stderr


def test_up_once_ingests_a_minio_source(tmp_path, twin_file, minio_server):
    """A source that names an endpoint is read from MinIO with its Secret, here a folder laid out as the
    kubelet mounts Secrets (<secrets-dir>/<name>/<key>): the same reader a workflow pod uses."""
    import io

    doc = yaml.safe_load(twin_file.read_text())
    ref = {"name": "posts-s3", "accessKeyKey": "id", "secretKeyKey": "key"}
    doc["spec"]["sources"] = [{"bucket": "posts", "endpoint": minio_server.endpoint, "credentialsSecretRef": ref}]
    twin_file.write_text(yaml.safe_dump(doc))
    client = minio_server.client()
    client.make_bucket("posts")
    for name in ("posts.jsonl", "gulls.md"):
        data = (ROOT / "examples/corpus" / name).read_bytes()
        client.put_object("posts", f"2026/{name}", io.BytesIO(data), len(data))
    data_dir = tmp_path / "d"
    without = run("up", "-f", str(twin_file), "--data-dir", str(data_dir), "--once")
    assert "Secret posts-s3 is not mounted" in without.stderr  # both objects failed, nothing recorded as done

    secret = tmp_path / "secrets" / "posts-s3"
    secret.mkdir(parents=True)
    (secret / "id").write_text(minio_server.access_key)
    (secret / "key").write_text(minio_server.secret_key)
    args = ["--data-dir", str(data_dir), "--secrets-dir", str(tmp_path / "secrets"), "--once"]
    result = run("up", "-f", str(twin_file), *args)
    assert result.returncode == 0, result.stderr
    assert "'ingested': 2" in result.stderr
    top = ask(twin_file, data_dir, "When does the winter ferry leave?")["sources"][0]
    assert top["source"] == "posts/2026/posts.jsonl"
