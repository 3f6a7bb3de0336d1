"""Health endpoints, for people, orchestrators and container health checks.

``/health/live`` says the process answers and never touches the database, so
a database outage never gets the API container restarted. ``/health/ready``
and ``/health`` ask the pool for a connection and run ``SELECT 1``, within
two seconds.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, json

from . import spec
from .errors import RETRY_AFTER_SECONDS
from .schemas import Health

bp = Blueprint("health", __name__)
log = logging.getLogger("app.health")

DATABASE_TIMEOUT = 2.0

# What /health and /health/ready answer (see `_report`).
_REPORTS = {
    200: spec.Reply("Healthy.", Health),
    503: spec.Reply(
        f"The database cannot be reached within {DATABASE_TIMEOUT:g} s.",
        Health,
        {"Retry-After": spec.RETRY_AFTER},
    ),
}
# The body of /health/live.
_ALIVE = {
    "type": "object",
    "properties": {"status": {"const": "ok"}},
    "required": ["status"],
}
_ALIVE_BODY = json.dumps({"status": "ok"})


def _database_ok() -> bool:
    try:
        with current_app.extensions["pool"].connection(timeout=DATABASE_TIMEOUT) as conn:
            conn.execute("SELECT 1")
    except Exception as e:  # any failure means "not ready"; the reason goes to the log
        log.warning("database check failed: %s: %s", type(e).__name__, e)
        return False
    return True


def _report(database_ok: bool) -> Response:
    status = "ok" if database_ok else "error"
    body = {"status": status, "checks": {"app": "ok", "database": status}}
    response = Response(json.dumps(body), 200 if database_ok else 503, mimetype="application/json")
    if not database_ok:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


@bp.get("/health")
@spec.Operation("Application and database health", replies=_REPORTS)
def health() -> Response:
    return _report(_database_ok())


@bp.get("/health/ready")
@spec.Operation("Readiness: the pool can run SELECT 1", replies=_REPORTS)
def ready() -> Response:
    return _report(_database_ok())


@bp.get("/health/live")
@spec.Operation(
    "Liveness: the process answers (never touches the database)",
    replies={200: spec.Reply("Alive.", _ALIVE)},
)
def live() -> Response:
    return Response(_ALIVE_BODY, 200, mimetype="application/json")
