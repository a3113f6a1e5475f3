"""Where the author's documents are read from: object stores (MinIO/S3 or a watched folder) and the
credentials that open them. Used by the ingest step, `llmtwin up` and the operator's event plane."""
