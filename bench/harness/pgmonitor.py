"""PostgreSQL connections per candidate during the load: one `psql` session samples
`pg_stat_activity` four times a second (role `app`, by client address). Ours is checked against
its pool budget; the peers' counts show what their pools do."""

from __future__ import annotations

import contextlib
import subprocess
import threading
from typing import Self

from .config import CEILING
from .records import ConnectionPeak, PgConnections
from .shell import Docker
from .stack import Candidate


class PgMonitor:
    """Samples while it runs (a context manager); `current` names the candidate under load and how."""

    QUERY = ("SELECT coalesce(string_agg(a || '=' || n, ' '), '') FROM (SELECT host(client_addr) a, "
             "count(*) n FROM pg_stat_activity WHERE usename = 'app' AND backend_type = 'client backend' "
             "GROUP BY 1) s;\n")

    def __init__(self, docker: Docker, container: str):
        self.proc = subprocess.Popen(
            [docker.binary, "exec", "-i", container, "psql", "-U", "postgres", "-d", "appdb", "-AtqX"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.peak: dict[str, int] = {}                            # client address -> peak
        self.peak_loaded: dict[tuple[str, int, str], int] = {}    # (candidate, connections, address) -> peak
        self.current: tuple[str, int] | None = None               # (candidate, connections) under load now
        self.samples = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _sample(self) -> str:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(self.QUERY)
        self.proc.stdin.flush()
        return self.proc.stdout.readline()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                line = self._sample()
            except (OSError, ValueError):
                return
            if not line:
                return
            self.samples += 1
            current = self.current
            for part in line.split():
                ip, _, n = part.partition("=")
                self.peak[ip] = max(self.peak.get(ip, 0), int(n))
                if current:
                    key = (*current, ip)
                    self.peak_loaded[key] = max(self.peak_loaded.get(key, 0), int(n))
            self._stop.wait(0.25)

    def stop(self) -> None:
        self._stop.set()
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self.proc.stdin.close()  # type: ignore[union-attr]
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def summary(self, candidates: dict[str, Candidate], connection_counts: tuple[int, ...]) -> PgConnections:
        """Each candidate's peaks (the ceiling never connects), by its address on the backend network."""
        out = PgConnections(samples=self.samples)
        for key, c in candidates.items():
            if c.backend_ip and key != CEILING:
                peak = ConnectionPeak(self.peak.get(c.backend_ip, 0))
                for conns in connection_counts:
                    v = self.peak_loaded.get((key, conns, c.backend_ip))
                    if v is not None:
                        peak.under_own_load[conns] = v
                out.peaks[key] = peak
        return out
