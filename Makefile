# Switchboard developer entry points. `make test` and `make demo` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck controlplane image redis observability clients demo crds schema goldens bench clean

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing switchboard[dev]"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

# The real-clients tier's clients (tests/clients): pinned, reinstalled when their lock changes.
CLIENTS_VENV := .venv-clients
CLIENTS_STAMP := $(CLIENTS_VENV)/.installed
NODE_STAMP := tests/clients/node_modules/.installed

$(CLIENTS_STAMP): tests/clients/requirements.txt
	@echo "==> $(CLIENTS_VENV): the tier's Python clients (tests/clients/requirements.txt)"
	@test -x $(CLIENTS_VENV)/bin/python || $(PYTHON) -m venv $(CLIENTS_VENV)
	@$(CLIENTS_VENV)/bin/python -m pip install -q --disable-pip-version-check --no-deps -r $<
	@touch $@

$(NODE_STAMP): tests/clients/package-lock.json
	@echo "==> tests/clients/node_modules: the tier's node clients (npm ci)"
	@cd tests/clients && npm ci --no-audit --no-fund --loglevel=error >/dev/null
	@touch $@

clients: $(CLIENTS_STAMP) $(NODE_STAMP)

lint: $(STAMP)
	@echo "==> ruff"
	@$(VENV)/bin/ruff check operator tests bench tools
	@$(VENV)/bin/ruff format --check operator tests bench tools
	@echo "==> import-linter"
	@$(VENV)/bin/lint-imports --config .importlinter

typecheck: $(STAMP)
	@echo "==> mypy --strict operator/switchboard bench tests/upstreams (pyproject [tool.mypy])"
	@$(VENV)/bin/mypy

controlplane:
	@echo "==> control-plane binaries (kube-apiserver, etcd, kubectl, helm; built once per machine)"
	@bash tools/controlplane/build.sh >/dev/null

# The image users deploy (Dockerfile), tagged with the package version; rebuilt only when its
# inputs changed. Without a docker engine: buildah, from a Debian base made once per machine.
image:
	@echo "==> image (tools/image/build.sh)"
	@bash tools/image/build.sh >/dev/null

# The limits tests run a real redis-server (Debian's package).
redis:
	@command -v redis-server >/dev/null || { echo "==> redis-server (Debian package, for the limits tests)"; \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq redis-server; \
		else sudo apt-get update -qq && sudo apt-get install -y -qq redis-server; fi; }

observability:
	@echo "==> observability tools (prometheus + promtool from Debian; OpenTelemetry Collector built once per machine)"
	@bash tools/prometheus/install.sh
	@bash tools/otelcol/build.sh >/dev/null

test: lint typecheck controlplane image redis observability clients
	@echo "==> pytest"
	@$(PY) -m pytest tests

crds: $(STAMP)
	@$(VENV)/bin/switchboard crds --out crds/ --helm-out helm/switchboard/crds/

schema: $(STAMP)
	@$(PY) -m switchboard.routing.config > docs/routing-config.schema.json

goldens: $(STAMP)
	@$(PY) -m pytest tests -q --update-goldens

bench: $(STAMP)
	@bash bench/setup.sh
	@$(PY) -m pip install -q -e '.[bench]'
	@$(PY) bench/run.py
	@$(PY) bench/report.py

demo: $(STAMP)
	@$(PY) tools/demo.py

clean:
	rm -rf $(VENV) $(CLIENTS_VENV) tests/clients/node_modules .mypy_cache .ruff_cache .pytest_cache
