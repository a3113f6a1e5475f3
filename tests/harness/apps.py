"""An ASGI app of ours served by uvicorn in a background thread of the test process, on a free port."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from tests.harness import free_port


@contextlib.contextmanager
def served(app) -> Iterator[str]:
    """The app's base URL while the block runs."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    server.install_signal_handlers = lambda: None
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the app did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
