#!/bin/sh
# Entrypoint of the backup service: writes libpq's password file from the secret (libpq
# refuses a password file that others may read, and the mounted secret is 0644), on the
# tmpfs /tmp so the password is in no environment, command line or volume; then runs the
# command (backup-loop.sh, or a one-off barman command).
set -eu
secret=${BACKUP_DB_PASSWORD_FILE:-/run/secrets/backup_db_password}
if [ -s "$secret" ]; then
  umask 077
  printf 'postgres:5432:*:backup:%s\n' "$(cat "$secret")" >"$PGPASSFILE"
fi
exec "$@"
