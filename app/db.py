"""The connection pool: one per worker process, created after the fork.

Granian imports the application inside each worker, so `create_app()` is the
right place to build the pool; connections and the pool's threads never cross
a fork. Connections run in autocommit: a single statement is its own
transaction, which saves the BEGIN and COMMIT round trips on every read;
statements that must be atomic together are written as one statement.
Each pooled connection reuses one cursor for `execute` (`Connection`).
"""

from __future__ import annotations

import logging
import select

import psycopg
from psycopg.abc import Params, Query
from psycopg_pool import ConnectionPool, PoolTimeout

from . import durability
from .config import Config

log = logging.getLogger("app.db")

APPLICATION_NAME = "items-api"
# Seconds to try to reconnect before giving a slot up; the next request that
# finds no connection starts a fresh attempt at once. Kept short so that the
# pool's exponential back-off never makes recovery wait long after an outage.
RECONNECT_TIMEOUT = 4.0
# Seconds a caller waits for a connection while PostgreSQL is known to be away.
AWAY_TIMEOUT = 0.25


class Connection(psycopg.Connection):
    """A connection whose `execute` reuses one cursor instead of making one per statement.

    A new cursor builds its own adaptation state each time, a quarter of the
    client's work for a one-row read (bench/README.md). Reuse is safe here
    because a pooled connection serves one request at a time and every
    handler reads a statement's rows before it runs the next one.
    """

    _reused: psycopg.Cursor | None = None

    def execute(self, query: Query, params: Params | None = None, *, prepare: bool | None = None,
                binary: bool = False) -> psycopg.Cursor:
        if binary:
            return super().execute(query, params, prepare=prepare, binary=True)
        cursor = self._reused
        if cursor is None or cursor.closed:
            cursor = self._reused = self.cursor()
        try:
            return cursor.execute(query, params, prepare=prepare)
        except psycopg.errors.Error as e:
            raise e.with_traceback(None)


def connection_kwargs(config: Config) -> dict:
    """Parameters for every new connection (the password never goes in a URL)."""
    kwargs = {
        "autocommit": True,
        "application_name": APPLICATION_NAME,
        # Fail a dead host quickly; /health promises an answer within 2 s.
        "connect_timeout": 2,
        # Timestamps leave the database already in UTC (RFC 3339 with +00:00).
        "options": "-c TimeZone=UTC",
    }
    if config.database_password is not None:
        kwargs["password"] = config.database_password
    return kwargs


def check_on_checkout(conn: Connection) -> None:
    """Make sure an idle connection still works, usually without a round trip.

    An idle connection has nothing to read unless the server has spoken:
    a shutdown or termination notice, or the end of the stream after a crash.
    Only then is the connection really tested (an empty query); a failure
    makes the pool discard it and hand out another.
    """
    if conn.closed or conn.broken:
        raise ConnectionError("connection is closed")
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    if poller.poll(0):
        ConnectionPool.check_connection(conn)


def reconnect_failed(pool: ConnectionPool) -> None:
    log.warning("pool could not reconnect for %.0f s; retrying on demand", RECONNECT_TIMEOUT)


class Pool(ConnectionPool):
    """A ConnectionPool that stops making callers wait once PostgreSQL is known to be away.

    While the database is unreachable, each request would hold one of
    Granian's few blocking threads for the whole pool timeout, and the
    requests behind it would queue in Granian, where no timeout applies: with
    more clients than threads, refusals came after several pool timeouts.
    So once a caller has timed out while connection attempts were failing,
    later callers wait only AWAY_TIMEOUT, and the first one to get a
    connection ends that. Asking still makes the pool try PostgreSQL again,
    so recovery is as quick as before.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._away = False
        self._errors_seen = 0

    def getconn(self, timeout: float | None = None) -> Connection:
        away = self._away
        try:
            conn = super().getconn(min(timeout or self.timeout, AWAY_TIMEOUT) if away else timeout)
        except PoolTimeout:
            # Failed connection attempts since the last timeout: an outage, not a busy pool.
            errors = self.get_stats().get("connections_errors", 0)
            if errors > self._errors_seen and not self._away:
                self._away = True
                log.warning("database unreachable: waiting at most %.2f s for a connection "
                            "until one succeeds", AWAY_TIMEOUT)
            self._errors_seen = errors
            raise
        if away:
            self._away = False
            log.info("database reachable again", extra={"event": "pool.back"})
        return conn


def create_pool(config: Config) -> Pool:
    """Open the pool and wait for it, so that bad credentials fail at start-up."""
    pool = Pool(
        config.conninfo,
        connection_class=Connection,
        kwargs=connection_kwargs(config),
        min_size=config.pool_min,
        max_size=config.pool_max,
        timeout=config.pool_timeout,
        # No max_waiting: the wait queue is already bounded, since only
        # Granian's blocking threads (one request each) ask for connections.
        # (psycopg_pool 3.3 also keeps timed-out waiters counted until a
        # connection comes back, so a limit here could refuse every request
        # after a long outage, before the pool ever tried to reconnect.)
        check=check_on_checkout,
        # BACKUP_SYNC=on: each connection notices a commit the backup service did not confirm.
        configure=durability.configure if config.backup_sync else None,
        reconnect_timeout=RECONNECT_TIMEOUT,
        reconnect_failed=reconnect_failed,
        name=APPLICATION_NAME,
        open=False,
    )
    pool.open(wait=True, timeout=max(config.pool_timeout, 5.0))
    log.info(
        "pool open",
        extra={"event": "pool.open", "min_size": config.pool_min, "max_size": config.pool_max},
    )
    return pool
