# Container stack targets (compose.yaml + compose.prod.yaml); included by the Makefile.
# Needs docker with the Compose and buildx plugins.
COMPOSE ?= docker compose -f compose.yaml -f compose.prod.yaml
# Give SECRETS_DIR on the command line or in the environment (not only in .env),
# so that make and Compose use the same directory.
SECRETS_DIR ?= secrets
SECRET_FILES := $(addprefix $(SECRETS_DIR)/,postgres_password app_db_password pgadmin_password backup_db_password \
	monitoring_db_password)
# The edge's certificate and key: your own pair, or a self-signed one for localhost made in
# SECRETS_DIR when missing. Like SECRETS_DIR, give them in the environment (not only in .env).
export TLS_CERT_FILE ?= $(SECRETS_DIR)/tls.crt
export TLS_KEY_FILE ?= $(SECRETS_DIR)/tls.key
# The engine .ci/engine.sh unpacks (`make engine`): first on PATH when present, so that
# `make engine && make up` needs no `. /opt/docker-engine/env.sh` in between.
ENGINE_DIR ?= $(or $(DOCKER_ENGINE_DIR),/opt/docker-engine)
ifneq ($(wildcard $(ENGINE_DIR)/usr/bin/docker),)
export PATH := $(ENGINE_DIR)/usr/sbin:$(ENGINE_DIR)/usr/bin:$(PATH)
endif
# Before Compose runs: an engine answers, the upstream images are there (pulled, or else their
# local stand-ins built), and the CA bundle builds trust (EXTRA_CA_BUNDLE, else the host's own).
# It prints that bundle's path; `$(PREFLIGHT) <compose command>` runs the command with it.
PREFLIGHT = ca="$$($(PYTHON) -m tools.preflight)" && EXTRA_CA_BUNDLE="$$ca"
# The database's volume: external (compose.yaml), so `down --volumes` cannot delete it; made here
# before Compose needs it. Give DATA_VOLUME in the environment (not only in .env), as SECRETS_DIR.
export DATA_VOLUME ?= $(or $(COMPOSE_PROJECT_NAME),items)_pgdata
DATA_VOLUME_CREATE = docker volume create --label items.data=true $(DATA_VOLUME) >/dev/null
# Image labels from git, unless set in the environment.
export APP_REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
export APP_SOURCE ?= $(shell git remote get-url origin 2>/dev/null)

.PHONY: engine dev up down destroy logs psql verify verify-docs build key keys revoke-key

engine:  ## Provision and start a Docker engine (Debian, no registry needed): the only prerequisite
	bash .ci/engine.sh $(ENGINE_DIR)

.env:
	cp .env.example $@

# A random password per file, made only if missing. Compose file secrets are
# bind mounts that keep the host file's owner and mode, and the containers read
# them as other users (999, 10001, 5050): files 0644, directory 0700 so that
# other users of this host can not read them.
$(SECRETS_DIR)/%:
	@mkdir -p $(@D) && chmod 0700 $(@D)
	@umask 022 && $(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(32))' > $@.tmp && mv $@.tmp $@
	@echo "created $@"

# Both files at once (a grouped target), only when one is missing.
$(SECRETS_DIR)/tls.crt $(SECRETS_DIR)/tls.key &:
	@mkdir -p $(SECRETS_DIR) && chmod 0700 $(SECRETS_DIR)
	@sh tools/self_signed_tls.sh $(SECRETS_DIR)/tls.crt $(SECRETS_DIR)/tls.key

build: .env $(SECRET_FILES) $(TLS_CERT_FILE) $(TLS_KEY_FILE)  ## Build the images (items-api:local, items-edge:local)
	@$(PREFLIGHT) $(COMPOSE) build

