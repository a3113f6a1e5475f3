"""Milvus Lite's own gRPC server (milvus-lite's `run_server`, from the venv's package) on loopback.

Production Milvus is a server reached by URI; this lets tests use that very code path (`http://...`)
and lets several processes (the operator, a step, the test) share one collection, which a Milvus Lite
file does not allow. One setting differs from `milvus-lite server`: the keepalive policy. pymilvus
pings every 10 s, which Milvus standalone permits and Milvus Lite's server (gRPC's defaults) answers
with GOAWAY "too_many_pings", failing the next call of a long-lived client (seen in the test run);
the launcher below gives the server Milvus standalone's policy."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.harness import free_port, stop_process_group, wait_for

LAUNCHER = """
import sys, grpc
from milvus_lite.adapter.grpc import server
build = grpc.server
KEEPALIVE = [("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.min_ping_interval_without_data_ms", 5000),
             ("grpc.http2.max_ping_strikes", 0)]
server.grpc.server = lambda executor, options=(): build(executor, options=[*options, *KEEPALIVE])
server.run_server(sys.argv[1], host="127.0.0.1", port=int(sys.argv[2]))
"""


class MilvusServer:
    def __init__(self):
        self.workdir = Path(tempfile.mkdtemp(prefix="llmtwin-milvus-"))
        self.proc: subprocess.Popen | None = None
        self.uri = ""

    def start(self) -> MilvusServer:
        port = free_port()
        self.uri = f"http://127.0.0.1:{port}"
        log = open(self.workdir / "milvus.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, str(self.workdir / "data"), str(port)],
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
