# The `monitoring` profile: Prometheus, postgres_exporter and the nginx exporter beside the
# hardened stack (docs/observability.md); included by the Makefile.
PROMETHEUS_PORT ?= 9090
.PHONY: monitor monitor-down

# The stack first (`make up`: images, secrets, the backup role); then the monitoring role,
# for a database made before monitoring existed (build/postgres/30-monitoring-role.sh,
# idempotent; new databases run it at initialisation); then the profile.
monitor: up  ## Start the stack with Prometheus and the exporters, print Prometheus' URL
	$(COMPOSE) exec -T postgres sh /docker-entrypoint-initdb.d/30-monitoring-role.sh
	$(COMPOSE) --profile monitoring up --detach --wait --wait-timeout 300
	@echo
	@echo "Prometheus: http://$$($(COMPOSE) --profile monitoring port prometheus 9090)"
	@echo "            targets /targets, alerts /alerts (docs/observability.md)"

monitor-down:  ## Stop Prometheus and the exporters (their data volume is kept)
	$(COMPOSE) --profile monitoring stop prometheus postgres-exporter nginx-exporter
	$(COMPOSE) --profile monitoring rm --force prometheus postgres-exporter nginx-exporter
