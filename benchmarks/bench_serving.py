"""Serving benchmark on SmolLM2-135M-Instruct (greedy, the same prompts everywhere), baselines in the same run.

1. Single stream: tokens/s and time to first token of `llmtwin serve` over HTTP (InferenceClient,
   streamed) against a bare `model.generate` loop in this process (target ratio >= 0.9).
2. Concurrency: aggregate tokens/s of 8 concurrent streams against the same 8 requests one after the
   other (target >= 2x, from batching).
3. CPU reference: the same GGUF file under llama.cpp (llama-cpp-python, when a build of it is found
   at ~/.cache/llmtwin/llamacpp-venv; it is not a dependency of the project).
4. The RAG front door: p50/p95 of retrieval + first token for questions on the demo corpus.

Usage: .venv/bin/python benchmarks/bench_serving.py [--tokens 64] [--questions 20] [--smoke]
`--smoke` runs every row at the smallest size (a handful of tokens and questions) and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from report import print_table  # noqa: E402

from llmtwin.api.v1alpha1 import BaseModelSpec  # noqa: E402
from llmtwin.config import EmbeddedSettings  # noqa: E402
from llmtwin.models.catalog import bundled_gguf  # noqa: E402
from llmtwin.models.load import detect_precision, load_model, load_tokenizer, quiet_transformers  # noqa: E402
from llmtwin.models.resolve import ModelResolver  # noqa: E402
from llmtwin.serving.api import ServerLimits  # noqa: E402
from llmtwin.serving.client import model_server_client  # noqa: E402
from llmtwin.serving.server import BackgroundServer, start_engine  # noqa: E402
from tests.harness import free_port  # noqa: E402

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
SUBJECTS = ["gulls", "bread", "tides", "ferries", "fog", "granite", "winter", "nets"]
LLAMACPP_PYTHON = Path.home() / ".cache" / "llmtwin" / "llamacpp-venv" / "bin" / "python"


def prompt(tokenizer, subject: str) -> str:
    messages = [{"role": "user", "content": f"Write a long paragraph about {subject}."}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def bare_generate(model, tokenizer, text: str, tokens: int) -> tuple[float, float, int]:
    """(seconds to first token, total seconds, tokens) of one greedy generate() with a streamer."""
    import torch
    from transformers.generation.streamers import BaseStreamer

    class FirstToken(BaseStreamer):
        def __init__(self) -> None:
            self.calls, self.first = 0, None

        def put(self, value) -> None:
            self.calls += 1
            if self.calls == 2:  # the first call is the prompt
                self.first = time.perf_counter()

        def end(self) -> None:
            pass

    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")
    streamer = FirstToken()
    started = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            **ids, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, streamer=streamer,
            pad_token_id=tokenizer.pad_token_id,
        )  # fmt: skip
    done = time.perf_counter()
    return streamer.first - started, done - started, out.shape[1] - ids["input_ids"].shape[1]


def served_stream(client, text: str, tokens: int) -> tuple[float, float, int]:
    started = time.perf_counter()
    first, count = None, 0
    for event in client.text_generation(text, max_new_tokens=tokens, stream=True, details=True):
        if first is None:
            first = time.perf_counter()
        count = event.details.generated_tokens if event.details else count + 1
    return first - started, time.perf_counter() - started, count


def single_stream(model, tokenizer, client, texts: list[str], tokens: int) -> list[tuple[str, str, str]]:
    bare = [bare_generate(model, tokenizer, t, tokens) for t in texts]
    served = [served_stream(client, t, tokens) for t in texts]

    def rate(runs):  # tokens/s after the first token (decode speed), as TGI reports it
        return sum(n for _, _, n in runs) / sum(total for _, total, _ in runs)

    ratio = rate(served) / rate(bare)
    return [
        (
            "single stream: bare model.generate",
            f"{rate(bare):.1f} tok/s",
            f"TTFT p50 {_ms(bare)} ms, {len(texts)} prompts",
        ),
        ("single stream: llmtwin serve over HTTP", f"{rate(served):.1f} tok/s", f"TTFT p50 {_ms(served)} ms"),
        ("served / bare", f"{ratio:.2f}", "target >= 0.9"),
    ]


def _ms(runs) -> str:
    return f"{statistics.median(first for first, _, _ in runs) * 1000:.0f}"


def concurrency(client, texts: list[str], tokens: int) -> list[tuple[str, str, str]]:
    started = time.perf_counter()
    sequential = sum(served_stream(client, t, tokens)[2] for t in texts)
    sequential_s = time.perf_counter() - started
    counts: list[int] = []
    barrier = threading.Barrier(len(texts))

    def run(text: str) -> None:
        barrier.wait()
        counts.append(served_stream(client, text, tokens)[2])

    threads = [threading.Thread(target=run, args=(t,)) for t in texts]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    concurrent_s = time.perf_counter() - started
    if len(counts) != len(texts):
        raise SystemExit("a concurrent stream failed")
    seq_rate, conc_rate = sequential / sequential_s, sum(counts) / concurrent_s
    return [
        (f"{len(texts)} requests one after the other", f"{seq_rate:.1f} tok/s", f"{sequential_s:.1f} s"),
        (f"{len(texts)} concurrent streams (batched)", f"{conc_rate:.1f} tok/s", f"{concurrent_s:.1f} s"),
        ("concurrent / sequential", f"{conc_rate / seq_rate:.2f}x", "target >= 2x"),
    ]


LLAMACPP_SCRIPT = """
import json, sys, time
from llama_cpp import Llama
path, tokens, prompts = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
llm = Llama(model_path=path, n_threads=2, n_ctx=2048, verbose=False)
total = count = 0.0
for p in prompts:
    start = time.perf_counter()
    out = llm(p, max_tokens=tokens, temperature=0.0)
    total += time.perf_counter() - start
    count += out["usage"]["completion_tokens"]
