"""llmtwin: keep an LLM Twin alive on Kubernetes or a laptop."""

__version__ = "0.1.0"
