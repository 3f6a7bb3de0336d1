#!/bin/sh
# shellcheck disable=SC2086  # COMPOSE is a command with its arguments: split on purpose
# `make load DUMP=dumps/appdb-....dump`: load a `make dump` file into the stack's database.
# Checks the file against its manifest's sha256 first; refuses a database that holds items
# (it is meant for an empty one: a new stack, a new major version) unless FORCE=1. Stops the
# API, replaces schema `app` with the dump's in one transaction (pg_restore --clean, as the
# superuser, with the server's own pg_restore), starts the API again.
# Usable without make: COMPOSE="docker compose -f ..." sh tools/load.sh FILE
set -eu
COMPOSE=${COMPOSE:-docker compose -f compose.yaml -f compose.prod.yaml}
file=${1:?usage: load.sh DUMP_FILE}
[ -f "$file" ] || { echo "load: $file: no such file" >&2; exit 1; }

if [ -f "$file.json" ]; then
  want=$(sed -n 's/.*"sha256": "\([0-9a-f]*\)".*/\1/p' "$file.json")
  [ "$(sha256sum "$file" | cut -d' ' -f1)" = "$want" ] \
    || { echo "load: $file does not match the sha256 in $file.json" >&2; exit 1; }
  echo "load: $file matches its manifest"
else
  echo "load: warning: no manifest $file.json, the file is not checked" >&2
fi
items=$($COMPOSE exec -T postgres psql -U postgres -d appdb -tAc \
  "SELECT CASE WHEN to_regclass('app.items') IS NULL THEN 0 ELSE (SELECT count(*) FROM app.items) END")
if [ "$items" != 0 ] && [ "${FORCE:-}" != 1 ]; then
  echo "load: the database holds $items items; load into an empty one, or FORCE=1 to replace them" >&2
  exit 1
fi
$COMPOSE stop flask-api
$COMPOSE exec -T postgres pg_restore -U postgres -d appdb --clean --if-exists \
  --single-transaction --exit-on-error <"$file"
$COMPOSE up --detach --wait --wait-timeout 300 flask-api edge
echo "load: $file loaded ($($COMPOSE exec -T postgres psql -U postgres -d appdb -tAc 'SELECT count(*) FROM app.items') items)"
