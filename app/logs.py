"""JSON log lines on stdout, one per request, each carrying the request id.

Everything goes through python-json-logger: the application's own events,
psycopg's pool warnings, and Granian's server messages (see `granian_config`),
so a log shipper reads one format. Request bodies and headers are never
logged; configuration is logged without its password. Fields taken from the
request are clipped (`clip`), so no client decides how long a line is.

The one line per request is the exception to "through `logging`": it is
written by `RequestLog`, the same fields in the same order as the formatter
would write them, straight to the stdout handler's stream under that
handler's lock. Built through `logging`, that line cost a fifth of the
API's CPU per request on `/health/live` (bench/README.md); `LOG_LEVEL`
still decides whether it is written.
"""

from __future__ import annotations

import itertools
import json
import logging
import logging.config
import os
import re
import time
from datetime import UTC, datetime

from flask import Flask, Response, current_app, g, has_request_context, request

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


class RequestIds:
    """Request ids for requests that bring none: 32 hex digits, unique without a syscall each.

    A random half, drawn once per worker (create_app runs after the fork),
    and a counter: the edge makes its own ids, so these are for direct
    clients, where uniqueness matters and unpredictability does not.
    """

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count(1)

    def new(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


class RequestLog:
    """Writes the request line exactly as the JSON formatter would, without `logging`'s machinery."""

    _encode = json.JSONEncoder(separators=(", ", ": ")).encode

    def __init__(self) -> None:
        logger = logging.getLogger("app.request")
        self.enabled = logger.isEnabledFor(logging.INFO)
        handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
        self._handler = handlers[0] if handlers else None

    def write(self, client: str | None, method: str, path: str, status: int, duration_ms: float,
              request_id: str) -> None:
        line = self._encode({
            "level": "INFO", "logger": "app.request", "message": "request",
            # Behind the edge, the address it saw (PROXY_HOPS); otherwise the peer's.
            "client": client, "method": clip(method), "path": clip(path), "status": status,
            "duration_ms": duration_ms, "request_id": request_id,
            "timestamp": datetime.now(UTC).isoformat(),
        })
        handler = self._handler
        if handler is None:
            return
        with handler.lock:
            handler.stream.write(line + "\n")
            handler.stream.flush()


def _start_request() -> None:
    g.started = time.perf_counter()
    incoming = request.environ.get("HTTP_X_REQUEST_ID", "")
    g.request_id = incoming if _REQUEST_ID.fullmatch(incoming) else current_app.extensions["request_ids"].new()


def _finish_request(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = g.request_id
    request_log: RequestLog = current_app.extensions["request_log"]
    if request_log.enabled:
        duration_ms = round((time.perf_counter() - g.started) * 1000, 3)
        request_log.write(request.remote_addr, request.method, request.path, response.status_code,
                          duration_ms, g.request_id)
    return response


def clip(text: str) -> str:
    """`text`, or its first FIELD_MAX characters and how many more there were."""
    if len(text) <= FIELD_MAX:
        return text
    return f"{text[:FIELD_MAX]}...[{len(text) - FIELD_MAX} more characters]"


def init_app(app: Flask) -> None:
    app.extensions["request_ids"] = RequestIds()
    app.extensions["request_log"] = RequestLog()
    app.before_request(_start_request)
    app.after_request(_finish_request)
