# Kauri developer commands. Every target installs what it needs into .venv first.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint job bench install clean deploy package browser-deps deploy-env deploy-check
STAGE ?= dev
# The Lambda build runs under Python 3.13 (chalice takes the functions' runtime from its interpreter):
# python3.13 on PATH, else pyenv's newest 3.13. `make deploy-env` gives it chalice in $(DEPLOY_VENV) and
# downloads the runtime dependencies' Lambda wheels into $(LAMBDA_WHEELS), so the deploy test runs offline.
PY313 ?= $(shell for p in python3.13 $$(ls -d $$HOME/.pyenv/versions/3.13*/bin/python3.13 2>/dev/null | sort -V | tail -n1); do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null && { echo $$p; break; }; done)
DEPLOY_VENV := $(VENV)/lambda-py313
LAMBDA_WHEELS := $(VENV)/lambda-wheels
DEPLOY_STAMP := $(VENV)/.lambda-installed
DEPLOY_PY ?= $(DEPLOY_VENV)/bin/python

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PY) >/dev/null 2>&1 || { echo "need $(PY) on PATH (or run: make PY=python3 ...)"; exit 1; }
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q 'pip>=23,<26.3'
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	@touch $(STAMP)

$(DEPLOY_STAMP): requirements.txt requirements-deploy.txt
	@test -n "$(PY313)" || { echo "need Python 3.13 (python3.13 on PATH or pyenv's 3.13) for the Lambda build"; exit 1; }
	@test -x $(DEPLOY_VENV)/bin/python || $(PY313) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/python -m pip install -q -r requirements-deploy.txt
	$(DEPLOY_VENV)/bin/python -m pip download -q --platform manylinux2014_x86_64 --implementation cp \
		--python-version 3.13 --only-binary=:all: -r requirements.txt -d $(LAMBDA_WHEELS)
	@touch $(DEPLOY_STAMP)

deploy-env: $(DEPLOY_STAMP)

install: $(STAMP) $(DEPLOY_STAMP)

run: $(STAMP)
	$(BIN)/python -m infra.local

lint: $(STAMP)
	$(BIN)/cfn-lint infra/template.yaml

# The browser tests drive Debian's chromium (never Playwright's own download) and need a Chinese font.
BROWSER_PKGS := chromium fonts-wqy-microhei

browser-deps:
	@if command -v chromium >/dev/null 2>&1 && fc-list :lang=zh family 2>/dev/null | grep -q .; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing $(BROWSER_PKGS) for the browser tests"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(BROWSER_PKGS); \
	else \
		echo "The browser tests need: apt-get install -y $(BROWSER_PKGS)  (run it as root, then make test again)"; \
		exit 1; \
	fi

test: $(STAMP) $(DEPLOY_STAMP) lint browser-deps
	$(BIN)/python -m pytest -q -n 2 tests

# Stateful stack, then the functions (built and deployed by Python 3.13 with chalice), then the wiring
# chalice cannot do. DEPLOY_PY must be a Python 3.13 with chalice installed (by default make deploy-env's).
# MAIL_IDENTITY=kauri.nz (a verified SES identity: staff invitations are mailed from it) and
# ALARM_EMAIL=ops@... set the stack's parameters; left out, the stack keeps what it has.
deploy: $(STAMP) $(DEPLOY_STAMP)
	$(BIN)/python -m infra.deploy --stage $(STAGE) --python $(DEPLOY_PY) \
		$(if $(MAIL_IDENTITY),--mail-identity '$(MAIL_IDENTITY)') $(if $(ALARM_EMAIL),--alarm-email '$(ALARM_EMAIL)')

package: $(STAMP) $(DEPLOY_STAMP)
	$(BIN)/python -m infra.deploy --stage $(STAGE) --python $(DEPLOY_PY) --package-only .build/$(STAGE)-package

# The deploy test alone (make test runs it too): make deploy for real against moto's server on loopback.
deploy-check: $(STAMP) $(DEPLOY_STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/integration/test_deploy_on_emulated_aws.py

job: $(STAMP)
	@$(BIN)/python -m infra.job "$(name)" '$(event)'

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .local .build
