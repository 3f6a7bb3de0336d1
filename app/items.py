"""The items resource: ``/items`` and ``/items/<id>``.

Each handler validates its input with the models in `schemas`, runs one SQL
statement, and returns the JSON text PostgreSQL built (see `listing.ITEM_JSON`).
Conditional writes are single statements (``... WHERE id = %s AND version =
ANY(%s)``), so of two writers holding the same ETag exactly one wins.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import psycopg
from flask import Blueprint, Response, current_app, request, url_for
from psycopg import sql

from . import listing, payload
from .errors import Problem, problem_response
from .schemas import MAX_ID, ItemIn, ItemPatch, ListQuery

bp = Blueprint("items", __name__)

ITEM_MEDIA_TYPE = "application/json"
# One spelling per id: no sign, no leading zeros (`/items/01` is not `/items/1`).
_ID = re.compile(r"[1-9][0-9]{0,18}", re.ASCII)
# An entity tag as RFC 9110 writes it: a strong tag is quoted; `1` is no tag.
_ETAG = re.compile(r'\s*(W/)?"([\x21\x23-\x7e\x80-\xff]*)"\s*')
_MAX_VERSION = 2**31 - 1
_WRITABLE = tuple(ItemIn.model_fields)


def _q(query: sql.Composable) -> str:
    """SQL rendered once, at import: the same text each time lets psycopg prepare it."""
    return query.as_string()


GET = _q(sql.SQL("SELECT version, {} FROM items WHERE id = %s").format(listing.ITEM_JSON))
INSERT = _q(
    sql.SQL(
        "INSERT INTO items (name, description, price, quantity) VALUES (%s, %s, %s, %s)"
        " RETURNING id, version, {}"
    ).format(listing.ITEM_JSON)
)
# `%s::int[] IS NULL` lets a request without If-Match skip the version check.
_MATCHES = "id = %s AND (%s::int[] IS NULL OR version = ANY(%s::int[]))"
REPLACE = _q(
    sql.SQL(
        "UPDATE items SET name = %s, description = %s, price = %s, quantity = %s,"
        " version = version + 1, updated_at = now()"
        f" WHERE {_MATCHES} RETURNING version, {{}}"
    ).format(listing.ITEM_JSON)
)
DELETE = f"DELETE FROM items WHERE {_MATCHES} RETURNING id"
EXISTS = "SELECT 1 FROM items WHERE id = %s"


def _patch_query(fields: tuple[str, ...]) -> str:
    """UPDATE for the fields a merge patch sets; names come from `ItemPatch` only."""
    assignments = [sql.SQL("{} = %s").format(sql.Identifier(f)) for f in fields if f in _WRITABLE]
    return _q(
        sql.SQL(
            "UPDATE items SET {}, version = version + 1, updated_at = now()"
            f" WHERE {_MATCHES} RETURNING version, {{}}"
        ).format(sql.SQL(", ").join(assignments), listing.ITEM_JSON)
    )


PATCHES = {
    fields: _patch_query(fields)
    for n in range(1, len(_WRITABLE) + 1)
    for fields in itertools.combinations(_WRITABLE, n)
}


def _item_id(raw: str) -> int:
    """Path ids are positive integers within bigint; anything else is a 404."""
    if _ID.fullmatch(raw):
        value = int(raw)
        if 1 <= value <= MAX_ID:
            return value
    raise _not_found()


def _if_match() -> list[int] | None:
    """Versions the client's If-Match accepts; None when any version will do.

    If-Match compares strongly (RFC 9110): weak tags, unquoted words and tags
    that are not one of our versions match nothing.
    """
    values = request.headers.getlist("If-Match")
    if not values:
        return None
    members = [m for v in values for m in v.split(",")]
    if [m.strip() for m in members] == ["*"]:
        return None
    versions = []
    for member in members:
        tag = _ETAG.fullmatch(member)
        if tag and not tag.group(1) and _ID.fullmatch(tag.group(2)) and int(tag.group(2)) <= _MAX_VERSION:
            versions.append(int(tag.group(2)))
    return versions


def _item_response(version: int, item_json: str, status: int = 200, **headers: str) -> Response:
    response = Response(item_json, status, mimetype=ITEM_MEDIA_TYPE)
    response.headers["ETag"] = f'"{version}"'
    response.headers.update(headers)
    return response


def _not_found() -> Problem:
    return Problem(404, "Not Found", "No item has this id.")


def _stale() -> Problem:
    return Problem(
        412, "Precondition Failed", "The item has changed: its ETag no longer matches If-Match."
    )


def _conditional(conn: psycopg.Connection, query: str, params: tuple, item_id: int) -> tuple:
    """Run a write guarded by ``WHERE id = %s AND version = ANY(...)``.

    When it touches no row, say why: no such item (404) or a stale ETag (412).
    """
    row = conn.execute(query, params).fetchone()
    if row is None:
        if conn.execute(EXISTS, (item_id,)).fetchone() is None:
            raise _not_found()
        raise _stale()
    return row


@bp.errorhandler(psycopg.errors.UniqueViolation)
def _name_taken(e: psycopg.errors.UniqueViolation) -> Response:
    # The name is the only unique column besides the server-assigned id.
    return problem_response(Problem(409, "Conflict", "An item with this name already exists."))


@bp.get("/items")
def list_items() -> Response:
    query = payload.query(ListQuery)
    sort = query.sort_keys()
    filters = query.filters()
    key = current_app.extensions["cursor_key"]
    after = listing.decode_cursor(key, query, query.cursor) if query.cursor else None
    sql_text = listing.page_query(sort, tuple(filters), after is not None)
    params = listing.page_params(sort, filters, after, query.limit + 1)
    with current_app.extensions["pool"].connection() as conn:
        rows = conn.execute(sql_text, params).fetchall()
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    next_cursor = listing.encode_cursor(key, query, rows[-1][1:]) if more else None
    body = '{"items":[' + ",".join(row[0] for row in rows) + '],"next_cursor":' + json.dumps(next_cursor) + "}"
    response = Response(body, 200, mimetype=ITEM_MEDIA_TYPE)
    if next_cursor:
        args: dict[str, Any] = {**request.args.to_dict(), "cursor": next_cursor}
        response.headers["Link"] = f'<{url_for(".list_items", **args)}>; rel="next"'
    return response


@bp.post("/items")
def create_item() -> Response:
    item = payload.body(ItemIn)
    with current_app.extensions["pool"].connection() as conn:
        item_id, version, item_json = conn.execute(
            INSERT, (item.name, item.description, item.price, item.quantity)
        ).fetchone()
    return _item_response(version, item_json, 201, Location=url_for(".get_item", item_id=item_id))


@bp.get("/items/<item_id>")
def get_item(item_id: str) -> Response:
    with current_app.extensions["pool"].connection() as conn:
        row = conn.execute(GET, (_item_id(item_id),)).fetchone()
    if row is None:
        raise _not_found()
    version, item_json = row
    if request.if_none_match.contains_weak(str(version)):
        response = Response(status=304)
        response.headers["ETag"] = f'"{version}"'
        return response
    return _item_response(version, item_json)


@bp.put("/items/<item_id>")
def replace_item(item_id: str) -> Response:
    key = _item_id(item_id)
    item = payload.body(ItemIn)
    versions = _if_match()
    params = (item.name, item.description, item.price, item.quantity, key, versions, versions)
    with current_app.extensions["pool"].connection() as conn:
        row = _conditional(conn, REPLACE, params, key)
    return _item_response(*row)


@bp.patch("/items/<item_id>")
def patch_item(item_id: str) -> Response:
    key = _item_id(item_id)
    patch = payload.body(ItemPatch, payload.PATCH_TYPES)
    versions = _if_match()
    fields = tuple(f for f in _WRITABLE if f in patch.model_fields_set)
    with current_app.extensions["pool"].connection() as conn:
        if fields:
            values = tuple(getattr(patch, f) for f in fields)
            row = _conditional(conn, PATCHES[fields], (*values, key, versions, versions), key)
        else:
            # An empty patch changes nothing, not even the version; it is
            # still refused when If-Match names another version.
            row = conn.execute(GET, (key,)).fetchone()
            if row is None:
                raise _not_found()
            if versions is not None and row[0] not in versions:
                raise _stale()
    return _item_response(*row)


@bp.delete("/items/<item_id>")
def delete_item(item_id: str) -> Response:
    key = _item_id(item_id)
    versions = _if_match()
    with current_app.extensions["pool"].connection() as conn:
        _conditional(conn, DELETE, (key, versions, versions), key)
    return Response(status=204)
