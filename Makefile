# Two commands on a fresh clone: `make deploy` (the whole local pipeline) and `make test` (the whole suite).
# Each sets up what it needs: the virtualenv, the packages, and the embedded services.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SOPHIA := $(VENV)/bin/sophia
STAMP := $(VENV)/.installed
VERSION ?=
DEPLOY_FLAGS ?=

.PHONY: venv deploy up down status test lint bench clean controlplane

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --editable '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## deploy: bring the local platform up (if needed) and ship a release through all seven stages
deploy: $(STAMP)
	$(SOPHIA) local up
	$(SOPHIA) deploy $(if $(VERSION),--version $(VERSION)) $(DEPLOY_FLAGS)

up: $(STAMP)
	$(SOPHIA) local up

down: $(STAMP)
	$(SOPHIA) local down

status: $(STAMP)
	$(SOPHIA) status

## controlplane: build (once per machine, into ~/.cache/sophia) the Kubernetes control plane the tests run against;
## without Go the Kubernetes tests skip, except under CI=true where that is a failure
controlplane:
	@if command -v go >/dev/null 2>&1 || [ "$$CI" = "true" ]; then bash tools/controlplane/build.sh; \
	else echo "Go is not installed: the Kubernetes tests will be skipped"; fi

## test: lint, types, layer contracts; unit and integration tests on two workers; then the end-to-end tests,
## which start whole local platforms and get the machine to themselves
test: $(STAMP) lint controlplane
	$(PY) -m pytest -n 2 -p no:cacheprovider tests/unit tests/integration
	$(PY) -m pytest -p no:cacheprovider tests/e2e

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(PY) benchmarks/pipeline.py

clean:
	-$(SOPHIA) local down
	rm -rf .sophia
