"""`llmtwin serve`: a model server with TGI's HTTP API (and OpenAI's chat route) on transformers +
peft, for laptops, CPU clusters and tests, where TGI's container cannot run.

- `engine.py`: the model, a request queue and batched generation with per-request streams;
- `adapters.py`: LoRA adapters loaded and unloaded at run time (a folder or an MLflow version);
- `api.py`: the HTTP routes (TGI's, OpenAI's, vLLM's adapter routes) and their error shapes;
- `metrics.py`: TGI's own metric names, so one canary analysis judges TGI and this server alike.
"""
