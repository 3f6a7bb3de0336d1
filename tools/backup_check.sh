#!/bin/sh
# shellcheck disable=SC2086  # COMPOSE is a command with its arguments: split on purpose
# `make backup-check`: prove the newest base backup restores. In throwaway containers that
# touch neither the data volume nor the running database: Barman verifies the backup's files
# against its manifest (pg_verifybackup) and that its WAL is all there; restores it with the
# WAL into a temporary volume; a PostgreSQL started there (no network) replays the WAL; then
# row counts and a checksum of every item are printed. Exits non-zero, saying why, on any
# failure. Usable without make: COMPOSE="docker compose -f ..." sh tools/backup_check.sh
set -eu
COMPOSE=${COMPOSE:-docker compose -f compose.yaml -f compose.prod.yaml}
project=$($COMPOSE config --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["name"])')
scratch="$project-backup-check-$$"
started=$(date +%s)
say() { printf 'backup-check [%3ss]: %s\n' "$(( $(date +%s) - started ))" "$*"; }
fail() { say "FAILED: $*" >&2; exit 1; }
cleanup() { docker rm -f "$scratch" >/dev/null 2>&1 || :; docker volume rm "$scratch" >/dev/null 2>&1 || :; }
trap cleanup EXIT

id=$($COMPOSE exec -T backup barman list-backups main --minimal | head -n 1)
[ -n "$id" ] || fail "no base backup exists"
say "backup $id: verifying its files against the manifest (pg_verifybackup)"
$COMPOSE exec -T backup barman verify-backup main "$id" || fail "backup $id: files do not match the manifest"
say "backup $id: checking that the WAL it needs is all there"
$COMPOSE exec -T backup barman check-backup main "$id" || fail "backup $id: WAL missing"
$COMPOSE exec -T backup barman show-backup main "$id" | grep -qE 'Status *: *DONE' || fail "backup $id: status is not DONE"

say "restoring it into the throwaway volume $scratch"
docker volume create "$scratch" >/dev/null
$COMPOSE --profile restore run --rm --no-deps -v "$scratch:/var/lib/postgresql" backup-restore \
  barman -q restore main "$id" /var/lib/postgresql/18/docker --partial-wal >/dev/null \
  || fail "barman could not restore backup $id"
say "starting PostgreSQL on it (no network) to replay the WAL"
image=$($COMPOSE config --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["services"]["postgres"]["image"])')
docker run -d --name "$scratch" --network none --user 999:999 --read-only --cap-drop ALL \
  --security-opt no-new-privileges:true --tmpfs /run/postgresql:uid=999,gid=999 --tmpfs /tmp:uid=999,gid=999 \
  -v "$scratch:/var/lib/postgresql" "$image" postgres >/dev/null
tries=0
until docker exec "$scratch" pg_isready -q -U postgres; do
  tries=$((tries + 1)); [ "$tries" -lt 240 ] || { docker logs --tail 30 "$scratch" >&2; fail "PostgreSQL did not start on the restored backup"; }
  sleep 0.5
done
say "restored database (the newest WAL received, not the running database's present):"
docker exec "$scratch" psql -U postgres -d appdb -v ON_ERROR_STOP=1 -c "
  SELECT count(*) AS items, md5(coalesce(string_agg(i::text, ',' ORDER BY id), '')) AS items_checksum,
         (SELECT count(*) FROM app.api_keys) AS api_keys
  FROM app.items i" || fail "the restored database does not answer queries"
say "OK: backup $id restores and its data reads back"
