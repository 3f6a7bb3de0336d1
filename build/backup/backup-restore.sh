#!/bin/sh
# Runs in the one-off `backup-restore` container (tools/restore.sh), with PostgreSQL stopped and
# the data volume mounted at PostgreSQL's own path: restores the newest base backup into
# $PGDATA with the streamed WAL, the unfinished segment included (--partial-wal: without it
# the newest commits would be silently lost). With a target time (argument 1) PostgreSQL
# replays up to it on its next start and then promotes itself; without one it replays every
# WAL record received. An existing data directory is moved aside, never deleted.
set -eu
pgdata=/var/lib/postgresql/18/docker
target=${1:-}

mkdir -p "$(dirname "$pgdata")"
if [ -e "$pgdata" ]; then
  aside="$pgdata.before-restore-$(date -u +%Y%m%dT%H%M%SZ)"
  mv "$pgdata" "$aside"
  echo "restore: the previous data directory is kept as $aside (remove it when satisfied)"
fi
# Files in the streaming directory that `barman cron` has not filed yet.
barman -q cron --keep-descriptors >/dev/null 2>&1 || :
if [ -n "$target" ]; then
  # `auto`: the newest backup that ended before the target.
  barman restore main auto "$pgdata" --partial-wal --target-time "$target" --target-action promote
else
  barman restore main latest "$pgdata" --partial-wal
fi
chmod 0700 "$pgdata"
# The backup service takes a new base backup as soon as it streams again (a restore to a
# point in time starts a new timeline, which older backups do not reach).
rm -f /var/lib/barman/.last-scheduled-backup
