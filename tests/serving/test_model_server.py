"""`llmtwin serve` on SmolLM2-135M-Instruct, through clients nobody here wrote: huggingface_hub's
InferenceClient (text_generation, chat_completion, streamed and not) and the official openai client.
Everything runs with huggingface_hub's offline mode on (see conftest.py)."""

from __future__ import annotations

import threading
import urllib.request

import pytest
from huggingface_hub.errors import ValidationError as HubValidationError
from openai import OpenAI, UnprocessableEntityError

from llmtwin.serving.client import model_server_client
from tests.harness.metrics import metric
from tests.harness.process import MAX_INPUT_TOKENS, SMOLLM2
from tests.serving.conftest import post

pytestmark = pytest.mark.slow
QUESTION = [{"role": "user", "content": "Describe a harbour at dawn in one sentence."}]


def chat_prompt(subject: str) -> str:
    return f"<|im_start|>user\nWrite one sentence about {subject}.<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture
def client(smollm2_server):
    return model_server_client(smollm2_server.url)


@pytest.fixture
def openai_client(smollm2_server):
    return OpenAI(base_url=f"{smollm2_server.url}/v1", api_key="unused")


def test_text_generation_streams_assemble_to_the_non_streamed_text(client):
    prompt = chat_prompt("gulls")
    for params in ({}, {"do_sample": True, "temperature": 0.8, "seed": 7}):
        whole = client.text_generation(prompt, max_new_tokens=24, **params)
        streamed = "".join(client.text_generation(prompt, max_new_tokens=24, stream=True, **params))
        assert whole.strip() and streamed == whole, params
    details = client.text_generation(prompt, max_new_tokens=8, details=True)
    assert details.details.generated_tokens == 8 and details.details.finish_reason == "length"
    assert len(details.details.tokens) == 8 and all(t.logprob <= 0 for t in details.details.tokens)


def test_the_same_seed_samples_the_same_text_and_another_seed_another(client):
    prompt = chat_prompt("the sea")
    first = client.text_generation(prompt, max_new_tokens=20, do_sample=True, temperature=1.0, seed=1)
    assert client.text_generation(prompt, max_new_tokens=20, do_sample=True, temperature=1.0, seed=1) == first
    assert client.text_generation(prompt, max_new_tokens=20, do_sample=True, temperature=1.0, seed=2) != first


def test_chat_completion_through_both_clients_streamed_and_not(client, openai_client):
    hub = client.chat_completion(QUESTION, max_tokens=24, seed=3)
    hub_text = hub.choices[0].message.content
    hub_stream = "".join(
        c.choices[0].delta.content or "" for c in client.chat_completion(QUESTION, max_tokens=24, stream=True, seed=3)
    )
    assert hub_text.strip() and hub_stream == hub_text
    assert hub.usage.completion_tokens == 24 and hub.choices[0].finish_reason == "length"

    openai = openai_client.chat.completions.create(model=SMOLLM2, messages=QUESTION, max_tokens=24, seed=3)
    chunks = openai_client.chat.completions.create(model=SMOLLM2, messages=QUESTION, max_tokens=24, seed=3, stream=True)
    openai_stream = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert openai.choices[0].message.content == hub_text == openai_stream
    assert [m.id for m in openai_client.models.list().data] == [SMOLLM2]


def test_stop_sequences_end_the_answer_without_the_stop_in_openai_content(openai_client, client):
    prompt = chat_prompt("bread")
    full = client.text_generation(prompt, max_new_tokens=30)
    word = next(w for w in full.split()[1:] if len(w) >= 5 and w.isalpha())  # a word the answer contains
    stopped = client.text_generation(prompt, max_new_tokens=30, stop=[word], details=True)
    assert stopped.details.finish_reason == "stop_sequence" and stopped.generated_text.endswith(word)
    chat = openai_client.chat.completions.create(
        model=SMOLLM2,
        messages=[{"role": "user", "content": "Write one sentence about bread."}],
        max_tokens=30,
        stop=[word],
    )
    assert word not in chat.choices[0].message.content and chat.choices[0].finish_reason == "stop"


