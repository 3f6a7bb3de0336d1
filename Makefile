# Everyday commands. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP_COMPILE := $(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links

.DEFAULT_GOAL := help
# The container stack (make up/down/logs/psql/verify) and the benchmarks.
include $(wildcard mk/*.mk)
.PHONY: help venv test test-fast lock serve migrate lint

help:  ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# The virtual environment is rebuilt whenever a lock file changes.
$(VENV)/.installed: requirements/dev.txt requirements/prod.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements/dev.txt
	touch $@

venv: $(VENV)/.installed  ## Create .venv with the locked development dependencies

test: venv  ## Run every test (needs Docker; PostgreSQL server binaries, when installed, make it faster)
	$(BIN)/pytest

test-fast: venv  ## Run the tests that need no stack (tests/unit, tests/api)
	$(BIN)/pytest tests/unit tests/api

lint: venv  ## Lint every Dockerfile (hadolint) and shell script (shellcheck)
	$(BIN)/python tools/lint.py

lock: venv  ## Re-resolve requirements/*.in into hash-locked requirements/*.txt
	cd requirements && ../$(PIP_COMPILE) -o prod.txt prod.in && ../$(PIP_COMPILE) -o dev.txt dev.in \
		&& ../$(PIP_COMPILE) -o dev-reload.txt dev-reload.in

migrate: venv  ## Apply database migrations (DATABASE_URL, DATABASE_PASSWORD_FILE)
	$(BIN)/python -m app migrate

serve: venv  ## Serve the API locally with Granian (DATABASE_URL, PORT...)
	$(BIN)/python -m app serve
