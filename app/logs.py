"""JSON log lines on stdout, one per request, each carrying the request id.

Everything goes through python-json-logger: the application's own events,
psycopg's pool warnings, and Granian's server messages (see `granian_config`),
so a log shipper reads one format. Request bodies and headers are never
logged; configuration is logged without its password. Fields taken from the
request are clipped (`clip`), so no client decides how long a line is.
"""

from __future__ import annotations

import logging
import logging.config
import re
import time
import uuid

from flask import Flask, Response, g, has_request_context, request

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}", re.ASCII)
# Characters a log line takes from one request field (path, method): a 64 KB
# path must not make a 64 KB line. What is cut is said at the end.
FIELD_MAX = 512

FORMATTER = {
    "()": "pythonjsonlogger.json.JsonFormatter",
    "fmt": "%(levelname)s %(name)s %(message)s",
    "rename_fields": {"levelname": "level", "name": "logger"},
    "timestamp": True,
}


def _config(level: str) -> dict:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"json": FORMATTER},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "json",
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["stdout"], "level": level},
        "loggers": {
            # The pool logs every checkout at INFO; keep its warnings only.
            "psycopg.pool": {"level": "WARNING"},
        },
    }


def setup(level: str) -> None:
    logging.config.dictConfig(_config(level))


def granian_config(level: str) -> dict:
    """Granian's logging (it merges this over its defaults): JSON, like ours."""
    config = _config(level)
    config["loggers"].update(
        {
            "_granian": {"handlers": ["stdout"], "level": level, "propagate": False},
            "granian.access": {"handlers": ["stdout"], "level": "WARNING", "propagate": False},
        }
    )
    return config


class RequestIdFilter(logging.Filter):
    """Adds the current request id to every record logged during a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context() and "request_id" in g:
            record.request_id = g.request_id
        return True


def _start_request() -> None:
    g.started = time.perf_counter()
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex


def _finish_request(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = g.request_id
    logging.getLogger("app.request").info(
        "request",
        extra={
            # Behind the edge, the address it saw (PROXY_HOPS); otherwise the peer's.
            "client": request.remote_addr,
            "method": clip(request.method),
            "path": clip(request.path),
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - g.started) * 1000, 3),
        },
    )
    return response


def clip(text: str) -> str:
    """`text`, or its first FIELD_MAX characters and how many more there were."""
    if len(text) <= FIELD_MAX:
        return text
    return f"{text[:FIELD_MAX]}...[{len(text) - FIELD_MAX} more characters]"


def init_app(app: Flask) -> None:
    app.before_request(_start_request)
    app.after_request(_finish_request)
