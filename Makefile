# The words a newcomer expects. Every target installs what it needs first (idempotent, fast when done).
SHELL := /bin/bash
UV_VERSION := 0.13.8
PYTHON ?= python3
UV := .tools/uv/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
SAM := tools/sam.sh

.PHONY: help setup browser dev demo bench openapi test test-unit test-integration test-e2e lint format validate build deploy delete layer-requirements clean

help:
	@echo "Run it"
	@echo "  make dev      the service on http://127.0.0.1:3000 against the real exchanges (no AWS, no Docker)"
	@echo "  make demo     the same against the exchange simulators: works offline (docs/local.md)"
	@echo "  make invoke   one function's handler on one event file, its answer on stdout (no Docker):"
	@echo "                make invoke EVENT=events/prices_get.json [FUNCTION=PricesApiFunction] [TIMEOUT=15]"
	@echo "Test and check"
	@echo "  make test     lint, sam validate --lint, sam build, then unit, integration and end-to-end tests"
	@echo "  make test-unit, make test-integration, make test-e2e    one layer of tests"
	@echo "  make lint     ruff and mypy;  make format   ruff format and fixes"
	@echo "  make validate sam validate (with --lint) and checkov"
	@echo "  make bench    benchmarks against their limits (read, cold, fetch, freshness, writes, stream, cost); prints a table"
	@echo "Build and deploy"
	@echo "  make build    sam build, then bytecode"
	@echo "  make deploy   build, then deploy ENV's stack (docs/operations.md#deploy);  make delete   delete it"
	@echo "Maintain"
	@echo "  make setup    install the virtualenv and the SAM CLI (every target installs what it needs)"
	@echo "  make browser  Debian's Chromium and ChromeDriver for the page's end-to-end tests (make test does)"
	@echo "  make openapi  regenerate the whitelist routes' description the prices function serves"
	@echo "  make layer-requirements   the shared layer's requirements.txt, from the lock file"
	@echo "  make clean    remove build output and caches"
	@echo "Variables"
	@echo "  PORT=3001           the local HTTP API's port (dev, demo; default 3000)"
	@echo "  SIMULATOR_PORT=8001 the Binance simulator's port (demo; default a free port)"
	@echo "  ADMIN_TOKEN=...     the admin routes' bearer token (dev, demo; default: one made in .local/admin-token)"
	@echo "  ARGS='--emf --json-logs'  more options: dev and demo take --emf (print the raw EMF metric"
	@echo "                      documents) and --json-logs (the functions' logs as JSON); invoke takes"
	@echo "                      --simulator, --fresh, --emf, --json-logs"
	@echo "  EVENT=, FUNCTION=, TIMEOUT=  invoke: the event file, the function (default: the one the event"
	@echo "                      is for), the seconds its context gives it (default: its Timeout)"
	@echo "  SCENARIOS='read cold'   bench: the scenarios to run (default: all)"
	@echo "  ENV=prod            deploy, delete: the samconfig.toml environment (default dev)"
	@echo "  Any setting of docs/configuration.md, e.g. FETCH_INTERVAL_MS=2000 make demo"

# --- set-up --------------------------------------------------------------------------------------
$(UV):
	$(PYTHON) -m venv .tools/uv
	.tools/uv/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet
	@touch $@

.tools/sam/.installed: $(UV) tools/sam-cli.lock
	$(UV) venv --quiet --allow-existing --python $(PYTHON) .tools/sam
	VIRTUAL_ENV=.tools/sam $(UV) pip install --quiet --require-hashes -r tools/sam-cli.lock
	@touch $@

.tools/checkov/.installed: $(UV) tools/checkov.lock
	$(UV) venv --quiet --allow-existing --python $(PYTHON) .tools/checkov
	VIRTUAL_ENV=.tools/checkov $(UV) pip install --quiet --require-hashes -r tools/checkov.lock
	@touch $@

setup: $(VENV)/.synced .tools/sam/.installed

# --- run -----------------------------------------------------------------------------------------
dev: $(VENV)/.synced
	$(PY) -m local_stack $(ARGS)

