PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Every tool, test, benchmark and docs dependency at the version `make lock` chose.
# Users of the library get the ranges of setup.cfg, never these pins.
LOCK := requirements/dev.lock
DEV_STAMP := $(VENV)/.dev-installed
DEMO_STAMP := $(VENV)/.demo-installed

.PHONY: demo test lint typecheck docs pytest fuzz bench lock compat system-packages build-packages dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The package alone, its runtime dependencies held to the lock's versions: what the demo needs.
$(DEMO_STAMP): $(BIN)/python $(LOCK) setup.cfg pyproject.toml
	$(BIN)/pip install -c $(LOCK) setuptools wheel
	$(BIN)/pip install --no-build-isolation -c $(LOCK) -e .
	touch $@

# The development set exactly as locked, then the package on top of it without resolving
# anything again: what the registry serves later cannot change what gets installed here.
$(DEV_STAMP): $(BIN)/python $(LOCK) setup.cfg pyproject.toml | build-packages
	$(BIN)/pip install -r $(LOCK)
	$(BIN)/pip install --no-deps --no-build-isolation -e .
	touch $@

dev: $(DEV_STAMP)

# Re-resolve the development set from setup.cfg's ranges (every extra, every Python from
# 3.10 on), keeping the pins that still fit; `make lock LOCK_FLAGS=--upgrade` moves every
# pin to the newest release. The only ways a pinned version moves.
lock: $(DEV_STAMP)
	$(BIN)/uv pip compile setup.cfg --all-extras --universal --python-version 3.10 \
		--quiet --output-file $(LOCK) $(LOCK_FLAGS)

# Debian's packages the tests use, installed only when missing: the servers the fixtures
# start on free loopback ports (memcached; redis-server, which brings redis-cli; PostgreSQL;
# MariaDB) and the browser the demo is driven with. Each entry is "what to look for:package".
SYSTEM_PACKAGES := memcached:memcached redis-server:redis-server redis-cli:redis-server \
	chromium:chromium chromedriver:chromium-driver \
	/usr/lib/postgresql/*/bin/initdb:postgresql /usr/sbin/mariadbd:mariadb-server
# What a dependency in the lock compiles against (mysqlclient, Django's MariaDB driver).
BUILD_PACKAGES := /usr/include/mariadb/mysql.h:libmariadb-dev pkg-config:pkg-config

define apt_install_missing
	@missing=""; for pair in $(1); do \
		want="$${pair%%:*}"; \
		command -v "$$want" >/dev/null 2>&1 || ls $$want >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	fi
endef

system-packages:
	$(call apt_install_missing,$(SYSTEM_PACKAGES))

build-packages:
	$(call apt_install_missing,$(BUILD_PACKAGES))

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(DEV_STAMP)
	$(BIN)/mypy --strict wsgi_session

# The documentation site (mkdocs.yml, docs/) into site/; any warning fails the build.
docs: $(DEV_STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

pytest: $(DEV_STAMP) system-packages
	$(BIN)/pytest

# Hostile Cookie headers against every store and adapter (tests/fuzz_cookies.py).
fuzz: $(DEV_STAMP) system-packages
	cd tests && ../$(BIN)/python fuzz_cookies.py

test: lint typecheck docs pytest fuzz

demo: $(DEMO_STAMP)
	$(BIN)/wsgi-session demo --host 127.0.0.1 --port 8000

# The test suite in throw-away virtualenvs at the lowest versions setup.cfg allows and at
# the newest the registry serves (runtime dependencies and integrations); not part of
# `make test`, since a release upstream must not turn it red.
compat: $(DEV_STAMP) system-packages
	$(BIN)/python scripts/compat.py

# The HTTP section loads gunicorn with wrk, and --instructions counts under valgrind's
# callgrind; each installed here only when missing.
bench: $(DEV_STAMP) system-packages
	$(call apt_install_missing,wrk:wrk valgrind:valgrind)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) site build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
