PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck docs pytest fuzz bench system-packages memcached clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip setuptools wheel

$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install -e '.[test,bench]'
	touch $(STAMP)

# The system packages the tests use: servers they start on free ports of their
# own (memcached, redis-server, which brings redis-cli) and the browser the demo
# is driven with (chromium). Installed only when missing.
SYSTEM_PACKAGES := memcached:memcached redis-server:redis-server redis-cli:redis-server \
	chromium:chromium chromedriver:chromium-driver

system-packages:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do \
		command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		apt-get update && apt-get install -y $$missing; \
	fi

memcached: system-packages

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict wsgi_session

# The documentation site (mkdocs.yml, docs/) into site/; any warning fails the build.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

pytest: $(STAMP) system-packages
	$(BIN)/pytest

# Hostile Cookie headers against every store and adapter (tests/fuzz_cookies.py).
fuzz: $(STAMP) system-packages
	cd tests && ../$(BIN)/python fuzz_cookies.py

test: lint typecheck docs pytest fuzz

demo: $(STAMP)
	$(BIN)/wsgi-session demo --host 127.0.0.1 --port 8000

# The HTTP section loads gunicorn with wrk, and --instructions counts under valgrind's
# callgrind; each installed here only when missing.
bench: $(STAMP) system-packages
	@command -v wrk >/dev/null 2>&1 || { echo "installing wrk"; apt-get update && apt-get install -y wrk; }
	@command -v valgrind >/dev/null 2>&1 || { echo "installing valgrind"; apt-get update && apt-get install -y valgrind; }
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) site build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
