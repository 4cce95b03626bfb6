# The README's quick start: `make serve` and `make test` on a fresh clone. Both create ./.venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: serve test lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.serve-installed: $(BIN)/python pyproject.toml setup.py
	$(BIN)/python -m pip install --quiet -e '.[server,redis]'
	touch $@

$(VENV)/.dev-installed: $(BIN)/python pyproject.toml setup.py
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.serve-installed

serve: $(VENV)/.serve-installed
	$(BIN)/ccproxy-asgi serve

test: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -q

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check ccproxy_asgi tests bench examples tools

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy --strict ccproxy_asgi tests tools

clean:
	rm -rf $(VENV) build *.egg-info ccproxy_asgi/_cython/*.c ccproxy_asgi/_cython/*.so
