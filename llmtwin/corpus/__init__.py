"""The twin's corpus: its chunks in Milvus (`store`) and the model that embeds them (`embed`).

Neutral ground: ingestion writes here, retrieval and the retrain dataset read here, the operator's
finalizer drops it. It imports only the API.
"""
