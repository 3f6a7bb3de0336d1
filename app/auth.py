"""Who may call what: bearer API keys, checked before anything else on `/items`.

Each handler declares the scope it needs (`spec.Operation(scope=...)`); a
route without one (health, the OpenAPI document) is public. The check runs
before the handler reads a body or an id, so a request without a valid key
learns nothing but 401, whatever else is wrong with it (RFC 6750 for the
``WWW-Authenticate`` values).

Verified keys are cached in each worker for `CACHE_SECONDS`, so a busy key
costs no database round trip, and a revoked key stops working everywhere
within that window; expiry is checked on every request against the cached
expiry time. The only writes are last-use times, at most about once a
minute per key (`apikeys.TOUCH`). A key never reaches a log or a body.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from threading import Lock

from flask import Flask, current_app, request
from psycopg_pool import ConnectionPool
from werkzeug.exceptions import MethodNotAllowed

from . import apikeys, spec
from .errors import Problem

log = logging.getLogger("app.auth")

# Seconds a worker trusts what it read about a key: the revocation window.
CACHE_SECONDS = 4.0
# Seconds between two last-use writes for one key from one worker.
TOUCH_SECONDS = 60.0
REALM = 'Bearer realm="items"'


@dataclass
class _Entry:
    key: apikeys.StoredKey
    fetched: float
    touched: float = field(default=-TOUCH_SECONDS)


class KeyCache:
    """The live keys this worker has verified recently, by public id."""

    def __init__(self, pool: ConnectionPool):
        self._pool = pool
        self._entries: dict[str, _Entry] = {}
        self._lock = Lock()

    def get(self, key_id: str) -> apikeys.StoredKey | None:
        """The live key with this id: from the cache while fresh, else from the database."""
        now = time.monotonic()
        entry = self._entries.get(key_id)
        if entry is not None and now - entry.fetched < CACHE_SECONDS:
            return entry.key
        with self._pool.connection() as conn:
            row = conn.execute(apikeys.LOOKUP, (key_id,)).fetchone()
        with self._lock:
            if row is None:
                self._entries.pop(key_id, None)
                return None
            stored = apikeys.StoredKey(row[0], row[1], bytes(row[2]), row[3])
            touched = entry.touched if entry is not None else -TOUCH_SECONDS
            self._entries[key_id] = _Entry(stored, now, touched)
        return stored

    def used(self, key_id: str) -> None:
        """Note a successful use; write it to the database at most once a minute."""
        entry = self._entries.get(key_id)
        now = time.monotonic()
        if entry is None or now - entry.touched < TOUCH_SECONDS:
            return
        entry.touched = now
        # Bookkeeping, not data: never wait for the backup service (BACKUP_SYNC=on) on a read.
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SET LOCAL synchronous_commit = local")
            conn.execute(apikeys.TOUCH, (key_id,))


def _unauthorized(detail: str, *, token_presented: bool) -> Problem:
    challenge = f'{REALM}, error="invalid_token"' if token_presented else REALM
    return Problem(401, "Unauthorized", detail, headers={"WWW-Authenticate": challenge})


def _needed_scope() -> str | None:
    """The scope the matched route declares; None for a public one or an unknown path.

    A known path with a method it does not have (405) still needs a key: its
    answer says which methods exist, which is the resource's business.
    """
    req = request._get_current_object()  # one context lookup, not one per attribute
    rule = req.url_rule
    if rule is None:
        if not isinstance(req.routing_exception, MethodNotAllowed):
            return None
        allowed = sorted(req.routing_exception.valid_methods or ())
        adapter = current_app.url_map.bind("")
        rule, _ = adapter.match(req.path, method=allowed[0], return_rule=True)
        return "read" if _declared_scope(rule.endpoint) else None
    scope = _declared_scope(rule.endpoint)
    if scope is not None and req.method == "OPTIONS":
        return "read"
    return scope


def _declared_scope(endpoint: str) -> str | None:
    return spec.declared(current_app.view_functions[endpoint]).scope


def _bearer_token() -> str:
    """The presented bearer token; 401 when there is none."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise _unauthorized(
            "This endpoint needs an API key: send `Authorization: Bearer <key>`.", token_presented=False
        )
    return token.strip()


def _authenticate() -> None:
    needed = _needed_scope()
    if needed is None:
        return
    token = _bearer_token()
    cache: KeyCache = current_app.extensions["keys"]
    key_id = apikeys.key_id(token)
    stored = cache.get(key_id) if key_id else None
    if (
        stored is None
        or not apikeys.matches(token, stored)
        or (stored.expires_at is not None and stored.expires_at <= datetime.now(UTC))
    ):
        raise _unauthorized("The API key is not valid: unknown, expired or revoked.", token_presented=True)
    if not apikeys.allows(stored.scope, needed):
        challenge = f'{REALM}, error="insufficient_scope", scope="{needed}"'
        raise Problem(403, "Forbidden", f"This API key's scope is {stored.scope}; this needs {needed}.",
                      headers={"WWW-Authenticate": challenge})
    cache.used(stored.id)


def init_app(app: Flask, pool: ConnectionPool, *, required: bool) -> None:
    if not required:
        log.warning(
            "API_AUTH=off: every /items endpoint answers anyone who reaches the API, without a key",
            extra={"event": "auth.off"},
        )
        return
    app.extensions["keys"] = KeyCache(pool)
    app.before_request(_authenticate)
