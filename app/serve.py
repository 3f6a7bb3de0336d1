"""Serving the app with Granian (WSGI), sized to the connection pool.

Granian starts `WORKERS` processes; each imports the app and calls
`create_app()` after the fork, so each has its own pool. Each worker runs
the app on `BLOCKING_THREADS` threads, by default as many as the pool has
connections: Granian's own default (hundreds of threads) would only make
requests queue on the pool while fighting over the GIL.

HTTP/1.1 only: Granian's HTTP/2 lets a client that opens a few streams,
sends part of each body and hangs up leak the blocking threads for good, so
the API never speaks it; the edge speaks HTTP/2 to clients where wanted.

With METRICS=on the main process also answers Prometheus on METRICS_PORT,
at METRICS_HOST (app/exposition.py), from the files the workers write.

RELOAD=on (`make dev` only): Granian watches app/ and replaces its workers
when a file changes, about a second after a save; a worker that fails to
start on a broken edit is left down until the next save fixes it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from granian.log import LogLevels
from granian.server import Server

from . import exposition, logs
from .config import Config
from .watchdog import EXIT_WEDGED, Watchdog

log = logging.getLogger("app.serve")

# Seconds a worker gets to finish in-flight requests on SIGTERM before it is
# killed; below Compose's stop_grace_period so the container stops cleanly.
WORKERS_KILL_TIMEOUT = 8
# A client must send its request headers within this many seconds, so slow
# clients cannot hold connections open for long.
HEADER_READ_TIMEOUT_MS = 10_000
# The exit code of a setting the server cannot work with (as for a malformed one, app/__main__.py).
EXIT_CONFIG = 2
# What RELOAD=on watches: the app's package, nothing else.
PACKAGE = Path(__file__).resolve().parent


def serve(config: Config) -> int:
    logs.setup(config.log_level)
    log.info(
        "starting",
        extra={
            "event": "server.start",
            "host": config.host,
            "port": config.port,
            "workers": config.workers,
            "blocking_threads": config.threads,
            "pool_max": config.pool_max,
            "watchdog_timeout": config.watchdog_timeout,
            "metrics_port": config.metrics_port if config.metrics_enabled else None,
            "metrics_host": config.metrics_host if config.metrics_enabled else None,
            "reload": config.reload,
        },
    )
    if config.metrics_enabled:  # before the workers exist: they inherit the directory
        try:
            directory = exposition.prepare(config.metrics_dir)
            exposition.start(config.metrics_host, config.metrics_port, directory)
        except exposition.NotOwnAddress as e:
            log.error("cannot serve metrics: %s (METRICS_HOST: this container's address or name on the "
                      "backend network)", e, extra={"event": "metrics.error"})
            return EXIT_CONFIG
        except OSError as e:  # a read-only directory, a port in use: say which, and stop
            log.error("cannot serve metrics: %s (PROMETHEUS_MULTIPROC_DIR must be writable, a tmpfs; "
                      "METRICS_PORT free; or METRICS=off)", e, extra={"event": "metrics.error"})
            return EXIT_CONFIG
    server = Server(
        "app:create_app",
        factory=True,
        address=config.host,
        port=config.port,
        interface=Interfaces.WSGI,
        http=HTTPModes.http1,
        workers=config.workers,
        blocking_threads=config.threads,
        http1_settings=HTTP1Settings(header_read_timeout=HEADER_READ_TIMEOUT_MS),
        log_level=LogLevels(config.log_level.lower()),
        log_dictconfig=logs.granian_config(config.log_level),
        log_access=False,  # the app logs each request itself, with its request id
        respawn_failed_workers=True,
        workers_kill_timeout=WORKERS_KILL_TIMEOUT,
        reload=config.reload,
        reload_paths=[PACKAGE],
        reload_ignore_worker_failure=True,
    )
    watchdog = None
    if config.watchdog_timeout:
        watchdog = Watchdog(
            config.host, config.port, config.watchdog_timeout, stop_grace=WORKERS_KILL_TIMEOUT + 4
        )
        watchdog.start()
    server.serve()
    return EXIT_WEDGED if watchdog and watchdog.fired.is_set() else 0
