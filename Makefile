# AIDG: two commands for a newcomer, `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# When a dependency needs torch, pin it in this same install line: torch==2.13.0
# (the CPU wheel on local disk; any other version pulls a multi-GB CUDA build).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

.PHONY: install demo test check clean
install: $(STAMP)

demo: install
	$(BIN)/aidg demo

test: install
	$(BIN)/python -m pytest

check: install
	$(BIN)/ruff check src tests
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
