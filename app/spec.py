"""What each route accepts and answers, declared on its handler.

A handler is decorated with its `Operation`: the summary, the body model it
reads, the parameters, the replies it returns on success and the problem
statuses it can raise. The declaration sits next to the code that returns
those statuses, so a reader checks one against the other on one screen, and
`openapi` builds the published document from these declarations and Flask's
routes. This module only holds the vocabulary (typed records, and the
headers, parameters and problem statuses that many routes share); turning it
into OpenAPI is `openapi`'s job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

from .config import MAX_BODY_BYTES
from .payload import JSON_TYPES

View = TypeVar("View", bound=Callable[..., Any])


@dataclass(frozen=True)
class Header:
    """A response header; a shared one (with a `component` name) is described once."""

    description: str
    type: str = "string"
    component: str | None = None


@dataclass(frozen=True)
class Parameter:
    """A request parameter (`openapi` makes the query ones from `Operation.query`)."""

    name: str
    location: str  # "path", "header" or "query"
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    description: str | None = None
    required: bool = False
    component: str | None = None


@dataclass(frozen=True)
class Reply:
    """A success response: its meaning, its body (a model or a literal JSON Schema), its headers."""

    description: str
    body: type[BaseModel] | Mapping[str, Any] | None = None
    headers: Mapping[str, Header] = field(default_factory=dict)


# Every response carries X-Request-ID and the headers of `headers`; every 503
# says when to retry; a PATCH refused 415 says which media types it takes.
REQUEST_ID = Header(
    "Echoes a well-formed X-Request-ID (1-128 of `[A-Za-z0-9._-]`), else a fresh id.",
    component="RequestId",
)
NOSNIFF = Header("Always `nosniff`: the body is never to be sniffed.", component="ContentTypeOptions")
CACHE_CONTROL = Header(
    "`no-cache` on an item (keep it, but revalidate with its ETag), `no-store` on anything else.",
    component="CacheControl",
)
ETAG = Header('The item\'s strong ETag, `"<version>"`.', component="ETag")
RETRY_AFTER = Header("Seconds to wait before retrying.", "integer", component="RetryAfter")
ACCEPT_PATCH = Header("The media types PATCH takes.", component="AcceptPatch")
WWW_AUTHENTICATE = Header(
    'The bearer challenge (RFC 6750): `Bearer realm="items"`, with `error="invalid_token"` when a'
    ' key was sent, or `error="insufficient_scope", scope="write"` on a 403.',
    component="WwwAuthenticate",
)
SHARED_HEADERS = (REQUEST_ID, NOSNIFF, CACHE_CONTROL, ETAG, RETRY_AFTER, ACCEPT_PATCH, WWW_AUTHENTICATE)
EVERY_RESPONSE = {"X-Request-ID": REQUEST_ID, "X-Content-Type-Options": NOSNIFF, "Cache-Control": CACHE_CONTROL}

REQUEST_ID_PARAMETER = Parameter(
    "X-Request-ID",
    "header",
    description="Correlates the request with its log line; echoed back.",
    component="RequestId",
)

# What each error status means, wherever a handler may raise it; the body is
# always a `ProblemDocument`.
PROBLEMS = {
    400: "The query string or the JSON body is malformed.",
    401: "No API key, another scheme, or a key that is malformed, unknown, expired or revoked.",
    403: "The API key is valid but its scope does not allow this (a `read` key on a write).",
    404: "No item has this id (an id that is not a positive bigint included).",
    409: "Another item already has this name.",
    412: "If-Match does not match the item's current ETag; nothing changed.",
    411: "The body came without a Content-Length (chunked bodies are not accepted).",
    413: f"The body is larger than the configured limit ({MAX_BODY_BYTES // 1024} KiB by default).",
    415: "The body is not JSON (PATCH also takes application/merge-patch+json).",
    422: "Valid JSON that breaks the item's rules; `errors` lists every field.",
    503: "The database is unavailable; retry after the given delay.",
}


@dataclass(frozen=True)
class Operation:
    """The OpenAPI operation of one handler; used as its decorator.

    ``@Operation("Create an item", body=ItemIn, replies={201: ...}, problems=(400, ...), scope="write")``

    A route with a scope also answers 401 and 403 (`auth` raises them); the
    document adds both.
    """

    summary: str
    replies: Mapping[int, Reply]
    problems: tuple[int, ...] = ()
    body: type[BaseModel] | None = None
    media_types: tuple[str, ...] = JSON_TYPES
    query: type[BaseModel] | None = None
    parameters: tuple[Parameter, ...] = ()
    # The API key scope the route needs (`read` or `write`); None: public.
    scope: str | None = None

    def __post_init__(self) -> None:
        if self.scope not in (None, "read", "write"):
            raise ValueError(f"{self.summary!r}: unknown scope {self.scope!r}")
        unknown = set(self.problems) - PROBLEMS.keys()
        if unknown:
            raise ValueError(f"{self.summary!r}: no description for problem statuses {sorted(unknown)}")

    def __call__(self, view: View) -> View:
        if view in _OPERATIONS:
            raise ValueError(f"{view.__qualname__} already has an operation")
        _OPERATIONS[view] = self
        return view


# Handler -> its declaration; `declared` reads it back for a route's view function.
_OPERATIONS: dict[Callable[..., Any], Operation] = {}


def declared(view: Callable[..., Any]) -> Operation:
    """The operation a route's view function was decorated with."""
    try:
        return _OPERATIONS[view]
    except KeyError:
        raise LookupError(f"{view.__qualname__} serves a route but declares no spec.Operation") from None
