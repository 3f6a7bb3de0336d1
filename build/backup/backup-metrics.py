#!/usr/bin/env python3
"""The backup service's own figures for Prometheus: how old the newest base backup is.

PostgreSQL keeps no record of the base backups taken from it (with archiving off it deletes
each backup history file as it writes it), so only Barman knows when the last one finished.
This serves Barman's answer in Prometheus' text format on BACKUP_METRICS_PORT (9180), on
the backend network only: each scrape runs `barman -f json list-backups main` and reports

    barman_up                                1 when Barman answered, else 0
    barman_backups                           base backups whose copy is complete (DONE)
    barman_last_backup_timestamp_seconds     when the newest of them ended (0: none yet)

Three gauges with no labels: the standard library formats them (the image has no
prometheus_client). Whether WAL is streaming is PostgreSQL's to say (pg_stat_replication,
read by postgres_exporter); see docs/observability.md.
"""
from __future__ import annotations

import json
import os
import subprocess
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SERVER = "main"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HELP = {
    "barman_up": "1 when `barman list-backups` answered at this scrape, else 0.",
    "barman_backups": "Base backups whose copy is complete (status DONE).",
    "barman_last_backup_timestamp_seconds": "End of the newest complete base backup (Unix time; 0: none).",
}


def backups() -> list[dict] | None:
    """Barman's list of backups of SERVER, or None when Barman fails."""
    try:
        done = subprocess.run(["barman", "-f", "json", "list-backups", SERVER],
                              capture_output=True, text=True, timeout=8, check=False)
        return json.loads(done.stdout)[SERVER] if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError):
        return None


def exposition() -> str:
    found = backups()
    complete = [b for b in found or [] if b.get("status") == "DONE"]
    values = {
        "barman_up": 0 if found is None else 1,
        "barman_backups": len(complete),
        "barman_last_backup_timestamp_seconds": max((int(b["end_time_timestamp"]) for b in complete), default=0),
    }
    return "".join(f"# HELP {name} {HELP[name]}\n# TYPE {name} gauge\n{name} {value}\n"
                   for name, value in values.items())


class Metrics(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        if self.path.split("?")[0] != "/metrics":
            self.send_error(404)
            return
        body = exposition().encode()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        """Scrapes are not worth a log line each."""


if __name__ == "__main__":
    ThreadingHTTPServer(("", int(os.environ.get("BACKUP_METRICS_PORT", "9180"))), Metrics).serve_forever()
