"""Restart a server that is alive but no longer answers.

Docker restarts containers whose main process exits, never ones that are
merely unhealthy, and no container here may hold the Docker socket to do it
for them. So Granian's main process watches its own workers: a thread asks
``/health/live`` on the local port every few seconds, and when no answer has
come for `timeout` seconds (a worker stopped, spinning, or with every
blocking thread stuck) it shuts the server down and makes it exit non-zero.
The restart policy (`restart: unless-stopped` under Compose, the Swarm
restart policy under Swarm) then starts a fresh container.

A slow answer is still an answer: the watchdog only fires when nothing at
all came back for the whole window, so load alone never triggers it. The
window starts at the first answer (a slow start is not a wedge), or after
`START_GRACE` seconds if the server never answers at all.
"""

from __future__ import annotations

import http.client
import io
import logging
import os
import socket
import signal
import threading
import time

from .healthcheck import probe

log = logging.getLogger("app.watchdog")

# Seconds a server may take to give its first answer before the watchdog
# counts the silence anyway (workers import the app and open the pool).
START_GRACE = 60.0
# The process exits this way when it had to be restarted (EX_SOFTWARE).
EXIT_WEDGED = 70


class Watchdog:
    """Probes the local server; on a long silence, stops it and exits non-zero."""

    def __init__(self, host: str, port: int, timeout: float, stop_grace: float):
        # A server bound to every address answers on loopback.
        self.host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        self.port = port
        self.timeout = timeout
        # Granian's own shutdown may itself hang on a stuck worker; after this
        # many seconds the process exits regardless.
        self.stop_grace = stop_grace
        self.fired = threading.Event()
        self.every = max(1.0, timeout / 6)

    def start(self) -> None:
        _warm_up(self.host)
        threading.Thread(target=self._run, name="watchdog", daemon=True).start()

    def _run(self) -> None:
        # Until the first answer, probe briefly and often, so the watchdog is
        # armed within a second or two of the server answering; a server that
        # has not answered START_GRACE seconds after start is armed anyway.
        last_answer, armed = time.monotonic() + START_GRACE, False
        while True:
            started = time.monotonic()
            wait = min(self.timeout / 2, 10.0) if armed else 1.0
            if probe(self.port, timeout=wait, host=self.host):
                last_answer, armed = time.monotonic(), True
            elif time.monotonic() - last_answer >= self.timeout:
                self._fire(time.monotonic() - last_answer)
                return
            pause = self.every if armed else 1.0
            time.sleep(max(0.0, pause - (time.monotonic() - started)))

    def _fire(self, silent_for: float) -> None:
        log.error(
            "no answer from /health/live: stopping the server so that it is restarted",
            extra={"event": "server.wedged", "silent_seconds": round(silent_for, 1)},
        )
        self.fired.set()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(self.stop_grace)
        log.error("the server did not stop in time: exiting", extra={"event": "server.wedged.exit"})
        logging.shutdown()
        os._exit(EXIT_WEDGED)


def _warm_up(host: str) -> None:
    """Import, in this thread, what a probe would import lazily on its first use.

    Granian forks its workers from this process. A fork while the watchdog
    thread holds a module's import lock (the ``idna`` codec behind a host
    name, the header parser) leaves that lock held for good in the worker,
    which then deadlocks on its own first import of that module: a server
    that never answers at all. Seen, and reproduced, with probes at start-up.
    """
    socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)  # the idna codec, the resolver
    http.client.parse_headers(io.BytesIO(b"Content-Type: application/json\r\n\r\n"))
