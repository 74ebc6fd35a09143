# Two commands: `make run` (the embedded demo) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA_DIR ?= var
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install migrate seed worker lint bench-limiter mutate services-test services-worker-test \
	prod-check schemathesis browser-deps clean
PYTEST_FLAGS ?=

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

# The embedded default: SQLite and the filesystem broker under $(DATA_DIR), one real Celery
# worker beside the web server, the sandbox portal served by the web process. The web server is
# the production one (uvicorn, ASGI: long polls hold no worker); in DEBUG it serves static files.
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
	$(VENV)/bin/uvicorn controlplane.asgi:application --host $(HOST) --port $(PORT) --lifespan off

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

# Mutation testing (mutmut, pinned in requirements-dev.txt), not part of every CI run: slow. Each
# module is mutated in its own scratch copy of HEAD under $(DATA_DIR)/mutate (mutmut 2 edits files
# in place) against the tests that guard it; `make mutate MUTATE_ONLY=redact` runs one entry.
# Results: $(DATA_DIR)/mutate/<name>.txt (`mutmut results`); the score is in bench/README.md. Decorator
# mutants are off (here they only resize lru_caches). Each set is the narrowest fast one that guards
# its module (seconds per run, SQLite in memory, no browser, no lifecycle state machine: too slow
# and load-sensitive to run once per mutant). apps/policy is one entry per file (policy_decide ...
# policy_packs), each against the policy unit set (not test_catalog.py: it needs ../shared beside the
# checkout, and catalog.py is not mutated) with its own test file first.
MUTATE_TARGETS ?= \
	redact=apps/bitrix/redact.py=tests/unit/bitrix/test_redact_secrets.py,tests/unit/bitrix/test_urls_and_logging.py \
	crypto=apps/portals/crypto.py=tests/unit/portals,tests/integration/portals/test_rotate_keys.py,tests/integration/portals/test_rotate_keys_mutants.py \
	states=apps/plans/states.py=tests/unit/plans/test_state_errors.py,tests/integration/plans/test_states.py,tests/integration/plans/test_states_mutants.py,tests/integration/plans/test_plan_decide.py \
	idempotency=apps/plans/idempotency.py=tests/integration/plans/test_idempotency_mutants.py,tests/integration/plans/test_plan_submit.py,tests/integration/plans/test_api_flow.py,tests/integration/plans/test_tasks.py \
	executor=apps/plans/executor.py=tests/integration/plans/test_executor_batch_mutants.py,tests/integration/plans/test_executor_settle_together.py,tests/integration/plans/test_executor_integrity.py,tests/integration/plans/test_executor.py,tests/integration/plans/test_executor_batch.py,tests/integration/plans/test_executor_mutants.py,tests/integration/plans/test_query_counts.py,tests/integration/approvals/test_stale_and_revert.py \
	selectors=apps/plans/selectors.py=tests/integration/plans/test_selectors_mutants.py,tests/integration/plans/test_decision_rights.py,tests/integration/plans/test_api_flow.py \
	services=apps/plans/services.py=tests/integration/plans/test_plan_submit.py,tests/integration/plans/test_plan_decide.py,tests/integration/plans/test_tasks.py,tests/integration/plans/test_reconcile.py \
	policy_decide=apps/policy/decide.py=tests/unit/policy/test_decide.py,tests/unit/policy/test_risk.py,tests/unit/policy/test_normalize.py,tests/unit/policy/test_batchparse.py,tests/unit/policy/test_packs.py,tests/unit/policy/test_properties.py \
	policy_risk=apps/policy/risk.py=tests/unit/policy/test_risk.py,tests/unit/policy/test_decide.py,tests/unit/policy/test_normalize.py,tests/unit/policy/test_batchparse.py,tests/unit/policy/test_packs.py,tests/unit/policy/test_properties.py \
	policy_normalize=apps/policy/normalize.py=tests/unit/policy/test_normalize.py,tests/unit/policy/test_decide.py,tests/unit/policy/test_risk.py,tests/unit/policy/test_batchparse.py,tests/unit/policy/test_packs.py,tests/unit/policy/test_properties.py \
	policy_batchparse=apps/policy/batchparse.py=tests/unit/policy/test_batchparse.py,tests/unit/policy/test_decide.py,tests/unit/policy/test_risk.py,tests/unit/policy/test_normalize.py,tests/unit/policy/test_packs.py,tests/unit/policy/test_properties.py \
	policy_packs=apps/policy/packs.py=tests/unit/policy/test_packs.py,tests/unit/policy/test_decide.py,tests/unit/policy/test_risk.py,tests/unit/policy/test_normalize.py,tests/unit/policy/test_batchparse.py,tests/unit/policy/test_properties.py \
	audit=apps/audit/services.py=tests/integration/audit/test_audit_chain.py,tests/integration/audit/test_audit_masking.py,tests/integration/audit/test_audit_secrets.py,tests/integration/audit/test_audit_checkpoint.py,tests/integration/audit/test_audit_export.py,tests/integration/audit/test_audit_mutants.py
MUTATE_ONLY ?=
# mutmut 2.5.1 sometimes loses a mutant in its cache ("Attribute Mutant.line is required") and then
# waits forever: each run is cut at MUTATE_TIMEOUT seconds and resumed from its cache. A cut run
# leaves the mutant it was testing in the file, and the resumed run would test every later mutant on
# top of it (and register the mutated lines as new ones): the mutated files are restored first.
MUTATE_TIMEOUT ?= 1800
mutate: install
	@set -e; mkdir -p $(DATA_DIR)/mutate; \
	for entry in $(MUTATE_TARGETS); do \
	  name=$${entry%%=*}; rest=$${entry#*=}; paths=$${rest%%=*}; tests=$$(echo "$${rest#*=}" | tr , ' '); \
	  if [ -n "$(MUTATE_ONLY)" ] && ! echo " $(MUTATE_ONLY) " | grep -q " $$name "; then continue; fi; \
	  dir=$(abspath $(DATA_DIR))/mutate/$$name; rm -rf $$dir; mkdir -p $$dir; \
	  rev=$$(git rev-parse HEAD); git archive $$rev | tar -x -C $$dir; ln -s $(abspath $(VENV)) $$dir/.venv; \
	  echo "== mutmut: $$paths against $$tests"; \
	  (cd $$dir && for try in 1 2 3 4 5 6 7 8; do \
	     git -C $(CURDIR) archive $$rev $$(echo "$$paths" | tr , ' ') | tar -x -C $$dir; \
	     timeout $(MUTATE_TIMEOUT) .venv/bin/mutmut run --paths-to-mutate "$$paths" --no-progress --simple-output \
	       --disable-mutation-types=decorator --runner ".venv/bin/python -m pytest -x -q -p no:cacheprovider $$tests" \
	       > ../$$name.log 2>&1 || true; \
	     .venv/bin/mutmut results > ../$$name.txt 2>&1 || true; \
	     grep -q "^Untested" ../$$name.txt || break; \
	   done); \
	  grep -E "^(Survived|Timed out|Suspicious|Untested|Killed)" $(DATA_DIR)/mutate/$$name.txt || head -5 $(DATA_DIR)/mutate/$$name.txt; \
	done

bench-limiter: install
	$(PY) bench/limiter_bench.py

clean:
	rm -rf $(VENV) $(DATA_DIR)
