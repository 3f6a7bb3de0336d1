#!/bin/sh
# The backup service's main loop (PID 1 is tini: `init: true`).
# Every BACKUP_CRON_SECONDS (10) it looks whether pg_receivewal runs (it runs with --no-loop, so
# it exits whenever PostgreSQL restarts): Barman's receive-wal lock is free when it does not,
# and then `barman cron` starts it again. `barman cron` also runs every sixth round anyway: it
# files the streamed WAL and applies the retention policy. Each barman command is a Python
# start-up (~0.15 s of CPU): run every round, they kept a tenth of a core busy on an idle stack.
# A base backup is taken when none exists yet and then every BACKUP_INTERVAL seconds (default
# one day), while the API keeps running; after a restore (which removes the stamp file) as soon
# as streaming works again. Alongside: backup-metrics.py, the age of the newest backup for
# Prometheus (port 9180, backend network only).
set -u
cron_every=${BACKUP_CRON_SECONDS:-10}
interval=${BACKUP_INTERVAL:-86400}
stamp=/var/lib/barman/.last-scheduled-backup
receiver_lock=/var/lib/barman/.main-receive-wal.lock
# Rounds between two `barman cron` runs while the receiver streams, and two backup listings.
full_every=6

receiver_down() {
  # The lock is taken (and the command fails) only while a receiver holds it.
  flock -n "$receiver_lock" true 2>/dev/null
}

backup_due() {
  last=$(stat -c %Y "$stamp" 2>/dev/null || echo 0)
  [ $(( $(date +%s) - last )) -ge "$interval" ] && return 0
  # Backups deleted by hand since the last one: looked for on full rounds only.
  [ "$1" -eq 0 ] && [ -z "$(barman list-backups main --minimal 2>/dev/null)" ]
}

echo "backup: streaming WAL; a base backup every ${interval}s"
# Barman's figures for Prometheus (the monitoring profile scrapes them), beside the loop.
backup-metrics.py &
round=0
while :; do
  full=$(( round % full_every ))
  if [ "$full" -eq 0 ] || receiver_down; then
    barman -q cron --keep-descriptors
  fi
  if backup_due "$full"; then
    if barman backup main --wait --wait-timeout 300; then
      touch "$stamp"
    fi
  fi
  round=$(( round + 1 ))
  sleep "$cron_every"
done
