"""API keys: what one looks like, how it is stored, and the statements that manage them.

A key is ``itm_<id>_<secret>``: the prefix lets secret scanners recognise a
leaked one, the 12-hex-digit id is public and finds the row, and the secret
is 256 random bits. The database keeps the id and the SHA-256 of the whole
key, never the key: a slow password hash would buy nothing against a
256-bit random secret, and a fast one keeps the check cheap. Comparisons
are constant-time (`matches`).

`auth` checks keys on requests (with a cache); `keyadmin` is the operator's
``python -m app keys`` command. Both use the statements here.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

PREFIX = "itm_"
# The whole key as a client sends it; anything else is malformed.
KEY_FORMAT = re.compile(r"itm_([0-9a-f]{12})_([A-Za-z0-9_-]{43})", re.ASCII)
SCOPES = ("read", "write")  # `write` includes `read`


@dataclass(frozen=True)
class StoredKey:
    """What the database knows of a live key: enough to check one, nothing to forge one."""

    id: str
    scope: str
    secret_hash: bytes
    expires_at: datetime | None


def new_key() -> tuple[str, str]:
    """A fresh key and its public id."""
    key_id = secrets.token_hex(6)
    return f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}", key_id


def key_id(key: str) -> str | None:
    """The public id of a well-formed key, else None."""
    match = KEY_FORMAT.fullmatch(key)
    return match.group(1) if match else None


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("ascii")).digest()


def matches(key: str, stored: StoredKey) -> bool:
    return hmac.compare_digest(digest(key), stored.secret_hash)


def allows(granted: str, needed: str) -> bool:
    """Whether a key of scope `granted` may do what needs `needed` (write includes read)."""
    return granted == "write" or granted == needed


# --- Statements ------------------------------------------------------------------------------
# A live key by id: revoked ones are not found; expiry is checked by the caller on every use.
LOOKUP = "SELECT id, scope, secret_hash, expires_at FROM api_keys WHERE id = %s AND revoked_at IS NULL"

# Last use, written only when the stored one is a minute old: every worker and replica may
# ask, but the row changes at most about once a minute.
TOUCH = """
UPDATE api_keys SET last_used_at = now()
WHERE id = %s AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
"""

CREATE = """
INSERT INTO api_keys (id, name, scope, secret_hash, expires_at)
VALUES (%(id)s, %(name)s, %(scope)s, %(secret_hash)s, now() + make_interval(days => %(days)s))
RETURNING created_at, expires_at
"""

LIST = """
SELECT name, id, scope, created_at, expires_at, last_used_at, revoked_at,
       CASE WHEN revoked_at IS NOT NULL THEN 'revoked'
            WHEN expires_at <= now() THEN 'expired'
            ELSE 'active' END AS status
FROM api_keys
ORDER BY revoked_at IS NOT NULL, name, created_at
"""

REVOKE = "UPDATE api_keys SET revoked_at = now() WHERE name = %s AND revoked_at IS NULL RETURNING id"
