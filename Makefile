# Kauri developer commands. Every target installs what it needs into .venv first.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint job bench install clean deploy package browser-deps
STAGE ?= dev
DEPLOY_PY ?= python3.13

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PY) >/dev/null 2>&1 || { echo "need $(PY) on PATH (or run: make PY=python3 ...)"; exit 1; }
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q 'pip>=23,<26.3'
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	@touch $(STAMP)

install: $(STAMP)

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

test: $(STAMP) lint browser-deps
	$(BIN)/python -m pytest -q -n 2 tests

# Stateful stack, then the functions (built and deployed by Python 3.13 with chalice), then the wiring
# chalice cannot do. DEPLOY_PY must be a Python 3.13 with chalice installed.
deploy: $(STAMP)
	$(BIN)/python -m infra.deploy --stage $(STAGE) --python $(DEPLOY_PY)

package: $(STAMP)
	$(BIN)/python -m infra.deploy --stage $(STAGE) --python $(DEPLOY_PY) --package-only .build/$(STAGE)-package

job: $(STAMP)
	@$(BIN)/python -m infra.job "$(name)" '$(event)'

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .local .build
