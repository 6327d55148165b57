# healthstream: the two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help venv core lock test test-pure lint typecheck unit demo stack-up stack-down bench schemas clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

# Versions pinned by requirements.lock (as constraints: a dependency added to pyproject.toml
# and not yet pinned is still installed, unpinned, until `make lock`).
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e '.[dev,backtest]'
	touch $(STAMP)

# The scoring core compiled with mypyc (streamer/native.py): rebuilt whenever a source changes;
# without a C compiler it prints one line and the pure-Python core runs (BUILD.json stays absent).
CORE_SOURCES := $(filter-out streamer/core/__init__.py streamer/core/config.py,$(wildcard streamer/core/*.py))
CORE  := streamer/core/_compiled/BUILD.json
READY := $(STAMP) $(CORE)

$(CORE): $(STAMP) $(CORE_SOURCES) streamer/native.py
	$(BIN)/python -m streamer.native

venv: $(READY)  ## create .venv with the package, its [backtest] and [dev] extras, pinned, and compile the core

core: $(READY)  ## compile the scoring core with mypyc when a source changed (`make venv` does it)

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

# The suite runs in this many processes (pytest-xdist): the integration tests mostly wait on the
# broker and on paced replays, so two use a 2-core machine; each deployment has its own topics,
# consumer group and Redis keys, and the processes share one local stack (tests/integration/conftest.py).
JOBS ?= 2
PYTEST := $(BIN)/pytest -q -n $(JOBS) --dist worksteal

unit: $(READY)  ## fast tests only (no broker)
	$(PYTEST) -m "not integration"

# The tests that run the scoring core once more on the pure-Python core, so both cores stay
# correct and give the same answers: the core's own, the state codec over its structures, the
# offline runner, and the scorer's stream-equals-offline tests. Not those of the Kafka adapter,
# the offline processes' orchestration or file sorting, which never reach a core module.
PURE_TESTS := tests/core tests/state tests/offline/test_runner.py tests/offline/test_poison.py \
	tests/stream/test_scorer.py tests/stream/test_poison_stream.py tests/stream/test_identity_stream.py \
	tests/stream/test_copies_once.py tests/stream/test_dead_letters_once.py \
	tests/stream/test_checkpoint.py tests/stream/test_accounts.py

test: $(READY)  ## the whole suite (compiled core), then the core's tests on the pure-Python core (make test JOBS=4)
	$(BIN)/ruff check streamer tests bench
	$(BIN)/ruff format --check streamer tests bench
	$(BIN)/mypy streamer
	$(BIN)/streamer schemas check
	$(PYTEST)
	HEALTHSTREAM_PURE_CORE=1 $(PYTEST) -m "not integration" $(PURE_TESTS)

test-pure: $(READY)  ## the core's unit and stream-equals-offline tests on the pure-Python core
	HEALTHSTREAM_PURE_CORE=1 $(PYTEST) -m "not integration" $(PURE_TESTS)

stack-up: $(STAMP)  ## start the local Kafka broker and Redis
	$(BIN)/streamer local up

stack-down: $(STAMP)  ## stop them
	$(BIN)/streamer local down

demo: $(READY)  ## the whole product on a local stack with a simulated portfolio (make demo ARGS="--port 8100")
	$(BIN)/streamer demo $(ARGS)

bench: $(READY)  ## benchmarks (on demand)
	$(BIN)/python bench/offline_throughput.py

schemas: $(STAMP)  ## re-export JSON Schema from the models
	$(BIN)/streamer schemas export

clean:  ## remove the venv, the compiled core and caches (keeps .cache with the Kafka jars)
	rm -rf $(VENV) streamer/core/_compiled .mypy_cache .ruff_cache .pytest_cache
