#!/bin/sh
# shellcheck disable=SC2086  # COMPOSE is a command with its arguments: split on purpose
# `make dump`: a logical export of the database, `pg_dump -Fc`, taken inside the postgres
# container with the server's own pg_dump (the versions always match), written to
# DUMP_DIR (default dumps/) with a manifest beside it: time, server version, size, sha256.
# It is what moves the data to the next PostgreSQL major version (README: the upgrade
# runbook); `make load DUMP=...` reads it back. The API keeps running meanwhile (pg_dump sees
# one consistent snapshot). Usable without make: COMPOSE="docker compose -f ..." sh tools/dump.sh
set -eu
COMPOSE=${COMPOSE:-docker compose -f compose.yaml -f compose.prod.yaml}
dir=${DUMP_DIR:-dumps}
stamp=$(date -u +%Y%m%dT%H%M%SZ)
file="$dir/appdb-$stamp.dump"

mkdir -p "$dir"
chmod 0700 "$dir"  # a dump holds every row, API key hashes included
umask 077
$COMPOSE exec -T postgres pg_dump -U postgres -d appdb -Fc >"$file.part"
mv "$file.part" "$file"
version=$($COMPOSE exec -T postgres psql -U postgres -d appdb -tAc 'SHOW server_version')
size=$(wc -c <"$file" | tr -d ' ')
sha=$(sha256sum "$file" | cut -d' ' -f1)
printf '{"file": "%s", "taken_at": "%s", "server_version": "%s", "size_bytes": %s, "sha256": "%s"}\n' \
  "$(basename "$file")" "$stamp" "$version" "$size" "$sha" >"$file.json"
echo "dump: $file ($size bytes, PostgreSQL $version, sha256 $sha); manifest $file.json"