print(json.dumps({"tokens_per_second": count / total}))
"""


def llamacpp(texts: list[str], tokens: int, served_rate: float) -> list[tuple[str, str, str]]:
    gguf = bundled_gguf(MODEL)
    if not LLAMACPP_PYTHON.exists() or gguf is None:
        return [("llama.cpp (GGUF, 2 threads)", "not run", f"no llama-cpp-python build at {LLAMACPP_PYTHON}")]
    result = subprocess.run(
        [str(LLAMACPP_PYTHON), "-c", LLAMACPP_SCRIPT, str(gguf), str(tokens), json.dumps(texts)],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    if "No module named 'llama_cpp'" in result.stderr:
        return [("llama.cpp (GGUF, 2 threads)", "not run", f"llama-cpp-python is not built in {LLAMACPP_PYTHON}")]
    if result.returncode != 0:
        return [("llama.cpp (GGUF, 2 threads)", "failed", result.stderr.strip().splitlines()[-1][:100])]
    rate = json.loads(result.stdout.strip().splitlines()[-1])["tokens_per_second"]
    return [
        ("llama.cpp (same GGUF, Q4_1, 2 threads)", f"{rate:.1f} tok/s", "CPU reference, greedy"),
        ("llmtwin serve / llama.cpp", f"{served_rate / rate:.2f}", "transformers fp32 vs quantized C++"),
    ]


def front_door(endpoint: str, questions: int, work: Path) -> list[tuple[str, str, str]]:
    import yaml

    from llmtwin.api.v1alpha1 import LLMTwin
    from llmtwin.frontdoor.answer import FrontDoor, Sampling
    from llmtwin.frontdoor.retrieve import Retriever
    from tests.twins import DEMO_CORPUS_BUCKET, ingest_demo_corpus

    doc = yaml.safe_load((ROOT / "examples/twin.yaml").read_text())
    doc["spec"]["vectorStore"]["uri"] = str(work / "milvus.db")
    doc["spec"]["sources"] = [{"bucket": DEMO_CORPUS_BUCKET}]
    twin = LLMTwin.model_validate(doc)
    ingest_demo_corpus(twin)
    door = FrontDoor(twin, Retriever(twin), endpoint)
    asked = [
        "How many iron rings are on the harbour wall?",
        "When does the winter ferry leave?",
        "Why do you like gulls?",
        "How long does your bread take?",
        "What do the tides uncover?",
    ]
    retrieve, first = [], []
    for i in range(questions):
        answer = None
        for item in door.stream(asked[i % len(asked)], sampling=Sampling(max_tokens=8)):
            answer = item
        retrieve.append(answer.timings["retrieve"])
        first.append(answer.timings.get("first_token", answer.timings["total"]))
    return [
        ("front door: retrieval p50/p95", f"{_pct(retrieve, 50)}/{_pct(retrieve, 95)} ms", f"{questions} questions"),
        (
            "front door: question -> first token p50/p95",
            f"{_pct(first, 50)}/{_pct(first, 95)} ms",
            "retrieval included",
        ),
    ]


def _pct(values: list[float], q: int) -> str:
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] * 1000:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=64, help="generated tokens per request")
    parser.add_argument("--questions", type=int, default=20, help="front door questions")
    parser.add_argument("--smoke", action="store_true", help="the smallest run that exercises every row")
    args = parser.parse_args()
    tokens, questions, prompts = (4, 2, 2) if args.smoke else (args.tokens, args.questions, 4)
    quiet_transformers()
    settings = EmbeddedSettings()
    resolved = ModelResolver(settings.model_cache).resolve(BaseModelSpec(id=MODEL))
    tokenizer = load_tokenizer(resolved)
    model = load_model(resolved, detect_precision())
    texts = [prompt(tokenizer, s) for s in SUBJECTS]
    engine = start_engine(resolved, {}, settings.model_cache, None)
    server = BackgroundServer(engine, ServerLimits(model_id=MODEL), "127.0.0.1", free_port()).start()
    try:
        client = model_server_client(server.url)
        rows = single_stream(model, tokenizer, client, texts[:prompts], tokens)
        rows += concurrency(client, texts, tokens)
        served_rate = float(rows[1][1].split()[0])
        rows += llamacpp(texts[:prompts], tokens, served_rate)
        with tempfile.TemporaryDirectory(prefix="llmtwin-bench-serving-") as tmp:
            rows += front_door(server.url, questions, Path(tmp))
    finally:
        server.stop()
        engine.stop()
    print_table(rows)


if __name__ == "__main__":
    main()
