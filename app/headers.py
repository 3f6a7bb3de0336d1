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

from collections.abc import Callable, Iterable

from flask import Flask, request

from .errors import Problem


def _one_host() -> None:
    environ = request.environ
    if environ.get("SERVER_PROTOCOL") == "HTTP/1.0":
        return  # Host is optional before HTTP/1.1
    host = environ.get("HTTP_HOST", "")
    if not host or "," in host:
        raise Problem(400, "Bad Request", "An HTTP/1.1 request needs exactly one Host header.")


class ResponseHeaders:
    """WSGI middleware that completes every response's headers, Flask's own answers included.

    At the WSGI layer rather than in an `after_request` hook: the headers
    are a list of pairs here, so no response object is touched.
    """

    def __init__(self, wsgi_app: Callable) -> None:
        self._app = wsgi_app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        def start(status: str, headers: list, exc_info=None) -> Callable:
            _complete(status, headers)
            return start_response(status, headers, exc_info)

        return self._app(environ, start)


def _complete(status: str, headers: list[tuple[str, str]]) -> None:
    names = {name.lower(): value for name, value in headers}
    headers.append(("X-Content-Type-Options", "nosniff"))
    if status[:3] in ("204", "304") or names.get("content-length") == "0":
        # Flask's default, text/html, names no body.
        headers[:] = [(name, value) for name, value in headers if name.lower() != "content-type"]
    if "cache-control" not in names:
        headers.append(("Cache-Control", "no-cache" if "etag" in names else "no-store"))


def init_app(app: Flask) -> None:
    app.before_request(_one_host)
    app.wsgi_app = ResponseHeaders(app.wsgi_app)
