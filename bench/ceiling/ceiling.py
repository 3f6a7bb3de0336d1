"""The framework ceiling: a Flask route that returns a constant.

Served by `serve_ceiling.py` with the product's own Granian settings, in the
product's image, so that `GET /items/<id>` of the product divided by this
route's throughput says what the database path (pool, query, row) costs on
top of Flask and Granian themselves. The body has the size and shape of an
item, so both send the same bytes.

With CEILING_QUERY set, the same route first runs that statement on a
connection its thread holds (CEILING_DATABASE_URL): the round-trip floor, what
one trip to PostgreSQL costs on top of Flask and Granian, with no pool, key
check, log line or metrics around it.
"""

import os
import threading

import psycopg
from flask import Flask, Response

BODY = (
    '{"id": 4242, "name": "seed-4242", "description": "Seeded item number 4242", "price": 43.42,'
    ' "quantity": 242, "created_at": "2026-01-01T00:00:00.000000+00:00",'
    ' "updated_at": "2026-01-01T00:00:00.000000+00:00", "version": 1}'
)
READY = '{"status": "ok", "checks": {"app": "ok", "database": "ok"}}'


class RoundTrip:
    """`query` on a connection per thread, opened on first use and held (autocommit).

    A connection that fails (PostgreSQL restarted, say) fails its request and is dropped, so the
    thread's next request opens a new one instead of failing for good.
    """

    def __init__(self, query: str, url: str):
        self.query, self.url = query, url
        self.local = threading.local()

    def __call__(self) -> None:
        cursor = getattr(self.local, "cursor", None)
        if cursor is None:
            cursor = self.local.cursor = psycopg.connect(self.url, autocommit=True).cursor()
        try:
            cursor.execute(self.query).fetchone()
        except psycopg.OperationalError:
            self.local.cursor = None
            cursor.connection.close()
            raise


def create_app() -> Flask:
    app = Flask(__name__)
    query = os.environ.get("CEILING_QUERY")
    round_trip = RoundTrip(query, os.environ["CEILING_DATABASE_URL"]) if query else None

    @app.get("/items/<item_id>")
    def constant(item_id: str) -> Response:
        if round_trip is not None:
            round_trip()
        return Response(BODY, 200, mimetype="application/json")

    # /health/live too: the product's server settings include its watchdog, which probes it.
    @app.get("/health/ready")
    @app.get("/health/live")
    def ready() -> Response:
        return Response(READY, 200, mimetype="application/json")

    return app
