"""Milvus Lite's own gRPC server (`milvus-lite server`, from the venv's milvus-lite package) on loopback.

Production Milvus is a server reached by URI; this lets tests use that very code path (`http://...`)
and lets several processes (the operator, a step, the test) share one collection, which a Milvus Lite
file does not allow."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.harness import free_port, stop_process_group, wait_for


class MilvusServer:
    def __init__(self):
        self.workdir = Path(tempfile.mkdtemp(prefix="llmtwin-milvus-"))
        self.proc: subprocess.Popen | None = None
        self.uri = ""

    def start(self) -> MilvusServer:
        port = free_port()
        self.uri = f"http://127.0.0.1:{port}"
        log = open(self.workdir / "milvus.log", "wb")
        command = [str(Path(sys.executable).parent / "milvus-lite"), "server", "--data-dir", str(self.workdir / "data")]
        self.proc = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(lambda: self._listening(port), timeout=60, what=f"milvus-lite server on {port}")
        return self

    def _listening(self, port: int) -> bool:
        if self.proc and self.proc.poll() is not None:
            raise RuntimeError((self.workdir / "milvus.log").read_text(errors="replace")[-2000:])
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    def client(self):
        from pymilvus import MilvusClient

        return MilvusClient(self.uri)

    def stop(self) -> None:
        stop_process_group(self.proc)
        shutil.rmtree(self.workdir, ignore_errors=True)
