"""A stand-in for what Milvus Lite does not have: a Milvus server's TLS listener and its authentication
(Milvus' `tls.mode: 1` and `common.security.authorizationEnabled`). It is named as a stand-in because a
Milvus server that enforces both cannot run here (no container registry; Milvus standalone is a C++ build).

A gRPC proxy on loopback: it serves TLS with a certificate for `SERVER_NAME` only (no IP in it, so a client
must be told the name), signed by a CA made for the session; it refuses every call whose `authorization`
metadata is not base64 of the token (UNAUTHENTICATED, the status Milvus answers with), and forwards the
others, bytes unchanged, to a Milvus Lite server. What it counts (calls forwarded, calls refused) lets a
test see that a process went through it."""

from __future__ import annotations

import base64
import threading
from concurrent import futures
from pathlib import Path

import grpc

from tests.harness import free_port
from tests.harness.pki import certificate, new_key, pem, pem_key

SERVER_NAME = "milvus.llmtwin.test"
TOKEN = "twin-reader:correct horse battery staple"  # Milvus' `user:password` form


class MilvusGate:
    def __init__(self, upstream_uri: str, token: str = TOKEN):
        self.upstream = upstream_uri.removeprefix("http://")
        self.expected = base64.b64encode(token.encode()).decode()
        ca_key, self.server_key = new_key(), new_key()
        ca = certificate("llmtwin test CA", ca_key, ca=True)
        self.ca_pem = pem(ca)
        self.server_pem = pem(certificate(SERVER_NAME, self.server_key, ca_key, ca.subject, sans=(SERVER_NAME,)))
        self.uri = ""
        self.forwarded = 0
        self.refused = 0
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self.upstream_channel: grpc.Channel | None = None

    def start(self) -> MilvusGate:
        self.upstream_channel = grpc.insecure_channel(self.upstream)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), handlers=[_Forward(self)])
        port = free_port()
        credentials = grpc.ssl_server_credentials([(pem_key(self.server_key), self.server_pem)])
        self._server.add_secure_port(f"127.0.0.1:{port}", credentials)
        self._server.start()
        self.uri = f"https://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self._server:
            self._server.stop(grace=1).wait()
        if self.upstream_channel:
            self.upstream_channel.close()

    def count(self, forwarded: bool) -> None:
        with self._lock:
            if forwarded:
                self.forwarded += 1
            else:
                self.refused += 1


class _Forward(grpc.GenericRpcHandler):
    """Every unary call (all of what pymilvus' MilvusClient makes), checked and forwarded as raw bytes."""

    def __init__(self, gate: MilvusGate):
        self.gate = gate

    def service(self, details: grpc.HandlerCallDetails):
        gate, method = self.gate, details.method
        authorization = dict(details.invocation_metadata).get("authorization")

        def forward(request: bytes, context: grpc.ServicerContext) -> bytes:
            if authorization != gate.expected:
                gate.count(forwarded=False)
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "auth check failure, please check username and password")
            gate.count(forwarded=True)
            try:
                return gate.upstream_channel.unary_unary(method)(request, timeout=120)
            except grpc.RpcError as exc:
                context.abort(exc.code(), exc.details() or "")

        return grpc.unary_unary_rpc_method_handler(forward)


SECRET = "milvus-access"  # one Secret with both keys, as a user would make it: `token` and `ca.crt`


def secured_vector_store(gate: MilvusGate, secret: str = SECRET) -> dict:
    """A twin's `vectorStore` that reaches Milvus through the gate: its uri, the token and CA by Secret."""
    return {
        "uri": gate.uri,
        "tokenSecretRef": {"name": secret},
        "tls": {"caSecretRef": {"name": secret}, "serverName": SERVER_NAME},
    }


def secret_data(gate: MilvusGate) -> dict[str, str]:
    return {"token": TOKEN, "ca.crt": gate.ca_pem.decode()}


def mount_secret(root: Path, gate: MilvusGate, secret: str = SECRET) -> Path:
    """The Secret laid out as the kubelet mounts it (`<root>/<secret>/<key>`); returns `root`."""
    (root / secret).mkdir(parents=True, exist_ok=True)
    for key, value in secret_data(gate).items():
        (root / secret / key).write_text(value)
    return root
