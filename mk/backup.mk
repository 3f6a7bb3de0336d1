# Backups (the `backup` service, Barman; docs/backups.md); included by the Makefile.
.PHONY: backup backups restore backup-check dump load

backup:  ## Take a base backup now (the API keeps running) and show it
	$(COMPOSE) exec -T backup barman backup main --wait --wait-timeout 300
	@$(COMPOSE) exec -T backup barman show-backup main latest

# Each base backup restores to any moment from its end to the newest WAL received.
backups:  ## List the base backups (times, sizes) and the WAL received, up to which each one restores
	@$(COMPOSE) exec -T backup barman list-backups main
	@$(COMPOSE) exec -T backup barman status main | grep -E 'First|Last|Current WAL|Retention'
	@$(COMPOSE) exec -T backup barman replication-status main --target wal-streamer | grep -E 'streamers|state|Sent LSN' || :

restore:  ## Restore the latest state, or TARGET_TIME="2026-11-29 21:15:00+00"; asks unless YES=1
	@COMPOSE="$(COMPOSE)" YES="$(YES)" sh tools/restore.sh "$(TARGET_TIME)"

backup-check:  ## Restore the latest backup into a throwaway container and verify it
	@COMPOSE="$(COMPOSE)" sh tools/backup_check.sh

dump:  ## Write a pg_dump -Fc file + manifest to DUMP_DIR (dumps/); the API keeps running
	@COMPOSE="$(COMPOSE)" sh tools/dump.sh

load:  ## Load a dump into an empty database: make load DUMP=dumps/appdb-....dump [FORCE=1]
	@if [ -z "$(DUMP)" ]; then echo "usage: make load DUMP=dumps/appdb-....dump" >&2; exit 2; fi
	@COMPOSE="$(COMPOSE)" FORCE="$(FORCE)" sh tools/load.sh "$(DUMP)"
