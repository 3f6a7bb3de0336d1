#!/bin/sh
# The backup service's main loop (PID 1 is tini: `init: true`).
# Every BACKUP_CRON_SECONDS: `barman cron` (re)starts pg_receivewal if it stopped (it runs
# with --no-loop, so it exits whenever PostgreSQL restarts), files the streamed WAL and
# applies the retention policy. A base backup is taken when none exists yet and then every
# BACKUP_INTERVAL seconds (default one day), while the API keeps running; after a restore
# (which removes the stamp file) as soon as streaming works again. Alongside: backup-metrics.py,
# the age of the newest backup for Prometheus (port 9180, backend network only).
set -u
cron_every=${BACKUP_CRON_SECONDS:-10}
interval=${BACKUP_INTERVAL:-86400}
stamp=/var/lib/barman/.last-scheduled-backup

echo "backup: streaming WAL; a base backup every ${interval}s"
# Barman's figures for Prometheus (the monitoring profile scrapes them), beside the loop.
backup-metrics.py &
while :; do
  barman -q cron --keep-descriptors
  last=$(stat -c %Y "$stamp" 2>/dev/null || echo 0)
  if [ $(( $(date +%s) - last )) -ge "$interval" ] || [ -z "$(barman list-backups main --minimal 2>/dev/null)" ]; then
    if barman backup main --wait --wait-timeout 300; then
      touch "$stamp"
    fi
  fi
  sleep "$cron_every"
done
