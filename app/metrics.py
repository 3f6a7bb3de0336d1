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
cannot mint series); methods outside HTTP's usual set count as one. A request
only notes how it ended; once a second per worker, on a timer, the notes are
folded into the shared files, and the requests in flight and the pool's
figures are sampled: never per request.
"""

from __future__ import annotations

import bisect
import os
import time
from collections import deque
from collections.abc import Callable, Iterable

from flask import Flask
from werkzeug.routing import Rule
from prometheus_client import Counter, Gauge, Histogram
from psycopg_pool import ConnectionPool

from . import periodic

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
# Each answered request, (rule, method, status, seconds), until the sampler folds it into the
# counters and histograms (`fold`, every SAMPLE_EVERY and at exit). Appending to a deque is
# atomic and costs a fraction of a microsecond; the multiprocess values' updates (three per
# request, each under a process-wide lock, with a getpid syscall and an mmap write) cost ~30 µs of
# CPU per request on a busy server (bench/README.md). Folded, they are one update per series
# and bucket per second. A scrape sees a worker's requests up to a second late.
_answered: deque[tuple[Rule | None, str, int, float]] = deque()
# (route, method, status) -> its counter and histogram series (`labels()` builds a key each call).
# Bounded: routes x methods x statuses.
_series: dict[tuple[str, str, int], tuple] = {}


class Counting:
    """WSGI middleware: times and counts every answer the app gives, errors and 500s included.

    At the WSGI layer rather than in a Flask hook (a hook costs several times
    its own code on a busy server, bench/README.md): the status comes from
    `start_response`, and so does the route template, from the request Flask
    keeps in the environ until then. While the app handles a request, a token
    of it sits in `_in_flight`.
    """

    def __init__(self, wsgi_app: Callable) -> None:
        self._app = wsgi_app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        token = object()
        _in_flight.add(token)
        status, rule = 0, None

        def start(status_line: str, headers: list, exc_info=None) -> Callable:
            nonlocal status, rule
            status = int(status_line[:3])
            # Flask's request is in the environ until the request ends, after this call.
            rule = getattr(environ.get("werkzeug.request"), "url_rule", None)
            return start_response(status_line, headers, exc_info)

        try:
            return self._app(environ, start)
        finally:
            _in_flight.discard(token)
            if status:
                seconds = time.perf_counter() - started
                _answered.append((rule, environ.get("REQUEST_METHOD", ""), status, seconds))


def fold() -> None:
    """Moves the answered requests into REQUESTS and DURATION: per series, one counter update, and
    the histogram's sum and each bucket it touched, updated once."""
    tallies: dict[tuple[str, str, int], list] = {}
    take = _answered.popleft
    while True:
        try:
            rule, method, status, seconds = take()
        except IndexError:   # empty (the sampler and the exit finalizer may fold at once)
            break
        key = (rule.rule if rule is not None else UNMATCHED, method if method in METHODS else OTHER_METHOD, status)
        tally = tallies.get(key)
        if tally is None:
            tally = tallies[key] = [0, 0.0, [0] * (len(BUCKETS) + 1)]   # count, sum, buckets (+Inf last)
        tally[0] += 1
        tally[1] += seconds
        tally[2][bisect.bisect_left(BUCKETS, seconds)] += 1   # the first bound >= seconds, as observe()
    for key, (count, total, buckets) in tallies.items():
        requests, duration = _series_of(key)
        requests.inc(count)
        _observe_many(duration, total, buckets)


def _series_of(key: tuple[str, str, int]) -> tuple:
    series = _series.get(key)
    if series is None:
        route, method, status = key
        series = _series.setdefault(key, (REQUESTS.labels(route, method, str(status)),
                                          DURATION.labels(route, method)))
    return series


def _observe_many(histogram, total: float, buckets: list[int]) -> None:
    """What `observe()` once per request would leave, in one update of the sum and of each bucket.
    prometheus_client has no public call for it: this reads the child's `_sum` and `_buckets`
    (0.26, pinned; tests/api/test_metrics.py compares the scraped buckets with what was sent)."""
    histogram._sum.inc(total)
    for value, count in zip(histogram._buckets, buckets, strict=True):
        if count:
            value.inc(count)


class Sampler:
    """Copies the requests in flight and the pool's statistics into the gauges and counters,
    folding the answered requests first (`read`, every SAMPLE_EVERY seconds).

    `get_stats()` takes the pool's lock: once a second costs nothing, once per
    request would. Its counters are cumulative (pop_stats would reset the ones
    app/db.py reads), so the counters here advance by the difference.
    """

    def __init__(self, pool: ConnectionPool):
        self.pool = pool
        self.seen = {"connections_errors": 0, "requests_errors": 0}

    def read(self) -> None:
        fold()
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
    """Count every request of `app`, and sample its pool every second (and fold at exit)."""
    BUILD.labels(os.environ.get("APP_VERSION", "0.0.0-dev"), os.environ.get("APP_REVISION", "unknown")).set(1)
    app.wsgi_app = Counting(app.wsgi_app)
    sampler = Sampler(pool)
    sampler.read()
    periodic.every(SAMPLE_EVERY, sampler.read, "metrics-sampler", at_exit=fold, until=lambda: pool.closed)