demo: $(VENV)/.synced
	$(PY) -m local_stack --simulator $(ARGS)

# Like `sam local invoke`, without Docker: the answer alone on stdout (the recipe is not echoed),
# logs on stderr. Against a running `make dev`/`make demo` when there is one (docs/local.md).
.PHONY: invoke
invoke: $(VENV)/.synced
	@if [ -z "$(EVENT)" ]; then \
		echo "usage: make invoke EVENT=events/prices_get.json [FUNCTION=PricesApiFunction] [TIMEOUT=15] [ARGS=--fresh]" >&2; \
		exit 2; \
	fi
	@$(PY) -m local_stack.invoke "$(EVENT)" $(if $(FUNCTION),--function "$(FUNCTION)") \
		$(if $(TIMEOUT),--timeout "$(TIMEOUT)") $(ARGS)

# --- measure -------------------------------------------------------------------------------------
# Figures for this machine against the service's limits; outside CI (see bench/ and the README).
bench: $(VENV)/.synced
	$(PY) -m bench $(SCENARIOS)

# --- test ----------------------------------------------------------------------------------------
test: setup lint validate build browser
	$(PY) -m pytest tests/unit tests/integration tests/e2e

# Debian's Chromium and ChromeDriver, for the live page's tests.
browser:
	tools/browser.sh

test-unit: $(VENV)/.synced
	$(PY) -m pytest tests/unit

test-integration: $(VENV)/.synced
	$(PY) -m pytest tests/integration

test-e2e: $(VENV)/.synced browser
	$(PY) -m pytest tests/e2e

lint: $(VENV)/.synced
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy layers/common functions/fetcher functions/prices_api functions/whitelist functions/stream \
		functions/broadcaster local_stack
	$(VENV)/bin/mypy clients/python/market_data_client

format: $(VENV)/.synced
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The layer's requirements are exported from the lock, so the deployed versions are the tested ones.
# botocore and its own dependencies (pulled in by the X-Ray SDK) come with the Lambda runtime.
RUNTIME_PROVIDED := botocore python-dateutil six urllib3
layer-requirements: $(UV)
	$(UV) export --frozen --no-dev --no-hashes --no-header --no-annotate --quiet \
		$(foreach package,$(RUNTIME_PROVIDED),--no-emit-package $(package)) -o layers/common/requirements.txt

# The whitelist routes' description, generated from their code, for the prices function to serve
# within the API's one description (it cannot import the whitelist package). A test checks it is current.
openapi: $(VENV)/.synced
	PYTHONPATH=layers/common:functions/whitelist POWERTOOLS_SERVICE_NAME=openapi $(PY) -c \
		"import json; from whitelist.handler import describe; print(json.dumps(describe(), indent=1, sort_keys=True))" \
		> layers/common/market_data/whitelist_openapi.json

# --- SAM -----------------------------------------------------------------------------------------
# Both: --lint runs cfn-lint only; the plain run translates the template as CloudFormation's
# transform will (it catches e.g. an AWS_IAM route on an API that does not enable IAM).
validate: .tools/sam/.installed .tools/checkov/.installed
	$(SAM) validate
	$(SAM) validate --lint
	tools/checkov.sh

# sam build ships source only, and Lambda's code directories are read-only: without bytecode in
# the package every cold start compiles every module it imports (3x the prices function's cold
# start; see the README's benchmarks). Compiled by the runtime's Python; unchecked-hash because a
# deployed package never changes and zip archives keep file times only to two seconds.
build: .tools/sam/.installed
	$(SAM) build
	"$$(tools/runtime-python.sh)" -m compileall -q -j 0 --invalidation-mode unchecked-hash .aws-sam/build

# The first deploy of an environment is guided and saves its answers; later ones ask nothing
# (tools/deploy.sh, docs/operations.md#deploy).
ENV ?= dev
deploy: build
	tools/deploy.sh $(ENV)

delete: .tools/sam/.installed
	$(SAM) delete --config-env $(ENV)

clean:
	rm -rf .aws-sam .pytest_cache .ruff_cache .mypy_cache
