"""``/docs``: the interactive documentation of ``/openapi.json`` (Swagger UI), served offline.

The page is ours (`docs_page/`); Swagger UI's built files come from the
flask-swagger-ui wheel, served by the API itself, so the page works without a
CDN and nothing it loads leaves the stack (its Content-Security-Policy allows
this origin only, and Swagger UI's online validator is off). "Authorize"
takes an API key; "Try it out" then calls the API from the browser.

The page documents the API rather than being part of it, so it is not in
`/openapi.json`; like the document it is public. ``API_DOCS=off`` leaves the
routes out altogether (404).
"""

from __future__ import annotations

from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, Flask, Response, abort, send_from_directory

from . import spec

bp = Blueprint("docs", __name__)

PAGE = Path(__file__).parent / "docs_page"
SWAGGER_UI = Path(flask_swagger_ui.__file__).parent / "dist"
# The files of Swagger UI's distribution the page loads; nothing else of the folder is served.
ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png", "favicon-16x16.png"})
# This origin only: no inline script, no other host, no framing. Swagger UI shows its icons as
# data: images and sets element styles from its scripts.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


# Declared like every route (public: no scope), though left out of the document it renders.
@bp.get("/docs")
@spec.Operation("This documentation, as an interactive page", replies={200: spec.Reply("The HTML page.")})
def page() -> Response:
    return send_from_directory(PAGE, "index.html", mimetype="text/html")


@bp.get("/docs/start.js")
@spec.Operation("The page's script", replies={200: spec.Reply("JavaScript.")})
def start() -> Response:
    return send_from_directory(PAGE, "start.js", mimetype="text/javascript")


@bp.get("/docs/assets/<name>")
@spec.Operation("Swagger UI's files", replies={200: spec.Reply("CSS, JavaScript or an icon.")}, problems=(404,))
def asset(name: str) -> Response:
    if name not in ASSETS:
        abort(404)
    return send_from_directory(SWAGGER_UI, name)


@bp.after_request
def _policy(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def init_app(app: Flask, *, enabled: bool) -> None:
    if enabled:
        app.register_blueprint(bp)
