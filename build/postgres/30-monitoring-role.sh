#!/bin/sh
# The monitoring profile's role `monitoring` (postgres_exporter, compose.yaml): LOGIN and
# pg_monitor only, the built-in role that reads statistics and settings (pg_stat_*,
# pg_settings, pg_stat_replication's positions) and nothing else: no table, no database
# rights (REVOKE ... FROM PUBLIC in 10-app-role.sh keeps it out of appdb; it connects to the
# `postgres` database). Its password is its own secret.
#
# Runs twice in a volume's life, so it is idempotent:
#  - on first start, from /docker-entrypoint-initdb.d like 10-app-role.sh;
#  - on a database created before monitoring existed, from `make monitor` (or by hand:
#    docker compose exec postgres sh /docker-entrypoint-initdb.d/30-monitoring-role.sh),
#    which also sets the password again from the secret (a rotated secret takes effect).
# Where the secret is not mounted (a deployment without monitoring) it does nothing.
set -eu

secret=${MONITORING_DB_PASSWORD_FILE:-/run/secrets/monitoring_db_password}
if [ ! -s "$secret" ]; then
  echo "30-monitoring-role.sh: $secret is missing or empty: no monitoring role" >&2
  exit 0
fi

psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --single-transaction \
  --username "${POSTGRES_USER:-postgres}" --dbname postgres \
  -v secret="$secret" <<'SQL'
SET log_statement = 'none';
SET log_min_error_statement = 'panic';
SET log_min_duration_statement = -1;
SET client_min_messages = warning;
-- Never wait for the backup service (BACKUP_SYNC=on): it may be down while this runs.
SET synchronous_commit = local;
SELECT 'CREATE ROLE monitoring' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'monitoring') \gexec
\set monitoring_password `cat :'secret'`
SELECT format('ALTER ROLE monitoring LOGIN PASSWORD %L NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS',
              :'monitoring_password') \gexec
\unset monitoring_password
ALTER ROLE monitoring CONNECTION LIMIT 5;
GRANT pg_monitor TO monitoring;
SQL
