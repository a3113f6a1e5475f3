"""Milvus Lite's own gRPC server (the `milvus` binary in the milvus-lite package) on loopback.

Production Milvus is a server reached by URI; this lets tests use that very code path (`http://...`)
and lets several processes (the operator, a step, the test) share one collection, which a Milvus Lite
file does not allow. The binary is started as `milvus-lite`'s own `Server` starts it (its data file, a
TCP address instead of a unix socket, its bundled libraries), in a process group stopped by PID."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from tests.harness import free_port, stop_process_group, wait_for


class MilvusServer:
    def __init__(self):
        self.workdir = Path(tempfile.mkdtemp(prefix="llmtwin-milvus-"))
        self.proc: subprocess.Popen | None = None
        self.uri = ""

    def start(self) -> MilvusServer:
        from milvus_lite.server import BIN_PATH

        port = free_port()
        self.uri = f"http://127.0.0.1:{port}"
        log = open(self.workdir / "milvus.log", "wb")
        env = {**os.environ, "LD_LIBRARY_PATH": BIN_PATH}
        self.proc = subprocess.Popen(
            [str(Path(BIN_PATH) / "milvus"), str(self.workdir / "data.db"), f"127.0.0.1:{port}", "ERROR"],
            cwd=self.workdir,
            env=env,
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
        from llmtwin.corpus.store import milvus_client

        return milvus_client(self.uri)

    def stop(self) -> None:
        stop_process_group(self.proc)
        shutil.rmtree(self.workdir, ignore_errors=True)
