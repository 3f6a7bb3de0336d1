"""Every error leaves as RFC 9457 problem details (``application/problem+json``).

Handlers raise `Problem`; Werkzeug's HTTP errors (404 for unknown paths, 405
with its ``Allow`` header, 413 ...) and database outages are turned into the
same shape here, so no error body ever carries a stack trace, SQL text or a
secret.
"""

from __future__ import annotations

import logging

import psycopg
import psycopg_pool
from flask import Flask, Response, json
from werkzeug.exceptions import HTTPException

PROBLEM_TYPE = "application/problem+json"
# How long a client should wait before retrying when the database is away.
RETRY_AFTER_SECONDS = 1

log = logging.getLogger("app.errors")


class Problem(Exception):
    """An error response: status, a short title and a human-readable detail."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        errors: list[dict[str, str]] | None = None,
        omitted: int = 0,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors
        # Errors left out of `errors` (the list is capped).
        self.omitted = omitted
        self.headers = headers or {}


def problem_response(problem: Problem) -> Response:
    body = {
        "type": "about:blank",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
    }
    if problem.errors is not None:
        body["errors"] = problem.errors
    if problem.omitted:
        body["errors_omitted"] = problem.omitted
    response = Response(json.dumps(body), problem.status, mimetype=PROBLEM_TYPE)
    response.headers.update(problem.headers)
    return response


def from_http_exception(e: HTTPException) -> Response:
    # Keep Werkzeug's headers (405 carries Allow) but not its HTML content type.
    headers = {k: v for k, v in e.get_headers() if k.lower() != "content-type"}
    status = e.code or 500
    if status == 413:
        # The rest of the body was never read, so the connection cannot carry
        # another request: say so, and Granian closes it after this answer.
        # (Hop-by-hop headers are a server's business in WSGI, but only the
        # app knows the body was left unread.)
        headers["Connection"] = "close"
    return problem_response(Problem(status, e.name, e.description or e.name, headers=headers))


def database_unavailable(e: Exception) -> Response:
    """The pool could not hand out a working connection in time."""
    log.warning("database unavailable: %s: %s", type(e).__name__, e)
    return problem_response(
        Problem(
            503,
            "Service Unavailable",
            "The database is not available right now; retry shortly.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    )


def unexpected(e: Exception) -> Response:
    log.exception("unhandled error")
    return problem_response(
        Problem(500, "Internal Server Error", "The server failed to handle the request.")
    )


def register(app: Flask) -> None:
    app.register_error_handler(Problem, problem_response)
    app.register_error_handler(HTTPException, from_http_exception)
    # PoolTimeout covers exhaustion and outages; TooManyRequests a full wait
    # queue; OperationalError a connection lost in the middle of a request.
    app.register_error_handler(psycopg_pool.PoolTimeout, database_unavailable)
    app.register_error_handler(psycopg_pool.TooManyRequests, database_unavailable)
    app.register_error_handler(psycopg.OperationalError, database_unavailable)
    app.register_error_handler(Exception, unexpected)