def test_two_adapters_loaded_at_run_time_change_the_answer(smollm2_server, adapters, client, openai_client):
    prompt = chat_prompt("lighthouses")
    base = client.text_generation(prompt, max_new_tokens=16)
    for name, folder in adapters.items():
        status, body = post(f"{smollm2_server.url}/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(folder)})
        assert status == 200, body
    terse = client.text_generation(prompt, max_new_tokens=16, adapter_id="terse")
    florid = client.text_generation(prompt, max_new_tokens=16, adapter_id="florid")
    assert len({base, terse, florid}) == 3
    # The same adapter again gives the same answer; OpenAI's `model` selects it too; the base is unchanged.
    assert client.text_generation(prompt, max_new_tokens=16, adapter_id="terse") == terse
    messages = [{"role": "user", "content": "Write one sentence about lighthouses."}]
    via_openai = openai_client.chat.completions.create(model="florid", messages=messages, max_tokens=16)
    via_hub = client.chat_completion(messages, model="florid", max_tokens=16)
    base_chat = client.chat_completion(messages, max_tokens=16)
    assert via_openai.choices[0].message.content == via_hub.choices[0].message.content
    assert via_hub.choices[0].message.content != base_chat.choices[0].message.content
    assert client.text_generation(prompt, max_new_tokens=16) == base
    assert {m.id for m in openai_client.models.list().data} == {SMOLLM2, "terse", "florid"}

    status, _ = post(f"{smollm2_server.url}/v1/unload_lora_adapter", {"lora_name": "terse"})
    assert status == 200
    with pytest.raises(HubValidationError, match="adapter `terse` is not loaded"):
        client.text_generation(prompt, max_new_tokens=4, adapter_id="terse")
    assert client.text_generation(prompt, max_new_tokens=16, adapter_id="florid") == florid
    post(f"{smollm2_server.url}/v1/unload_lora_adapter", {"lora_name": "florid"})
    assert client.text_generation(prompt, max_new_tokens=16) == base


def test_errors_have_tgis_shape(smollm2_server, client, openai_client):
    status, body = post(f"{smollm2_server.url}/generate", {"inputs": "hi", "parameters": {"adapter_id": "nowhere"}})
    assert status == 422 and body["error_type"] == "validation" and "nowhere" in body["error"]
    too_long = "tide " * (MAX_INPUT_TOKENS + 10)
    with pytest.raises(HubValidationError, match=f"must have less than {MAX_INPUT_TOKENS} tokens"):
        client.text_generation(too_long, max_new_tokens=4)
    status, body = post(f"{smollm2_server.url}/generate", {"inputs": "hi", "parameters": {"max_new_tokens": 5000}})
    assert status == 422 and "`inputs` tokens + `max_new_tokens` must be <=" in body["error"]
    status, body = post(f"{smollm2_server.url}/generate", {"inputs": "hi", "parameters": {"temperature": 0}})
    assert status == 422 and "temperature" in body["error"]
    with pytest.raises(UnprocessableEntityError):
        openai_client.chat.completions.create(model="nowhere", messages=QUESTION, max_tokens=4)


def test_eight_concurrent_requests_each_get_their_own_answer_in_one_batch(smollm2_server, client):
    subjects = ["gulls", "bread", "tides", "ferries", "fog", "granite", "winter", "nets"]
    alone = {s: client.text_generation(chat_prompt(s), max_new_tokens=12) for s in subjects}
    batches = metric(f"{smollm2_server.url}/metrics", "tgi_batch_next_size_count")
    together: dict[str, str] = {}
    barrier = threading.Barrier(len(subjects))

    def ask(subject: str) -> None:
        barrier.wait()
        together[subject] = client.text_generation(chat_prompt(subject), max_new_tokens=12)

    threads = [threading.Thread(target=ask, args=(s,)) for s in subjects]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert together == alone
    # Eight requests, fewer batches: they were generated together.
    assert metric(f"{smollm2_server.url}/metrics", "tgi_batch_next_size_count") - batches < len(subjects)


def test_tgi_metrics_move_by_exactly_what_was_sent(smollm2_server, client):
    url = f"{smollm2_server.url}/metrics"
    names = [
        "tgi_request_count",
        "tgi_request_success",
        "tgi_request_duration_count",
        "tgi_request_generated_tokens_sum",
        "tgi_request_input_length_count",
    ]
    before = {n: metric(url, n) for n in names}
    failures = metric(url, "tgi_request_failure", err="validation")
    generated = sum(
        client.text_generation(chat_prompt(s), max_new_tokens=n, details=True).details.generated_tokens
        for s, n in (("salt", 5), ("rope", 7), ("oars", 9))
    )
    post(f"{smollm2_server.url}/generate", {"inputs": "hi", "parameters": {"adapter_id": "nowhere"}})
    moved = {n: metric(url, n) - before[n] for n in names}
    assert moved == {
        "tgi_request_count": 4,
        "tgi_request_success": 3,
        "tgi_request_duration_count": 3,
        "tgi_request_generated_tokens_sum": generated,
        "tgi_request_input_length_count": 3,
    }
    assert metric(url, "tgi_request_failure", err="validation") - failures == 1
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    assert "\ntgi_request_count " in text and "tgi_request_count_total" not in text  # TGI's own name


def test_info_and_health_say_what_is_served(smollm2_server):
    import json

    info = json.loads(urllib.request.urlopen(f"{smollm2_server.url}/info", timeout=10).read())
    assert info["model_id"] == SMOLLM2 and info["max_input_tokens"] == MAX_INPUT_TOKENS
    assert info["model_dtype"] == "float32" and info["model_device_type"] == "cpu"
    assert urllib.request.urlopen(f"{smollm2_server.url}/health", timeout=10).status == 200
