"""A model server assembled: the resolved base model loaded, adapters loaded, the engine started, and
the HTTP API served by uvicorn (in this thread, or in a background thread for `llmtwin up`)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from llmtwin.models.load import detect_precision, load_model, load_tokenizer, quiet_transformers
from llmtwin.models.resolve import ResolvedModel
from llmtwin.serving.adapters import AdapterRegistry
from llmtwin.serving.api import ModelServer, ServerLimits, create_app
from llmtwin.serving.engine import Engine

STARTUP_SECONDS = 30


@dataclass(frozen=True)
class EngineOptions:
    max_batch: int = 8
    gather_seconds: float = 0.02


def start_engine(
    model: ResolvedModel,
    adapters: dict[str, str],
    cache_dir,
    tracking_uri: str | None,
    options: EngineOptions = EngineOptions(),
) -> Engine:
    """Load the model (and each adapter: name -> folder or models:/<name>/<version>) and start generating."""
    quiet_transformers()
    precision = detect_precision()
    tokenizer = load_tokenizer(model)
    loaded = load_model(model, precision)
    loaded.eval()
    registry = AdapterRegistry(loaded, cache_dir, tracking_uri)
    for name, source in adapters.items():
        registry.load(name, source)
    engine = Engine(tokenizer, registry, precision.device, options.max_batch, options.gather_seconds)
    return engine.start()


class BackgroundServer:
    """uvicorn in a thread (for `llmtwin up`, which runs the model server beside the twin)."""

    def __init__(self, engine: Engine, limits: ServerLimits, host: str, port: int):
        import uvicorn

        self.engine = engine
        app = create_app(ModelServer(engine, limits))
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
        self.server.install_signal_handlers = lambda: None
        self.thread = threading.Thread(target=self.server.run, name="model-server", daemon=True)
        self.url = f"http://{host}:{port}"

    def start(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + STARTUP_SECONDS
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the model server did not start on {self.url}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve_forever(engine: Engine, limits: ServerLimits, host: str, port: int) -> None:
    import uvicorn

    try:
        uvicorn.run(create_app(ModelServer(engine, limits)), host=host, port=port, log_level="warning")
    finally:
        engine.stop()
