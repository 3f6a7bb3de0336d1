"""Prometheus metrics: what each worker counts about its requests and its connection pool.

An operator needs rates, latencies and pool exhaustion without reading logs,
in the format every monitoring system scrapes. prometheus_client keeps the
figures; its multiprocess mode makes them right with several Granian
workers: each worker writes its own memory-mapped files under
PROMETHEUS_MULTIPROC_DIR (a tmpfs), and Granian's main process, which
outlives the workers, reads and merges them on each scrape (app/exposition.py).

prometheus_client picks its storage when it is first imported, from
PROMETHEUS_MULTIPROC_DIR, so this module is imported only by `create_app()`
(in a worker, after the main process set that directory up). Requests are
counted by route template (Flask's rule, never the raw path, so a client
cannot mint series); methods outside HTTP's usual set count as one. The requests in flight and the pool's figures are sampled
once a second per worker, on a timer, never per request.
"""

from __future__ import annotations

import os
import threading
import time

from flask import Flask, Response, g, request
from prometheus_client import Counter, Gauge, Histogram
from psycopg_pool import ConnectionPool

# The route label of a request no route took (404 for an unknown path, 405 for a method the path does not
# take): one series, whatever the path.
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"
# Requests here take ~0.3 ms (a cached read) to a few ms (a write); seconds mean the pool or the
# database is in trouble (the pool times out after DB_POOL_TIMEOUT, 3 s by default).
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Seconds between two readings of the requests in flight and the pool's statistics, in each worker.
SAMPLE_EVERY = 1.0

REQUESTS = Counter("http_requests_total", "HTTP requests answered, by route template, method and status.",
                   ["route", "method", "status"])
DURATION = Histogram("http_request_duration_seconds",
                     "Time from the request reaching the app to its response, by route template and method.",
                     ["route", "method"], buckets=BUCKETS)
# livesum: a worker that died stops counting (app/exposition.py drops its file at the next scrape).
IN_FLIGHT = Gauge("http_requests_in_flight", "Requests being handled now, all workers together (sampled "
                  "every second).",
                  multiprocess_mode="livesum")
POOL_SIZE = Gauge("db_pool_size", "Connections the pools hold open (busy or idle).", multiprocess_mode="livesum")
POOL_MAX = Gauge("db_pool_max", "The most connections the pools may open (DB_POOL_MAX x workers).",
                 multiprocess_mode="livesum")
POOL_AVAILABLE = Gauge("db_pool_available", "Idle connections ready to be handed out.", multiprocess_mode="livesum")
POOL_WAITING = Gauge("db_pool_waiting", "Requests waiting for a connection now.", multiprocess_mode="livesum")
POOL_ERRORS = Counter("db_pool_connection_errors", "Failed attempts to open a connection to PostgreSQL.")
POOL_TIMEOUTS = Counter("db_pool_timeouts",
                        "Requests for a connection that failed: no connection within DB_POOL_TIMEOUT "
                        "(or the pool was closing).")
# Info is not supported in multiprocess mode: a gauge of 1 whose labels carry the build.
BUILD = Gauge("app_build_info", "The running build: version and source revision (value 1).",
              ["version", "revision"], multiprocess_mode="max")


# This worker's requests in flight, one token each: a set's add and discard are atomic under the GIL
# and cost a tenth of a gauge's update; `Sampler` copies its size into IN_FLIGHT every second.
_in_flight: set[object] = set()


class InFlight:
    """WSGI middleware that holds a token in `_in_flight` for as long as the app handles a request.

    Around the whole app, so that whatever the app does (a hook that raises
    included) the token goes when the request does.
    """

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        token = object()
        _in_flight.add(token)
        try:
            return self.app(environ, start_response)
        finally:
            _in_flight.discard(token)


# (route, method, status) -> that request's counter and histogram series: `labels()` locks and
# builds a key on every call; a dict lookup does not. Bounded: routes x methods x statuses.
_series: dict[tuple[str, str, int], tuple] = {}


def _count(response: Response) -> Response:
    """Count the response: Flask runs this for every one, an error handler's or a 500 too.

    Its duration runs from app/logs.py's stamp (`g.started`, the first hook of every request).
    """
    started = g.get("started")
    if started is not None:
        rule, method = request.url_rule, request.method
        key = (rule.rule if rule is not None else UNMATCHED, method if method in METHODS else OTHER_METHOD,
               response.status_code)
        series = _series.get(key)
        if series is None:
            route, method, status = key
            series = _series.setdefault(key, (REQUESTS.labels(route, method, str(status)),
                                              DURATION.labels(route, method)))
        series[0].inc()
        series[1].observe(time.perf_counter() - started)
    return response


class Sampler(threading.Thread):
    """Every SAMPLE_EVERY seconds, copies the requests in flight and the pool's statistics into the
    gauges and counters.

    `get_stats()` takes the pool's lock: once a second costs nothing, once per
    request would. Its counters are cumulative (pop_stats would reset the ones
    app/db.py reads), so the counters here advance by the difference.
    """

    def __init__(self, pool: ConnectionPool):
        super().__init__(name="metrics-sampler", daemon=True)
        self.pool = pool
        self.seen = {"connections_errors": 0, "requests_errors": 0}

    def run(self) -> None:
        while not self.pool.closed:
            self.read()
            time.sleep(SAMPLE_EVERY)

    def read(self) -> None:
        IN_FLIGHT.set(len(_in_flight))
        stats = self.pool.get_stats()
        POOL_SIZE.set(stats.get("pool_size", 0))
        POOL_MAX.set(stats.get("pool_max", 0))
        POOL_AVAILABLE.set(stats.get("pool_available", 0))
        POOL_WAITING.set(stats.get("requests_waiting", 0))
        for key, counter in (("connections_errors", POOL_ERRORS), ("requests_errors", POOL_TIMEOUTS)):
            now = stats.get(key, 0)
            if now > self.seen[key]:
                counter.inc(now - self.seen[key])
            self.seen[key] = now


def init_app(app: Flask, pool: ConnectionPool) -> None:
    """Count every request of `app` (before app/logs.py's hooks, whose start time it reads)."""
    BUILD.labels(os.environ.get("APP_VERSION", "0.0.0-dev"), os.environ.get("APP_REVISION", "unknown")).set(1)
    app.wsgi_app = InFlight(app.wsgi_app)
    app.after_request(_count)
    sampler = Sampler(pool)
    sampler.read()
    sampler.start()
