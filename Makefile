# The two set-up commands (README): `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test sandbox lint typecheck bench-sandbox clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(PY) -m bot run

sandbox: $(VENV)/.installed
	$(PY) -m bot sandbox

test: $(VENV)/.installed
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check bot tests
	$(VENV)/bin/ruff format --check bot tests

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

bench-sandbox: $(VENV)/.installed
	$(PY) -m bench.sandbox_capacity

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
