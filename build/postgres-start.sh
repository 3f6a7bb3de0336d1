#!/bin/sh
# PostgreSQL's entrypoint in the stack: the image's own (docker-entrypoint.sh), with the
# synchronous standby chosen by BACKUP_SYNC (on|off, default off; see docs/backups.md).
#
# BACKUP_SYNC=on names Barman's WAL receiver (its streaming_archiver_name, barman_receive_wal)
# in synchronous_standby_names, so a commit returns only once its WAL is on the backup volume.
# On the command line, not ALTER SYSTEM: the setting is in force from the server's first
# moment, before the backup service's receiver starts, which is when Barman decides to run
# pg_receivewal --synchronous (a receiver started earlier would never confirm a commit).
# synchronous_commit stays `on` (never remote_apply: a WAL receiver applies nothing).
#
# A new volume's initialisation (the image's temporary server and the scripts in
# /docker-entrypoint-initdb.d) runs before any standby can exist: its sessions commit
# locally (PGOPTIONS is read by their psql, never by the server).
set -eu
case "${BACKUP_SYNC:-off}" in
  on) standby=barman_receive_wal ;;
  off) standby= ;;
  *) echo "postgres-start.sh: BACKUP_SYNC must be on or off, got '${BACKUP_SYNC}'" >&2; exit 2 ;;
esac
export PGOPTIONS="-c synchronous_commit=local"
exec docker-entrypoint.sh "$@" -c "synchronous_standby_names=$standby"
