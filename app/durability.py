"""Writes with BACKUP_SYNC=on: acknowledged only once the backup service has them, never hung.

With BACKUP_SYNC=on PostgreSQL names the backup service's WAL receiver a synchronous standby,
so a commit returns only when the WAL is on the backup volume too. If the backup service is
down, a commit waits without limit: `statement_timeout` does not end that wait. A cancel does,
but the statement then *succeeds*, with a WARNING that it "has already committed locally, but
might not have been replicated to the standby". So here:

- every write runs under a deadline (DB_SYNC_COMMIT_TIMEOUT); a watcher thread cancels the
  statements that outlive it;
- a write that comes back with that WARNING (our cancel or anyone's) is answered 503: it may
  or may not survive the loss of the data volume, so it is never acknowledged as saved;
- after such a write, writes are *paused*: they are refused at once (503, nothing written),
  except one at a time that first probes with an empty committed transaction; when a probe
  commits without the warning, the backup service is back and writes resume by themselves.

Reads never come here. With BACKUP_SYNC=off (the default) none of this exists: handlers get
the pool itself, so the normal path costs nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from psycopg import Connection, errors
from psycopg_pool import ConnectionPool

from .errors import RETRY_AFTER_SECONDS, Problem

log = logging.getLogger("app.durability")

# How PostgreSQL says a synchronous-replication wait was given up (syncrep.c, severity WARNING).
SYNC_WAIT_CANCELED = "canceling wait for synchronous replication"
# A transaction that writes WAL but no data (a logical-decoding message, which nothing here
# decodes): its commit waits for the standby like any write. (A transaction that only takes
# an xid writes no WAL before its commit record, and PostgreSQL does not make it wait.)
PROBE = "SELECT pg_logical_emit_message(true, 'items-api', 'backup sync probe')"
# Whether the current thread's last statement came back with that warning (see `configure`).
_local = threading.local()


def _unconfirmed() -> Problem:
    return Problem(
        503,
        "Service Unavailable",
        "The database saved this write but the backup service did not confirm it in time "
        "(BACKUP_SYNC=on): it may or may not be kept. Check before retrying.",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _paused() -> Problem:
    return Problem(
        503,
        "Service Unavailable",
        "Writes are paused: the backup service is not confirming them (BACKUP_SYNC=on). "
        "Nothing was written; retry shortly.",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def configure(conn: Connection) -> None:
    """The pool's `configure` in sync mode: every connection notices a given-up wait.

    Notices arrive in the thread that runs the statement, so a thread-local flag tells
    that thread's write whether its commit was confirmed.
    """
    conn.add_notice_handler(_notice)


def _notice(diag: errors.Diagnostic) -> None:
    if SYNC_WAIT_CANCELED in (diag.message_primary or ""):
        _local.canceled = True


class Deadlines:
    """A watcher thread that cancels the statements still running at their deadline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._running: dict[int, tuple[float, Connection]] = {}
        threading.Thread(target=self._watch, name="sync-commit-deadlines", daemon=True).start()

    @contextmanager
    def bounded(self, conn: Connection, seconds: float) -> Iterator[None]:
        with self._cond:
            self._running[id(conn)] = (time.monotonic() + seconds, conn)
            self._cond.notify()
        try:
            yield
        finally:
            # Under the lock: a cancel is never sent once the statement is over.
            with self._cond:
                self._running.pop(id(conn), None)

    def _watch(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for key, (deadline, conn) in list(self._running.items()):
                    if deadline <= now:
                        del self._running[key]
                        self._cancel(conn)
                soonest = min((d for d, _ in self._running.values()), default=None)
                self._cond.wait(None if soonest is None else max(soonest - now, 0.001))

    @staticmethod
    def _cancel(conn: Connection) -> None:
        try:
            conn.cancel_safe(timeout=2.0)
        except Exception as e:  # the statement's own error tells the caller
            log.warning("could not cancel a write past its deadline: %s", e)


class SyncWrites:
    """`connection()` for writes in BACKUP_SYNC=on mode (see the module's docstring)."""

    def __init__(self, pool: ConnectionPool, timeout: float):
        self._pool = pool
        self._timeout = timeout
        self._deadlines = Deadlines()
        self._paused = False
        self._probing = threading.Lock()

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        if self._paused:
            self._probe()
        with self._pool.connection() as conn:
            _local.canceled = False
            with self._deadlines.bounded(conn, self._timeout):
                yield conn
            if _local.canceled:
                self._pause()
                raise _unconfirmed()

    def _probe(self) -> None:
        """While paused: one caller at a time checks whether the standby confirms again."""
        if not self._probing.acquire(blocking=False):
            raise _paused()
        try:
            with self._pool.connection() as conn:
                _local.canceled = False
                try:
                    with self._deadlines.bounded(conn, self._timeout):
                        conn.execute(PROBE)
                except errors.QueryCanceled:
                    _local.canceled = True
                if _local.canceled:
                    raise _paused()
            self._paused = False
            log.info("the backup service confirms writes again: writes resumed",
                     extra={"event": "sync.resumed"})
        finally:
            self._probing.release()

    def _pause(self) -> None:
        if not self._paused:
            self._paused = True
            log.warning("the backup service did not confirm a write within %.1f s: writes paused "
                        "until it does (BACKUP_SYNC=on)", self._timeout, extra={"event": "sync.paused"})
