PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck docs pytest bench memcached clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip setuptools wheel

$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install -e '.[test,bench]'
	touch $(STAMP)

# memcached is a system package; the tests start their own servers on free ports.
memcached:
	@command -v memcached >/dev/null 2>&1 || { \
		echo "installing memcached"; \
		apt-get update && apt-get install -y memcached; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict wsgi_session

# The documentation site (mkdocs.yml, docs/) into site/; any warning fails the build.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

pytest: $(STAMP) memcached
	$(BIN)/pytest

test: lint typecheck docs pytest

demo: $(STAMP)
	$(BIN)/wsgi-session demo --host 127.0.0.1 --port 8000

bench: $(STAMP) memcached
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) site build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
