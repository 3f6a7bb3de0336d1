"""Items API: Flask, a psycopg connection pool and PostgreSQL.

`create_app()` is the only entry point: Granian calls it in each worker
process (``python -m app serve``), and the tests call it directly.
"""

from __future__ import annotations

import logging

import psycopg
from flask import Flask
from flask.sessions import NullSession, SessionInterface
from psycopg_pool import PoolTimeout
from werkzeug.middleware.proxy_fix import ProxyFix

from . import auth, db, docs, durability, errors, headers, logs, openapi
from .config import Config

log = logging.getLogger("app")


class StartupError(Exception):
    """The application cannot start; the message says why, without secrets."""


class NoSessions(SessionInterface):
    """No cookie sessions: the API is stateless and has no SECRET_KEY (the default interface
    would look for one on every request to find out)."""

    def open_session(self, app: Flask, request) -> NullSession:
        return NullSession()

    def save_session(self, app: Flask, session, response) -> None:
        pass


class App(Flask):
    """Flask without the two things this API never uses: sessions, and coroutine views or hooks.

    Flask asks of every view and hook, on every request, whether it is a coroutine to run in an
    event loop; together with the session lookup that cost ~5% of the CPU of `/health/live`
    (bench/README.md). tests/api/test_app.py checks that no view, hook or error handler is one.
    """

    session_interface = NoSessions()

    def ensure_sync(self, func):
        return func


def create_app(config: Config | None = None) -> Flask:
    config = config or Config.from_env()
    logs.setup(config.log_level)
    app = App(__name__)
    # `/items//5` (or `/items/%2F5`) names nothing: a 404, not a redirect to `/items/5`.
    app.url_map.merge_slashes = False
    # Werkzeug answers 413 from Content-Length before reading, and stops a
    # chunked body as soon as it passes the limit.
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    logs.init_app(app)  # the request id and log line, around everything below
    if config.proxy_hops:
        # The client's address and scheme as the edge saw them (request.remote_addr, logs).
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=config.proxy_hops, x_proto=config.proxy_hops)
    try:
        pool = db.create_pool(config)
    except PoolTimeout:
        raise StartupError(
            "cannot connect to the database (see the connection errors above)"
        ) from None
    try:
        with pool.connection() as conn:
            row = conn.execute("SELECT key FROM cursor_key").fetchone()
    except psycopg.errors.UndefinedTable:
        pool.close()
        raise StartupError("the database is not migrated: run `python -m app migrate`") from None
    app.extensions["pool"] = pool
    # Where writes get their connection: the pool itself, or with BACKUP_SYNC=on the pool behind
    # bounded waits for the backup service.
    app.extensions["writes"] = (
        durability.SyncWrites(pool, config.sync_commit_timeout) if config.backup_sync else pool
    )
    app.extensions["cursor_key"] = bytes(row[0])

    if config.metrics_enabled:
        from . import metrics  # only now: see app/metrics.py

        metrics.init_app(app, pool)
    headers.init_app(app)
    auth.init_app(app, pool, required=config.auth_required)  # before any handler reads the request
    errors.register(app)
    for blueprint in openapi.BLUEPRINTS:  # the routes the document describes
        app.register_blueprint(blueprint)
    docs.init_app(app, enabled=config.docs_enabled)  # the page that renders the document
    log.info("app ready", extra={"event": "app.ready", "database": config.conninfo})
    return app
