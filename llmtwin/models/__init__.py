"""Models on this machine: where a base model is (`resolve`), how it loads (`load`), adapters from the
MLflow registry (`adapters`). Serving, training and evaluation all go through here, so a local folder,
a `.gguf` file, an `s3://` prefix and a hub id behave the same everywhere."""
