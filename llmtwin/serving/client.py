"""Talking to a model server (TGI, vLLM, `llmtwin serve`) through `huggingface_hub.InferenceClient`.

Air-gapped clusters set HF_HUB_OFFLINE=1 to stop hub downloads, and huggingface_hub then refuses
*every* request it makes, an in-cluster model server's included. The client factory installed here
exempts exactly the model-server endpoints this process was given; everything else, the hub first,
still goes through huggingface_hub's own check, so offline mode keeps its meaning.
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

import httpx2
from huggingface_hub import InferenceClient
from huggingface_hub.utils import _http as hf_http

_exempt: set[str] = set()
_lock = threading.Lock()


def _origin(url: str) -> str:
    parts = urlsplit(str(url))
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname}:{port}"


def _request_hook(request: httpx2.Request) -> None:
    if _origin(str(request.url)) in _exempt:
        return
    hf_http.hf_request_event_hook(request)  # offline check, request ids, as huggingface_hub does


async def _async_request_hook(request: httpx2.Request) -> None:
    _request_hook(request)


def _client() -> httpx2.Client:
    return httpx2.Client(event_hooks={"request": [_request_hook]}, follow_redirects=True, timeout=None)


def _async_client() -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        event_hooks={"request": [_async_request_hook], "response": [hf_http.async_hf_response_event_hook]},
        follow_redirects=True,
        timeout=None,
    )


def model_server_client(endpoint: str, timeout: float | None = None) -> InferenceClient:
    """An InferenceClient for one of our model servers; works whether or not HF_HUB_OFFLINE is set."""
    origin = _origin(endpoint)
    with _lock:
        if origin not in _exempt:
            first = not _exempt
            _exempt.add(origin)
            if first:
                hf_http.set_client_factory(_client)
                hf_http.set_async_client_factory(_async_client)
    return InferenceClient(endpoint.rstrip("/"), timeout=timeout)
