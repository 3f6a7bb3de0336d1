"""The item's SQL: how an item leaves PostgreSQL as JSON, and every statement on one item.

Kept apart from the handlers so that `items` (one item at a time) and
`listing` (pages of items) select the same JSON without importing each other.
Every statement is rendered once, at import: the same text each time lets
psycopg prepare it. Conditional writes are single statements (``... WHERE id
= %s AND version = ANY(%s)``), so of two writers holding the same ETag
exactly one wins.
"""

from __future__ import annotations

import itertools

from psycopg import sql

from .schemas import Item, ItemIn

WRITABLE = tuple(ItemIn.model_fields)

ITEM_JSON = sql.SQL("json_build_object({})::text").format(
    sql.SQL(", ").join(
        sql.SQL("{}, {}").format(sql.Literal(name), sql.Identifier(name)) for name in Item.model_fields
    )
)
"""The item as JSON text, built by PostgreSQL from the fields of `Item`.

PostgreSQL writes ``numeric`` as an exact JSON number and timestamps as RFC
3339 (the session time zone is UTC), so the row never passes through a float.
"""


def _q(query: sql.Composable) -> str:
    """SQL rendered once, at import: the same text each time lets psycopg prepare it."""
    return query.as_string()


GET = _q(sql.SQL("SELECT version, {} FROM items WHERE id = %s").format(ITEM_JSON))
INSERT = _q(
    sql.SQL(
        "INSERT INTO items (name, description, price, quantity) VALUES (%s, %s, %s, %s)"
        " RETURNING id, version, {}"
    ).format(ITEM_JSON)
)
# `%s::int[] IS NULL` lets a request without If-Match skip the version check.
_MATCHES = "id = %s AND (%s::int[] IS NULL OR version = ANY(%s::int[]))"
REPLACE = _q(
    sql.SQL(
        "UPDATE items SET name = %s, description = %s, price = %s, quantity = %s,"
        " version = version + 1, updated_at = now()"
        f" WHERE {_MATCHES} RETURNING version, {{}}"
    ).format(ITEM_JSON)
)
DELETE = f"DELETE FROM items WHERE {_MATCHES} RETURNING id"
EXISTS = "SELECT 1 FROM items WHERE id = %s"


def _patch_query(fields: tuple[str, ...]) -> str:
    """UPDATE for the fields a merge patch sets; names come from `ItemPatch` only."""
    assignments = [sql.SQL("{} = %s").format(sql.Identifier(f)) for f in fields if f in WRITABLE]
    return _q(
        sql.SQL(
            "UPDATE items SET {}, version = version + 1, updated_at = now()"
            f" WHERE {_MATCHES} RETURNING version, {{}}"
        ).format(sql.SQL(", ").join(assignments), ITEM_JSON)
    )


# One UPDATE per set of patched fields, keyed by the fields in WRITABLE order.
PATCHES = {
    fields: _patch_query(fields)
    for n in range(1, len(WRITABLE) + 1)
    for fields in itertools.combinations(WRITABLE, n)
}
