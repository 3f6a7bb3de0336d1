"""The items resource: ``/items`` and ``/items/<id>``.

Each handler declares what it accepts and answers (`spec.Operation`),
validates its input with the models in `schemas`, runs one SQL statement from
`queries`, and returns the JSON text PostgreSQL built (`queries.ITEM_JSON`).
"""

from __future__ import annotations

import json
import re
from typing import Any

import psycopg
from flask import Blueprint, Response, current_app, request, url_for

from . import listing, payload, spec
from .errors import Problem, problem_response
from .queries import DELETE, EXISTS, GET, INSERT, PATCHES, REPLACE, WRITABLE
from .schemas import MAX_ID, Item, ItemIn, ItemPage, ItemPatch, ListQuery

bp = Blueprint("items", __name__)

ITEM_MEDIA_TYPE = "application/json"
# One spelling per id: no sign, no leading zeros (`/items/01` is not `/items/1`).
_ID = re.compile(r"[1-9][0-9]{0,18}", re.ASCII)
# An entity tag as RFC 9110 writes it: a strong tag is quoted; `1` is no tag.
_ETAG = re.compile(r'\s*(W/)?"([\x21\x23-\x7e\x80-\xff]*)"\s*')
_MAX_VERSION = 2**31 - 1

# The path and header parameters, as the document describes them; `_item_id`,
# `_if_match` and `get_item` read them.
ITEM_ID = spec.Parameter(
    "item_id", "path", {"type": "integer", "minimum": 1, "maximum": MAX_ID}, required=True
)
IF_MATCH = spec.Parameter(
    "If-Match",
    "header",
    description='Only change the item if its ETag is one of these (e.g. `"3"`), or `*`.',
)
IF_NONE_MATCH = spec.Parameter(
    "If-None-Match", "header", description="Answer 304 when the item's ETag is one of these."
)


def _item_reply(description: str, **headers: spec.Header) -> spec.Reply:
    """An item answered with its ETag (see `_item_response`)."""
    return spec.Reply(description, Item, {"ETag": spec.ETAG, **headers})


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
    return Response(item_json, status, {"ETag": f'"{version}"', **headers}, mimetype=ITEM_MEDIA_TYPE)


def _not_found() -> Problem:
    return Problem(404, "Not Found", "No item has this id.")


def _stale() -> Problem:
    return Problem(
        412, "Precondition Failed", "The item has changed: its ETag no longer matches If-Match."
    )


def _conditional(conn: psycopg.Connection, query: str, params: tuple, pk: int) -> tuple:
    """Run a write guarded by ``WHERE id = %s AND version = ANY(...)``.

    When it touches no row, say why: no such item (404) or a stale ETag (412).
    """
    row = conn.execute(query, params).fetchone()
    if row is None:
        if conn.execute(EXISTS, (pk,)).fetchone() is None:
            raise _not_found()
        raise _stale()
    return row


@bp.errorhandler(psycopg.errors.UniqueViolation)
def _name_taken(e: psycopg.errors.UniqueViolation) -> Response:
    # The name is the only unique column besides the server-assigned id.
    return problem_response(Problem(409, "Conflict", "An item with this name already exists."))


@bp.get("/items")
@spec.Operation(
    "List items, a page at a time",
    scope="read",
    query=ListQuery,
    replies={
        200: spec.Reply(
            "A page of items.",
            ItemPage,
            {"Link": spec.Header('`<...>; rel="next"` when there is a next page.')},
        )
    },
    problems=(400, 503),
)
def list_items() -> Response:
    query = payload.query(ListQuery)
    sort = query.sort_keys()
    filters = query.filters()
    cursor_key = current_app.extensions["cursor_key"]
    after = listing.decode_cursor(cursor_key, query, query.cursor) if query.cursor else None
    sql_text = listing.page_query(sort, tuple(filters), after is not None)
    params = listing.page_params(sort, filters, after, query.limit + 1)
    with current_app.extensions["pool"].connection() as conn:
        rows = conn.execute(sql_text, params).fetchall()
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    next_cursor = listing.encode_cursor(cursor_key, query, rows[-1][1:]) if more else None
    body = '{"items":[' + ",".join(row[0] for row in rows) + '],"next_cursor":' + json.dumps(next_cursor) + "}"
    response = Response(body, 200, mimetype=ITEM_MEDIA_TYPE)
    if next_cursor:
        args: dict[str, Any] = {**request.args.to_dict(), "cursor": next_cursor}
        response.headers["Link"] = f'<{url_for(".list_items", **args)}>; rel="next"'
    return response


