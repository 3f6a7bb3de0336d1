#!/bin/sh
# First-start init script (mounted into /docker-entrypoint-initdb.d; the image
# runs it once, as the postgres user, while the cluster is being created).
#
# Creates the API's own least-privilege role `app`: LOGIN, not a superuser, no
# CREATEDB/CREATEROLE/REPLICATION/BYPASSRLS, owner of schema `app` (the first
# entry of the default search_path "$user", public, so the API's unqualified
# tables land there). Its password is a different secret from the superuser's.
#
# The password never appears on a command line, in the environment or in a
# script: psql reads the secret file itself (\set with backquotes runs `cat`,
# whose arguments name only the file) and passes it as a variable. Statement
# logging is switched off for this session, so even a failing statement can
# not write the password to the server log.
set -eu

secret=${APP_DB_PASSWORD_FILE:-/run/secrets/app_db_password}
[ -s "$secret" ] || { echo "10-app-role.sh: $secret is missing or empty" >&2; exit 1; }

psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --single-transaction \
  --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v secret="$secret" <<'SQL'
SET log_statement = 'none';
SET log_min_error_statement = 'panic';
SET log_min_duration_statement = -1;
\set app_password `cat :'secret'`
SELECT format('CREATE ROLE app LOGIN PASSWORD %L NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS',
              :'app_password') \gexec
\unset app_password
CREATE SCHEMA app AUTHORIZATION app;
REVOKE ALL ON DATABASE :"DBNAME" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"DBNAME" TO app;
SQL
