"""JSON log lines on stdout, one per request, each carrying the request id.

Everything goes through python-json-logger: the application's own events,
psycopg's pool warnings, and Granian's server messages (see `granian_config`),
so a log shipper reads one format. Request bodies and headers are never
logged; configuration is logged without its password. Fields taken from the
request are clipped (`clip`), so no client decides how long a line is.

The one line per request is the exception to "through `logging`": it is
made by `RequestLog`, the same fields in the same order as the formatter
would write them, without `logging`'s machinery. Built through `logging`,
that line cost a fifth of the API's CPU per request on `/health/live`
(bench/README.md); `LOG_LEVEL` still decides whether it is written.

Request lines reach stdout in batches (`StdoutHandler`): up to PIPE_BUF
bytes per write, at least every FLUSH_EVERY seconds, before any other record
(so the order holds) and when the worker exits. In a container every write
to stdout costs the engine's log path (containerd-shim, dockerd) more CPU
than it costs us; batched, a fraction. A worker killed outright loses at
most FLUSH_EVERY seconds of request lines, never another record.
"""

from __future__ import annotations

import itertools
import logging
import logging.config
import os
import re
import select
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii as _string

from flask import Flask, has_request_context, request

from . import periodic

REQUEST_ID_HEADER = "X-Request-ID"
# Where the request id waits in the WSGI environ for log records made during the request.
ENVIRON_KEY = "items.request_id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}", re.ASCII)
# Characters a log line takes from one request field (path, method): a 64 KB
# path must not make a 64 KB line. What is cut is said at the end.
FIELD_MAX = 512
# Request lines are written at least this often (seconds), and whenever a batch reaches PIPE_BUF
# bytes: a write up to that size to a pipe is atomic, so workers sharing stdout never cut a line.
FLUSH_EVERY = 0.5
BATCH_BYTES = select.PIPE_BUF

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
                "()": "app.logs.StdoutHandler",
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


class StdoutHandler(logging.StreamHandler):
    """The stdout handler: records written as they come, request lines (`add_line`) in batches.

    Everything happens under the handler's lock, so a record and a batch never interleave, and
    a record is written after every request line that came before it.
    """

    def __init__(self, stream=None) -> None:
        super().__init__(stream or sys.stdout)
        self._batch: list[str] = []
        self._size = 0

    def add_line(self, line: str) -> None:
        with self.lock:
            if self._size + len(line) > BATCH_BYTES:  # lines are ASCII: characters are bytes
                self._write_batch()
            self._batch.append(line)
            self._size += len(line)

    def write_batch(self) -> None:
        with self.lock:
            self._write_batch()

    def _write_batch(self) -> None:
        if self._batch:
            lines, self._batch, self._size = self._batch, [], 0
            self.stream.write("".join(lines))
            self.stream.flush()

    def emit(self, record: logging.LogRecord) -> None:
        self._write_batch()  # `handle()` holds the lock
        super().emit(record)

    def flush(self) -> None:
        with self.lock:
            self._write_batch()
        super().flush()


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
    """Makes the request line exactly as the JSON formatter would, without `logging`'s machinery,
    and hands it to the stdout handler's batch, which a thread writes out every FLUSH_EVERY s.

    The line is a template with each value encoded as `json` encodes it (strings by its own C
    escaper, ASCII only; numbers by `repr`): a seventh of the time of encoding a dict
    (bench/README.md). tests/api/test_logs.py compares it with `json.dumps` of the same fields.
    """

    def __init__(self) -> None:
        logger = logging.getLogger("app.request")
        handlers = [h for h in logging.getLogger().handlers if isinstance(h, StdoutHandler)]
        self._handler = handlers[0] if handlers else None
        self.enabled = logger.isEnabledFor(logging.INFO) and self._handler is not None
        if self.enabled:
            FLUSHER.follow(self._handler)

    def write(self, client: str | None, method: str, path: str, status: int, duration_ms: float,
              request_id: str) -> None:
        # Behind the edge, `client` is the address it saw (PROXY_HOPS); otherwise the peer's.
        self._handler.add_line(
            '{"level": "INFO", "logger": "app.request", "message": "request", '
            f'"client": {"null" if client is None else _string(client)}, '
            f'"method": {_string(clip(method))}, "path": {_string(clip(path))}, "status": {status:d}, '
            f'"duration_ms": {duration_ms!r}, "request_id": {_string(request_id)}, '
            f'"timestamp": "{datetime.now(UTC).isoformat()}"}}\n'
        )


class Flusher:
    """Writes the current stdout handler's batch every FLUSH_EVERY seconds, and when the process
    exits: one timer per process, whichever handler `setup()` made last (tests make many apps)."""

    def __init__(self) -> None:
        self.handler: StdoutHandler | None = None
        self._pid = 0

    def follow(self, handler: StdoutHandler) -> None:
        self.handler = handler
        if self._pid != os.getpid():  # a worker forked from a process that had one
            self._pid = os.getpid()
            periodic.every(FLUSH_EVERY, self.flush, "log-flush")

    def flush(self) -> None:
        if self.handler is not None:
            self.handler.write_batch()


FLUSHER = Flusher()


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
