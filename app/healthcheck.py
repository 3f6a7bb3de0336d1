"""The container health check: exit 0 when the local ``/health/live`` answers 200.

The image runs this file as a script, ``python -I -S /app/app/healthcheck.py``,
not through the package: Docker starts it every 30 s inside the API
container, under the container's CPU limit. Importing the app (Flask,
psycopg, pydantic) would cost that process ~290 ms of CPU, enough to get the
serving workers throttled for tens of milliseconds each time; the standard
library alone costs ~40 ms. ``python -m app healthcheck`` runs the same code.
"""

from __future__ import annotations

import http.client
import os
import sys
from collections.abc import Mapping

DEFAULT_PORT = 5000


def probe(port: int, timeout: float = 2.0, host: str = "127.0.0.1") -> bool:
    """True when the server on `host`:`port` answers 200 on /health/live."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/health/live")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def main(env: Mapping[str, str] = os.environ) -> int:
    """0 healthy, 1 not answering, 2 a PORT that is no port (same rule as the server's)."""
    raw = env.get("PORT", "").strip() or str(DEFAULT_PORT)
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= 65535):
        print(f"configuration error: PORT must be from 1 to 65535, got {raw!r}", file=sys.stderr)
        return 2
    return 0 if probe(int(raw)) else 1


if __name__ == "__main__":
    sys.exit(main())
