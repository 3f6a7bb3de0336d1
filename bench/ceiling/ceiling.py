"""The framework ceiling: a Flask route that returns a constant.

Served by `serve_ceiling.py` with the product's own Granian settings, in the
product's image, so that `GET /items/<id>` of the product divided by this
route's throughput says what the database path (pool, query, row) costs on
top of Flask and Granian themselves. The body has the size and shape of an
item, so both send the same bytes.
"""

from flask import Flask, Response

BODY = (
    '{"id": 4242, "name": "seed-4242", "description": "Seeded item number 4242", "price": 43.42,'
    ' "quantity": 242, "created_at": "2026-01-01T00:00:00.000000+00:00",'
    ' "updated_at": "2026-01-01T00:00:00.000000+00:00", "version": 1}'
)
READY = '{"status": "ok", "checks": {"app": "ok", "database": "ok"}}'


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get("/items/<item_id>")
    def constant(item_id: str) -> Response:
        return Response(BODY, 200, mimetype="application/json")

    # /health/live too: the product's server settings include its watchdog, which probes it.
    @app.get("/health/ready")
    @app.get("/health/live")
    def ready() -> Response:
        return Response(READY, 200, mimetype="application/json")

    return app
