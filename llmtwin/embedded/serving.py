"""The model server on this machine: `llmtwin serve`'s engine and API in a background thread, serving
the twin's base model and, once a retrain was promoted, its production adapter under the twin's name.

A twin whose spec names a `generationEndpoint` uses that server instead (a TGI elsewhere, say)."""

from __future__ import annotations

from dataclasses import dataclass

from llmtwin.api import names
from llmtwin.api.v1alpha1 import LLMTwin
from llmtwin.config import EmbeddedSettings
from llmtwin.models.adapters import MODELS_URI
from llmtwin.models.resolve import ModelResolver
from llmtwin.serving.api import ServerLimits
from llmtwin.serving.server import BackgroundServer, start_engine


@dataclass
class LocalModelServer:
    endpoint: str
    server: BackgroundServer | None = None  # None: the twin's own generationEndpoint

    def serve_version(self, twin: LLMTwin, version: str | None) -> bool:
        """Serve `version` (None: the base model) under the twin's name from the next request on, without a
        restart; True if that changed what is served. A twin's own generationEndpoint is left alone."""
        if self.server is None:
            return False
        adapters = self.server.engine.adapters
        wanted = production_adapter(twin, version)
        if adapters.sources.get(twin.name) == wanted.get(twin.name):
            return False
        if wanted:
            adapters.load(twin.name, wanted[twin.name])
        else:
            adapters.unload(twin.name)
        return True

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server.engine.stop()


def production_adapter(twin: LLMTwin, version: str | None) -> dict[str, str]:
    """The production adapter (status.modelVersion), as the model server loads it: under the twin's name."""
    if not version:
        return {}
    return {twin.name: f"{MODELS_URI}{names.registered_model_name(twin.namespace, twin.name)}/{version}"}


def start_model_server(
    twin: LLMTwin, resolver: ModelResolver, settings: EmbeddedSettings, port: int
) -> LocalModelServer:
    external = twin.spec.serving.gateway.generation_endpoint
    if external:
        return LocalModelServer(external)
    serving = twin.spec.serving
    resolved = resolver.resolve(twin.spec.base_model)
    engine = start_engine(
        resolved,
        production_adapter(twin, twin.status.model_version),
        settings.model_cache,
        settings.mlflow_tracking_uri,
    )
    limits = ServerLimits(
        model_id=twin.spec.base_model.id,
        max_input_tokens=serving.max_input_tokens,
        max_total_tokens=serving.max_total_tokens,
        max_new_tokens=serving.max_new_tokens,
    )
    server = BackgroundServer(engine, limits, "127.0.0.1", port).start()
    return LocalModelServer(server.url, server)
