# healthstream: the two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help venv lock test lint typecheck unit demo stack-up stack-down bench schemas clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

# Versions pinned by requirements.lock (as constraints: a dependency added to pyproject.toml
# and not yet pinned is still installed, unpinned, until `make lock`).
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e '.[dev,backtest]'
	touch $(STAMP)

venv: $(STAMP)  ## create .venv with the package, its [backtest] and [dev] extras, pinned

lock:  ## re-pin requirements.lock: resolve pyproject.toml afresh in a scratch venv
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install -q --upgrade pip
	.lock-venv/bin/pip install -q '.[dev,backtest]'
	{ sed -n '/^#/p' requirements.lock; .lock-venv/bin/pip freeze --exclude healthstream; } > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .lock-venv

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check streamer tests bench
	$(BIN)/ruff format --check streamer tests bench

typecheck: $(STAMP)  ## mypy on the package
	$(BIN)/mypy streamer

unit: $(STAMP)  ## fast tests only (no broker)
	$(BIN)/pytest -q -m "not integration"

test: $(STAMP)  ## the whole suite: ruff, mypy, unit and integration tests (starts Kafka and Redis)
	$(BIN)/ruff check streamer tests bench
	$(BIN)/ruff format --check streamer tests bench
	$(BIN)/mypy streamer
	$(BIN)/streamer schemas check
	$(BIN)/pytest -q

stack-up: $(STAMP)  ## start the local Kafka broker and Redis
	$(BIN)/streamer local up

stack-down: $(STAMP)  ## stop them
	$(BIN)/streamer local down

demo: $(STAMP)  ## the whole product on a local stack with a simulated portfolio (make demo ARGS="--port 8100")
	$(BIN)/streamer demo $(ARGS)

bench: $(STAMP)  ## benchmarks (on demand)
	$(BIN)/python bench/offline_throughput.py

schemas: $(STAMP)  ## re-export JSON Schema from the models
	$(BIN)/streamer schemas export

clean:  ## remove the venv and caches (keeps .cache with the Kafka jars)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
