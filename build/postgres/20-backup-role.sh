#!/bin/sh
# The backup service's own role `backup` (Barman, build/backup/): LOGIN and REPLICATION (to
# stream WAL and take base backups with pg_basebackup), plus only what `barman check` and
# `barman backup` insist on: EXECUTE on the backup-control functions, pg_monitor (read-only
# statistics and settings) and pg_checkpoint. No database or table rights: it cannot read
# or change the API's data through SQL (REVOKE ... FROM PUBLIC in 10-app-role.sh keeps it out
# of appdb; it connects to the `postgres` database). Its password is its own secret.
#
# Runs twice in a volume's life, so it is idempotent:
#  - on first start, from /docker-entrypoint-initdb.d like 10-app-role.sh;
#  - on a database created before backups existed, from `make up` (or by hand:
#    docker compose exec postgres sh /docker-entrypoint-initdb.d/20-backup-role.sh),
#    which also sets the password again from the secret (a rotated secret takes effect).
# pg_hba.conf gets one line letting `backup` open replication connections (the image's
# `host all all all` line does not match them), then the configuration is reloaded.
set -eu

secret=${BACKUP_DB_PASSWORD_FILE:-/run/secrets/backup_db_password}
[ -s "$secret" ] || { echo "20-backup-role.sh: $secret is missing or empty" >&2; exit 1; }

hba_line='host replication backup all scram-sha-256'
grep -qxF "$hba_line" "$PGDATA/pg_hba.conf" || printf '%s\n' "$hba_line" >>"$PGDATA/pg_hba.conf"

psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --single-transaction \
  --username "${POSTGRES_USER:-postgres}" --dbname postgres \
  -v secret="$secret" <<'SQL'
SET log_statement = 'none';
SET log_min_error_statement = 'panic';
SET log_min_duration_statement = -1;
SET client_min_messages = warning;
-- Never wait for the backup service this role is for (BACKUP_SYNC=on): it may not run yet.
SET synchronous_commit = local;
SELECT 'CREATE ROLE backup' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'backup') \gexec
\set backup_password `cat :'secret'`
SELECT format('ALTER ROLE backup LOGIN REPLICATION PASSWORD %L NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS',
              :'backup_password') \gexec
\unset backup_password
GRANT EXECUTE ON FUNCTION pg_backup_start(text, boolean) TO backup;
GRANT EXECUTE ON FUNCTION pg_backup_stop(boolean) TO backup;
GRANT EXECUTE ON FUNCTION pg_switch_wal() TO backup;
GRANT EXECUTE ON FUNCTION pg_create_restore_point(text) TO backup;
GRANT pg_monitor, pg_checkpoint TO backup;
SELECT pg_reload_conf() \gset
SQL
