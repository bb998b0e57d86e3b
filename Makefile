# Two commands for a fresh clone: `make demo` runs the CRM example end to end, `make test` the suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install bench clean

$(BIN)/bastion: pyproject.toml setup.py src/bastion/sandbox/_spawn.c
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,bench]"
	@touch $(BIN)/bastion

install: $(BIN)/bastion

demo: $(BIN)/bastion
	$(BIN)/bastion demo

test: $(BIN)/bastion
	$(BIN)/python -m pytest -q

bench: $(BIN)/bastion
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/sandbox.py

clean:
	rm -rf $(VENV) .bastion .pytest_cache
