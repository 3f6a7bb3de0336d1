"""Keyset pagination for ``GET /items``: the query, and opaque signed cursors.

A page is ``ORDER BY <sort fields>, id LIMIT n + 1``; the extra row tells
whether a next page exists. The cursor carries the sort values of the last
row returned, and the next page starts strictly after them, so a walk sees
every item that exists for its whole length exactly once, whatever is
inserted or deleted meanwhile.

Cursors are signed with HMAC-SHA256 under a key kept in the database (shared
by every worker and replica). The signature also covers the sort order and
the filters, so a cursor altered by hand, or taken from another listing, is
refused with a 400.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg import sql

from .errors import Problem
from .queries import ITEM_JSON
from .schemas import ListQuery

SortKeys = tuple[tuple[str, bool], ...]

# How each sortable column's value is written into, and read back from, a cursor.
_DECODERS = {
    "id": int,
    "name": str,
    "price": Decimal,
    "quantity": int,
    "created_at": datetime.fromisoformat,
    "updated_at": datetime.fromisoformat,
}
_SIGNATURE_BYTES = 16

_FILTERS = {
    "name_contains": sql.SQL("name ILIKE {}"),
    "min_price": sql.SQL("price >= {}"),
    "max_price": sql.SQL("price <= {}"),
    "min_quantity": sql.SQL("quantity >= {}"),
    "max_quantity": sql.SQL("quantity <= {}"),
}


def _like_pattern(text: str) -> str:
    """A LIKE pattern that matches `text` literally anywhere in the value."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@functools.lru_cache(maxsize=256)
def page_query(sort: SortKeys, filters: tuple[str, ...], after: bool) -> str:
    """The SQL of one page; only whitelisted identifiers reach the text.

    Parameters, in order: one per filter, then (when `after`) the cursor
    values as the keyset condition needs them, then the row limit.
    """
    columns = [sql.Identifier(field) for field, _ in sort]
    conditions = [_FILTERS[name].format(sql.Placeholder()) for name in filters]
    if after:
        conditions.append(_after_condition(sort))
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")
    order = sql.SQL(", ").join(
        sql.SQL("{} DESC" if desc else "{}").format(sql.Identifier(field)) for field, desc in sort
    )
    query = sql.SQL("SELECT {item}, {columns} FROM items{where} ORDER BY {order} LIMIT {limit}").format(
        item=ITEM_JSON,
        columns=sql.SQL(", ").join(columns),
        where=where,
        order=order,
        limit=sql.Placeholder(),
    )
    return query.as_string()


def _after_condition(sort: SortKeys) -> sql.Composable:
    """Rows strictly after the cursor's values in the given order."""
    directions = {desc for _, desc in sort}
    if len(directions) == 1:
        # One direction: a row comparison, which an index on the columns serves.
        columns = sql.SQL(", ").join(sql.Identifier(field) for field, _ in sort)
        values = sql.SQL(", ").join(sql.Placeholder() for _ in sort)
        op = sql.SQL("<" if directions == {True} else ">")
        return sql.SQL("({}) {} ({})").format(columns, op, values)
    # Mixed directions: (a > x) OR (a = x AND b < y) OR (a = x AND b = y AND id > z)
    branches = []
    for i, (field, desc) in enumerate(sort):
        equal = [sql.SQL("{} = {}").format(sql.Identifier(f), sql.Placeholder()) for f, _ in sort[:i]]
        beyond = sql.SQL("{} {} {}").format(
            sql.Identifier(field), sql.SQL("<" if desc else ">"), sql.Placeholder()
        )
        branches.append(sql.SQL("({})").format(sql.SQL(" AND ").join([*equal, beyond])))
    return sql.SQL("({})").format(sql.SQL(" OR ").join(branches))


def page_params(sort: SortKeys, filters: dict[str, Any], after: list[Any] | None, limit: int) -> list:
    params: list[Any] = [
        _like_pattern(value) if name == "name_contains" else value for name, value in filters.items()
    ]
    if after is not None:
        if len({desc for _, desc in sort}) == 1:
            params.extend(after)
        else:
            for i in range(len(sort)):
                params.extend(after[: i + 1])
    params.append(limit)
    return params


def _listing_identity(query: ListQuery) -> bytes:
    """What a cursor is bound to: the order and the filters, canonically written."""
    filters = {
        name: str(value.normalize()) if isinstance(value, Decimal) else value
        for name, value in query.filters().items()
    }
    return json.dumps([query.sort_keys(), filters], sort_keys=True).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_cursor(key: bytes, query: ListQuery, values: tuple[Any, ...]) -> str:
    payload = json.dumps(
        [v.isoformat() if isinstance(v, datetime) else str(v) if isinstance(v, Decimal) else v for v in values],
        separators=(",", ":"),
    ).encode()
    mac = hmac.new(key, _listing_identity(query) + b"\n" + payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(mac[:_SIGNATURE_BYTES])}"


def decode_cursor(key: bytes, query: ListQuery, cursor: str) -> list[Any]:
    """The sort values a cursor carries, or a 400 if it is not one of ours for this listing."""
    invalid = Problem(
        400,
        "Bad Request",
        "Invalid query parameters: cursor.",
        errors=[{"field": "cursor", "message": "is not a valid cursor for this listing"}],
    )
    try:
        encoded_payload, encoded_mac = cursor.split(".")
        payload, mac = _unb64(encoded_payload), _unb64(encoded_mac)
    except (ValueError, binascii.Error):
        raise invalid from None
    expected = hmac.new(key, _listing_identity(query) + b"\n" + payload, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, expected[:_SIGNATURE_BYTES]):
        raise invalid
    sort = query.sort_keys()
    try:
        raw = json.loads(payload)
        if not isinstance(raw, list) or len(raw) != len(sort):
            raise ValueError
        return [_DECODERS[field](value) for (field, _), value in zip(sort, raw)]
    except (ValueError, TypeError, ArithmeticError):
        raise invalid from None
