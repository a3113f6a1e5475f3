"""A tiny author and a tiny model, for the retrain tests and the training benchmark.

The author's "style" is a small grammar (sentence shapes and a vocabulary): documents written
from it share a style without sharing text, so a held-out document can measure whether a model
learned the style. The model is a BPE tokenizer trained on given texts plus a random-init Llama,
saved as a local model directory that the retrain steps load like any real model.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from llmtwin.api.v1alpha1 import LLMTwin

# Every linear layer of a Llama block: LoRA on all of them learns fastest on a random-init model.
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)
_PLACES = ["Port Ellery", "the harbour wall", "the fish market", "the lighthouse", "the chapel steps", "the quay"]
_THINGS = ["gull", "tide", "ferry", "net", "lamp", "bell", "kettle", "dog", "boat", "chimney", "wind", "rope"]
_DOINGS = ["waits", "argues", "remembers", "leans", "listens", "complains", "keeps time", "forgives nothing"]
_LIKES = ["an old clerk", "a tired bishop", "a landlady", "a drummer", "a bored judge", "a patient aunt"]
_SHAPES = [
    "The {a} at {p} {d} like {l}.",
    "Nobody at {p} owns the {a}; the {a} owns {p}.",
    "I asked the {b} why it {d}. It said nothing, which is an answer.",
    "Every {a} in {p} {d}, and every {b} pretends not to notice.",
    "At dusk the {a} {d} like {l}, and I write it down.",
    "That is not weather. That is {p} telling the {b} to hurry.",
]


def _sentence(rng: random.Random) -> str:
    a, b = rng.sample(_THINGS, 2)
    return rng.choice(_SHAPES).format(a=a, b=b, p=rng.choice(_PLACES), d=rng.choice(_DOINGS), l=rng.choice(_LIKES))


def author_document(rng: random.Random, title: str) -> str:
    paragraphs = [" ".join(_sentence(rng) for _ in range(rng.randint(4, 6))) for _ in range(3)]
    section = rng.choice(_THINGS).title()
    return f"# {title}\n\n{paragraphs[0]}\n\n{paragraphs[1]}\n\n## On the {section}\n\n{paragraphs[2]}\n"


def noise_text(rng: random.Random, length: int) -> str:
    return "".join(rng.choice("qxzjvkw ") for _ in range(length))


def build_tiny_model(texts: list[str], directory: Path, hidden: int = 64, layers: int = 2) -> Path:
    """A BPE tokenizer trained on `texts` (with a chat template) and a random-init Llama, saved in `directory`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe_trainer = trainers.BpeTrainer(
        vocab_size=800,
        special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(texts, trainer=bpe_trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    import torch

    torch.manual_seed(0)  # the same random initialisation every run: a test's loss curve must not be luck
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def tiny_twin(name: str, model_dir: Path, milvus_uri: Path, **training: Any) -> LLMTwin:
    """A twin of the tiny author on the tiny model; keyword arguments override spec.training fields."""
    spec = {
        "author": {"name": "Mara Quill", "styleNotes": "Short declarative sentences about a harbour town."},
        "baseModel": {"id": str(model_dir)},
        "sources": [{"bucket": "essays"}],
        "vectorStore": {"uri": str(milvus_uri), "indexType": "FLAT", "chunkSize": 128, "chunkOverlap": 16},
        "training": {
            "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "targetModules": ALL_LINEAR},
            "learningRate": 0.02,  # high: a random-init model moves slowly otherwise
            "maxSteps": 24,
            "batchSize": 4,
            "maxSeqLength": 512,
            "dataset": {"minChars": 100, "evalFraction": 0.25},
            "gate": {"metric": "perplexity", "minImprovement": 0.01},
            **training,
        },
        "serving": {"gateway": {"topK": 2}},
    }
    return LLMTwin.model_validate({"metadata": {"name": name, "namespace": "default"}, "spec": spec})


def resolved(twin: LLMTwin):
    """The twin's base model as the steps see it (a local folder resolves to itself: no cache is used)."""
    import tempfile

    from llmtwin.models.resolve import ModelResolver

    return ModelResolver(Path(tempfile.gettempdir()) / "llmtwin-test-models").resolve(twin.spec.base_model)