# PostgreSQL first: a database made before backups existed gets the backup service's role
# (build/postgres/20-backup-role.sh, idempotent; new databases run it at initialisation).
up: .env $(SECRET_FILES) $(TLS_CERT_FILE) $(TLS_KEY_FILE)  ## Build and start the hardened stack, wait until it is healthy
	@$(PREFLIGHT) $(DATA_VOLUME_CREATE) && $(COMPOSE) up --detach --wait --wait-timeout 300 postgres
	$(COMPOSE) exec -T postgres sh /docker-entrypoint-initdb.d/20-backup-role.sh
	$(COMPOSE) up --detach --wait --wait-timeout 300
	@echo
	@echo "API:      http://$$($(COMPOSE) port edge 8080)"
	@echo "          https://$$($(COMPOSE) port edge 8443)  (certificate $(TLS_CERT_FILE))"
	@echo "pgAdmin:  http://$$($(COMPOSE) port pgadmin 8080)"
	@echo "          login $$($(COMPOSE) exec -T pgadmin printenv PGADMIN_DEFAULT_EMAIL), password in $(SECRETS_DIR)/pgadmin_password;"
	@echo "          the server 'appdb (postgres)' asks for the password in $(SECRETS_DIR)/postgres_password"
	@echo
	@echo "Every /items call needs an API key. Create one (it is shown once):"
	@echo '  KEY=$$(make -s key NAME=me SCOPE=write)'
	@echo "  curl -H \"Authorization: Bearer \$$KEY\" http://$$($(COMPOSE) port edge 8080)/items"

dev: .env $(SECRET_FILES)  ## Development loop: compose.yaml's stack, app/ changes reach the API without a rebuild
	@$(PREFLIGHT) $(DATA_VOLUME_CREATE) && docker compose -f compose.yaml -f compose.dev.yaml up --watch

# API keys, made inside the running API container: the key is printed once, alone on stdout,
# so `KEY=$$(make -s key NAME=ci SCOPE=read)` captures it without it reaching any history.
key:  ## Create an API key in the running stack: make key NAME=... SCOPE=read|write [DAYS=...]
	@if [ -z "$(NAME)" ] || [ -z "$(SCOPE)" ]; then echo "usage: make key NAME=... SCOPE=read|write [DAYS=...]" >&2; exit 2; fi
	@$(COMPOSE) exec -T flask-api python -m app keys create --name "$(NAME)" --scope "$(SCOPE)" $(if $(DAYS),--expires-in "$(DAYS)")

keys:  ## List the stack's API keys (names, scopes, dates; never a secret)
	@$(COMPOSE) exec -T flask-api python -m app keys list

revoke-key:  ## Revoke an API key by name: make revoke-key NAME=...
	@if [ -z "$(NAME)" ]; then echo "usage: make revoke-key NAME=..." >&2; exit 2; fi
	@$(COMPOSE) exec -T flask-api python -m app keys revoke "$(NAME)"

down:  ## Stop and remove the stack's containers (the database and the backups are kept)
	$(COMPOSE) down

# The one command that deletes the database: containers, every volume of the stack (backups,
# pgAdmin's settings) and the external data volume. CONFIRM must name the data volume.
destroy:  ## Delete the stack AND ITS DATA for good: make destroy CONFIRM=<data volume name>
	@if [ "$(CONFIRM)" != "$(DATA_VOLUME)" ]; then \
	  echo "this deletes the database and its backups for good; to do it: make destroy CONFIRM=$(DATA_VOLUME)" >&2; exit 2; fi
	$(COMPOSE) --profile restore down --volumes --remove-orphans
	docker volume rm $(DATA_VOLUME)

logs:  ## Follow the stack's logs
	$(COMPOSE) logs --follow --tail=100

psql:  ## Open psql in the database as the postgres superuser
	$(COMPOSE) exec postgres psql -U postgres -d appdb

verify: venv  ## Check the running stack's hardening (tools/verify_stack.py)
	$(BIN)/python tools/verify_stack.py

verify-docs: venv  ## Regenerate docs/verify.md's check table from the checks' code
	$(BIN)/python tools/verify_stack.py --update-docs
