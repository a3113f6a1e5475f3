"""The twin's front door: every question is answered from the author's documents, in the author's voice.

- `retrieve.py`: the question's nearest chunks in the twin's collection (with filters);
- `answer.py`: the prompt from the spec (author, style notes, context) and generation through the
  model server (TGI, vLLM or `llmtwin serve`, all behind TGI's API), with the production adapter;
- `http.py`: OpenAI's `POST /v1/chat/completions` (streamed or not; the sources ride along) and `/ask`.
"""
