# Two commands: `make run` (the embedded demo) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA_DIR ?= var
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install migrate seed worker lint bench-limiter services-test services-worker-test prod-check \
	schemathesis browser-deps clean
PYTEST_FLAGS ?=

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

# The embedded default: SQLite and the filesystem broker under $(DATA_DIR), one real Celery
# worker beside the web server, the sandbox portal served by the web process.
run: export DEBUG ?= 1
run: export DATA_DIR := $(abspath $(DATA_DIR))
run: export SANDBOX_BASE_URL ?= http://$(HOST):$(PORT)
run: export SITE_URL ?= http://$(HOST):$(PORT)
run: install
	mkdir -p $(DATA_DIR)
	$(PY) -m controlplane.envfile .env
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	@set -e; \
	$(VENV)/bin/celery -A controlplane worker --loglevel=INFO --concurrency=2 --beat \
	    --schedule=$(DATA_DIR)/celerybeat-schedule & worker=$$!; \
	trap 'kill $$worker 2>/dev/null; wait $$worker 2>/dev/null' EXIT INT TERM; \
	echo "Serving on http://$(HOST):$(PORT)/ (admin: /admin/, API: /api/v1/) — Ctrl-C stops web and worker"; \
	$(PY) manage.py runserver --noreload $(HOST):$(PORT)

# Playwright drives Debian's chromium; nothing downloads a browser build.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: sudo apt-get install chromium" >&2; exit 1; fi; }

test: install browser-deps
	$(PY) -m pytest -q -n 2 --dist loadfile tests --ignore=tests/services

# Needs DATABASE_URL (PostgreSQL) and CELERY_BROKER_URL (Redis/RabbitMQ): see tests/services/README.md.
# The sandbox's concurrency test needs blocking row locks, so it runs here, on PostgreSQL.
services-test: install
	$(PY) -m pytest -q $(PYTEST_FLAGS) tests/services tests/integration/core/test_hostile_corpus.py \
	    tests/integration/sandbox/test_live_http.py::test_bucket_is_exact_under_concurrent_requests

# The worker tests alone, e.g. again with CELERY_BROKER_URL=amqp://... (.ci/run runs both brokers).
services-worker-test: install
	$(PY) -m pytest -q $(PYTEST_FLAGS) tests/services/test_plan_execution.py

# A virtualenv from requirements.txt alone runs the production configuration (.ci/run).
prod-check:
	bash .ci/prod-check

# Lint and a security scan: ruff, and bandit with no medium or high finding (.ci/run).

# Serves the app on a free local port with a seeded agent token and runs schemathesis (every
# check, bounded examples) against the served OpenAPI document: tests/contract/run_schemathesis.py.
schemathesis: install
	$(PY) tests/contract/run_schemathesis.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/bandit -q -r apps controlplane -ll

bench-limiter: install
	$(PY) bench/limiter_bench.py

clean:
	rm -rf $(VENV) $(DATA_DIR)