@bp.post("/items")
@spec.Operation(
    "Create an item",
    scope="write",
    body=ItemIn,
    replies={201: _item_reply("Created.", Location=spec.Header("`/items/<id>` of the new item."))},
    problems=(400, 409, 411, 413, 415, 422, 503),
)
def create_item() -> Response:
    item = payload.body(ItemIn)
    with current_app.extensions["writes"].connection() as conn:
        pk, version, item_json = conn.execute(
            INSERT, (item.name, item.description, item.price, item.quantity)
        ).fetchone()
    return _item_response(version, item_json, 201, Location=url_for(".get_item", item_id=pk))


@bp.get("/items/<item_id>")
@spec.Operation(
    "Get an item",
    scope="read",
    parameters=(ITEM_ID, IF_NONE_MATCH),
    replies={
        200: _item_reply("The item."),
        304: spec.Reply(
            "The item still has the ETag given in If-None-Match.", headers={"ETag": spec.ETAG}
        ),
    },
    problems=(404, 503),
)
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
@spec.Operation(
    "Replace an item (omitted optional fields go back to their defaults)",
    scope="write",
    parameters=(ITEM_ID, IF_MATCH),
    body=ItemIn,
    replies={200: _item_reply("The replaced item.")},
    problems=(400, 404, 409, 411, 412, 413, 415, 422, 503),
)
def replace_item(item_id: str) -> Response:
    pk = _item_id(item_id)
    item = payload.body(ItemIn)
    versions = _if_match()
    params = (item.name, item.description, item.price, item.quantity, pk, versions, versions)
    with current_app.extensions["writes"].connection() as conn:
        row = _conditional(conn, REPLACE, params, pk)
    return _item_response(*row)


@bp.patch("/items/<item_id>")
@spec.Operation(
    "Change some fields of an item (JSON Merge Patch, RFC 7396)",
    scope="write",
    parameters=(ITEM_ID, IF_MATCH),
    body=ItemPatch,
    media_types=payload.PATCH_TYPES,
    replies={200: _item_reply("The changed item.")},
    problems=(400, 404, 409, 411, 412, 413, 415, 422, 503),
)
def patch_item(item_id: str) -> Response:
    pk = _item_id(item_id)
    patch = payload.body(ItemPatch, payload.PATCH_TYPES)
    versions = _if_match()
    fields = tuple(f for f in WRITABLE if f in patch.model_fields_set)
    with current_app.extensions["writes"].connection() as conn:
        if fields:
            values = tuple(getattr(patch, f) for f in fields)
            row = _conditional(conn, PATCHES[fields], (*values, pk, versions, versions), pk)
        else:
            # An empty patch changes nothing, not even the version; it is
            # still refused when If-Match names another version.
            row = conn.execute(GET, (pk,)).fetchone()
            if row is None:
                raise _not_found()
            if versions is not None and row[0] not in versions:
                raise _stale()
    return _item_response(*row)


@bp.delete("/items/<item_id>")
@spec.Operation(
    "Delete an item",
    scope="write",
    parameters=(ITEM_ID, IF_MATCH),
    replies={204: spec.Reply("Deleted.")},
    problems=(404, 412, 503),
)
def delete_item(item_id: str) -> Response:
    pk = _item_id(item_id)
    versions = _if_match()
    with current_app.extensions["writes"].connection() as conn:
        _conditional(conn, DELETE, (pk, versions, versions), pk)
    return Response(status=204)
