#!/bin/sh
# shellcheck disable=SC2086  # COMPOSE is a command with its arguments: split on purpose
# `make restore [TARGET_TIME=...] [YES=1]`: restore the database from the backup service.
#
# Stops the API (the edge answers 502 meanwhile), PostgreSQL and the backup service; restores
# the newest base backup plus the streamed WAL into the data volume (the one-off service
# `backup-restore`, build/backup/backup-restore.sh), starts PostgreSQL, which replays WAL up
# to TARGET_TIME (or to the last record received) and promotes itself; brings the backup
# service and the API back, waits until the API is healthy, and prints what it did and how
# long it took. The backup service then takes a new base backup by itself (a restore to a
# point in time starts a new timeline). Usable without make: COMPOSE="docker compose -f ..." sh tools/restore.sh [TIME]
set -eu
COMPOSE=${COMPOSE:-docker compose -f compose.yaml -f compose.prod.yaml}
target=${1:-${TARGET_TIME:-}}

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Compose's progress output only when a step fails.
quiet() { "$@" >"$log" 2>&1 || { cat "$log" >&2; echo "restore: failed: $*" >&2; exit 1; }; }
say() { printf 'restore [%3ss]: %s\n' "$(( $(date +%s) - started ))" "$*"; }

if [ "${YES:-}" != 1 ]; then
  printf 'This replaces the database with the backup%s. Continue? [y/N] ' \
    "${target:+ as it was at $target}"
  read -r answer
  case $answer in y|Y|yes) ;; *) echo "restore: cancelled"; exit 1 ;; esac
fi
started=$(date +%s)
say "stopping the API, PostgreSQL and the backup service"
quiet $COMPOSE stop flask-api postgres backup
say "restoring the newest base backup and the streamed WAL${target:+ (target $target)}"
# The data volume is external (compose.yaml names it so; `make` exports DATA_VOLUME): made again
# when it is gone, since Compose never creates an external volume.
volume=${DATA_VOLUME:-${COMPOSE_PROJECT_NAME:-items}_pgdata}
quiet "${COMPOSE%% compose*}" volume create --label items.data=true "$volume"
quiet $COMPOSE --profile restore run --rm --no-deps backup-restore backup-restore.sh "$target"
grep -E '^(restore:|Starting local restore|Doing PITR|Restore operation)' "$log" || :

say "starting PostgreSQL: it replays the WAL${target:+ up to $target} and promotes itself"
quiet $COMPOSE up --detach --no-build --wait --wait-timeout 600 --no-deps postgres
until [ "$($COMPOSE exec -T postgres psql -U postgres -d postgres -tAc 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ]; do
  sleep 0.5
done
say "PostgreSQL is primary again; starting the backup service and the API"
# The backup service first: with BACKUP_SYNC=on a write waits for it.
quiet $COMPOSE up --detach --no-build --no-deps backup
quiet $COMPOSE up --detach --wait --wait-timeout 300 flask-api edge
say "done: the API is healthy; restored $( [ -n "$target" ] && echo "to $target" || echo "to the last WAL received") in $(( $(date +%s) - started )) s"
say "the backup service takes a new base backup now (see: make backups)"
