# wastesort: the few commands a developer needs. `make help` lists them.
UV_VERSION ?= 0.13.9
UV ?= uv
DATA ?= ../shared/data/trashnet
# `dvc exp show` columns that are not headline metrics or params: deps and outs' hashes

.PHONY: help setup setup-gpu browser postgres test test-fast exps lint format deps repro-trashnet serve tracking-server bench lock

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

setup:  ## build .venv from uv.lock (installs uv if missing), seed the Keras weights cache, link data/raw
	@command -v $(UV) >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) sync --frozen --compile-bytecode
	@scripts/seed_keras_cache.sh
	@scripts/link_data.sh

setup-gpu:  ## as setup, plus TensorFlow's CUDA libraries for NVIDIA GPUs (the `gpu` extra)
	@command -v $(UV) >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) sync --frozen --compile-bytecode --extra gpu
	@scripts/seed_keras_cache.sh
	@scripts/link_data.sh

postgres:  ## Debian's PostgreSQL server programs, for `make tracking-server` (needs root or sudo)
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql; }

browser:  ## Debian's chromium for the upload-page test (needs root or sudo)
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

test:  ## the whole test suite (same command as the README and CI)
	$(UV) run pytest

test-fast:  ## the edit loop: tests/code, data and model without the slow ones (no pipeline, no servers)
	$(UV) run pytest -m "not slow" tests/code tests/data tests/model

exps:  ## compare experiments: the params that differ first, then the headline metrics (fits 160 columns)
	$(UV) run python scripts/exps.py

lint:  ## ruff: lint and format check (CI runs it)
	$(UV) run ruff check .
	$(UV) run ruff format --check .

format:  ## ruff: fix what it can and format the code
	$(UV) run ruff check --fix .
	$(UV) run ruff format .

deps:  ## rewrite each DVC stage's code deps from its imports (tests/code/test_stage_deps.py checks them)
	$(UV) run python scripts/stage_deps.py --write

repro-trashnet:  ## run the whole pipeline on DATA (default ../shared/data/trashnet)
	$(UV) run dvc exp run -q -S data.path=$(DATA)

serve:  ## serve the registered champion model on http://127.0.0.1:3000
	$(UV) run bentoml serve

tracking-server:  ## a team's MLflow server: PostgreSQL in .tracking/, artifacts proxied, on :5000
	$(UV) run python -m wastesort.tracking.server --host $${HOST:-127.0.0.1} --port $${PORT:-5000}

bench:  ## the real pipeline on DATA, timed per stage, into benchmarks/results/
	$(UV) run python benchmarks/pipeline.py --data $(DATA)

lock:  ## re-resolve uv.lock after editing pyproject.toml
	$(UV) lock
