# Docker Swarm targets (compose.yaml + compose.prod.yaml + compose.swarm.yaml); included by the
# Makefile after mk/stack.mk, whose .env and secret-file rules they reuse. tools/swarm.py does the
# work; docs/swarm.md explains it.
#   make swarm-up SWARM_API_PORT=5100 SWARM_API_TLS_PORT=5543 API_REPLICAS=3     (the defaults)
SWARM_STACK ?= items-swarm
SWARM := SECRETS_DIR=$(SECRETS_DIR) SWARM_STACK=$(SWARM_STACK) $(PYTHON) tools/swarm.py

.PHONY: swarm-up swarm-update swarm-down swarm-verify swarm-key swarm-keys swarm-revoke-key swarm-backup swarm-backups

swarm-up: .env $(SECRET_FILES) $(TLS_CERT_FILE) $(TLS_KEY_FILE)  ## Deploy to Docker Swarm (single node if none), wait until healthy
	$(SWARM) up

swarm-update: .env $(SECRET_FILES) $(TLS_CERT_FILE) $(TLS_KEY_FILE)  ## Rebuild the images and roll them out task by task
	$(SWARM) update

swarm-down:  ## Remove the Swarm stack (volumes kept); leave the swarm if swarm-up made it
	$(SWARM) down

swarm-verify: venv  ## Check the Swarm stack's hardening (verify_stack.py --swarm)
	$(BIN)/python tools/verify_stack.py --swarm --stack $(SWARM_STACK)

# API keys, made in a running API task on this node: the key is printed once, alone on stdout, so
# `KEY=$$(make -s swarm-key NAME=ci SCOPE=read)` captures it without it reaching any history.
swarm-key:  ## Create an API key in the Swarm stack: make swarm-key NAME=... SCOPE=read|write [DAYS=...]
	@if [ -z "$(NAME)" ] || [ -z "$(SCOPE)" ]; then echo "usage: make swarm-key NAME=... SCOPE=read|write [DAYS=...]" >&2; exit 2; fi
	@$(SWARM) key --name "$(NAME)" --scope "$(SCOPE)" $(if $(DAYS),--expires-in "$(DAYS)")

swarm-keys:  ## List the Swarm stack's API keys (never a secret)
	@$(SWARM) keys

swarm-revoke-key:  ## Revoke an API key of the Swarm stack by name: make swarm-revoke-key NAME=...
	@if [ -z "$(NAME)" ]; then echo "usage: make swarm-revoke-key NAME=..." >&2; exit 2; fi
	@$(SWARM) revoke-key --name "$(NAME)"

# The backup service's commands in its task (on the database's node), as `make backup` / `make backups`.
swarm-backup:  ## Take a base backup in the Swarm stack now and show it
	@$(SWARM) backup

swarm-backups:  ## List the Swarm stack's base backups and the WAL received
	@$(SWARM) backups
