# AIDG: two commands for a newcomer, `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# torch is pinned in the same install line as everything that depends on it:
# 2.13.0 is the CPU wheel on local disk; any other version pulls a multi-GB CUDA build.
TORCH := torch==2.13.0
OBP   := obp==0.5.7

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check $(TORCH) -e '.[dev,all]'
	# Open Bandit Pipeline, the off-policy-evaluation cross-check: it declares Python < 3.11 and
	# torch 1.12, so a plain install drags a CUDA torch; it imports and runs fine without them
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --ignore-requires-python $(OBP)
	@touch $(STAMP)

.PHONY: install demo test test-all check bench-service bench-rollout faults soak protections clean
install: $(STAMP)

demo: install
	$(BIN)/aidg demo

# the dashboard's browser test drives Debian's chromium through Playwright (never `playwright install`)
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

# tests marked `heavy` (end-to-end runs over ~20 s: benches, drills, fuzzing, the demo) run in `make faults` and
# `make test-all`; `make test` stays under 10 minutes on 2 cores
test: install $(CHROMIUM)
	$(BIN)/python -m pytest -m "not heavy"

test-all: install $(CHROMIUM)
	$(BIN)/python -m pytest

check: install
	$(BIN)/ruff check src tests
	$(BIN)/mypy
	$(BIN)/lint-imports

# the service benchmark drives load with wrk (Debian's package) when it can, else with its own asyncio client
bench-service: install
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) || echo "no wrk: bench/service.py uses its asyncio client"
	$(BIN)/python bench/service.py

# rollback drills: 20 faulty (10 % of the challenger's requests fail) and 20 healthy challengers
bench-rollout: install
	$(BIN)/python bench/rollout.py

# the fault suite at full size (~30 min): the heavy fault tests, then fuzzing 1,000 cases per operation,
# 100k events through Redis Streams with the worker kill -9-ed 50 times (1 and 2 workers), Redis and
# PostgreSQL each stopped 30 s under load
faults: install
	$(BIN)/python -m pytest -m heavy
	$(BIN)/python bench/faults.py

# 30 minutes of mixed traffic (not in CI): memory growth <= 10 %, p95 drift <= 20 %, 0 errors; plots soak.png
soak: install
	$(BIN)/python bench/soak.py

# each fault protection removed in turn (in a temp copy): the test that guards it must then fail (~25 min)
protections: install
	$(BIN)/python bench/protections.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
