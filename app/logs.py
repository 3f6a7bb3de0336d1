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
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from flask import Flask, has_request_context, request

REQUEST_ID_HEADER = "X-Request-ID"
# Where the request id waits in the WSGI environ for log records made during the request.
ENVIRON_KEY = "items.request_id"
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
        if has_request_context() and ENVIRON_KEY in request.environ:
            record.request_id = request.environ[ENVIRON_KEY]
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


class RequestLogging:
    """WSGI middleware around Flask: the request id and the request's log line.

    Outside Flask's hooks, so it costs no request-context lookups, and it
    sees every answer Flask gives, errors included. Inside ProxyFix, so the
    client address it logs is the one the edge saw.
    """

    def __init__(self, wsgi_app: Callable) -> None:
        self._app = wsgi_app
        self._ids = RequestIds()
        self._log = RequestLog()

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if _REQUEST_ID.fullmatch(incoming) else self._ids.new()
        environ[ENVIRON_KEY] = request_id
        status = 0

        def start(status_line: str, headers: list, exc_info=None) -> Callable:
            nonlocal status
            status = int(status_line[:3])
            headers.append((REQUEST_ID_HEADER, request_id))
            return start_response(status_line, headers, exc_info)

        body = self._app(environ, start)
        if self._log.enabled:
            duration_ms = round((time.perf_counter() - started) * 1000, 3)
            self._log.write(environ.get("REMOTE_ADDR"), environ.get("REQUEST_METHOD", ""),
                            _path(environ), status, duration_ms, request_id)
        return body


def _path(environ: dict) -> str:
    """The request path as Flask's `request.path` gives it (PEP 3333 strings are latin-1)."""
    raw = environ.get("PATH_INFO") or ""
    return "/" + raw.encode("latin-1").decode("utf-8", "replace").lstrip("/")


def clip(text: str) -> str:
    """`text`, or its first FIELD_MAX characters and how many more there were."""
    if len(text) <= FIELD_MAX:
        return text
    return f"{text[:FIELD_MAX]}...[{len(text) - FIELD_MAX} more characters]"


def init_app(app: Flask) -> None:
    """Wrap the app; call it before any other WSGI middleware (ProxyFix) wraps it."""
    app.wsgi_app = RequestLogging(app.wsgi_app)
