"""Headers every response carries, and the Host rule every request meets.

Responses are never sniffed (``X-Content-Type-Options: nosniff``) and always
say how they may be cached: an item (it has an ETag) may be kept but must be
revalidated (``no-cache``), anything else, errors and listings included, is
never stored (``no-store``). A response that has no body type gets no
Content-Type at all, rather than Flask's default ``text/html`` (an automatic
``OPTIONS`` answer, a 204, a 304).

HTTP/1.1 requires exactly one Host header (RFC 9112, section 3.2); a request
without one, or with two (Granian joins them with a comma), is a 400.
"""

from __future__ import annotations

from flask import Flask, Response, request

from .errors import Problem


def _one_host() -> None:
    if request.environ.get("SERVER_PROTOCOL") == "HTTP/1.0":
        return  # Host is optional before HTTP/1.1
    host = request.environ.get("HTTP_HOST", "")
    if not host or "," in host:
        raise Problem(400, "Bad Request", "An HTTP/1.1 request needs exactly one Host header.")


def _response_headers(response: Response) -> Response:
    response.headers["X-Content-Type-Options"] = "nosniff"
    if response.status_code in (204, 304) or response.calculate_content_length() == 0:
        response.headers.pop("Content-Type", None)  # Flask's default, text/html, names no body
    if "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-cache" if "ETag" in response.headers else "no-store"
    return response


def init_app(app: Flask) -> None:
    app.before_request(_one_host)
    app.after_request(_response_headers)
