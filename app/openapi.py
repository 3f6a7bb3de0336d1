"""The OpenAPI 3.1 document served at ``/openapi.json``.

Request and response bodies come from the pydantic models in `schemas` (the
same models that validate requests), and the list parameters from
`ListQuery`, so the document cannot drift from what the code checks. What
only HTTP knows (statuses, headers, media types) is written here, once per
operation; a test checks that every route of the app is described and nothing
else is.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from flask import Blueprint, Response, json
from pydantic.json_schema import models_json_schema

from .config import MAX_BODY_BYTES
from .payload import PATCH_TYPES
from .schemas import Health, Item, ItemIn, ItemPage, ItemPatch, ListQuery, Problem

bp = Blueprint("openapi", __name__)

VERSION = "1.0.0"
_REF = "#/components/schemas/{model}"

_STATUS_TEXT = {
    400: "The query string or the JSON body is malformed.",
    404: "No item has this id (an id that is not a positive bigint included).",
    409: "Another item already has this name.",
    412: "If-Match does not match the item's current ETag; nothing changed.",
    411: "The body came without a Content-Length (chunked bodies are not accepted).",
    413: f"The body is larger than the configured limit ({MAX_BODY_BYTES // 1024} KiB by default).",
    415: "The body is not JSON (PATCH also takes application/merge-patch+json).",
    422: "Valid JSON that breaks the item's rules; `errors` lists every field.",
    503: "The database is unavailable; retry after the given delay.",
}


def _header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "schema": schema or {"type": "string"}}


def _json(ref: str, media_type: str = "application/json") -> dict[str, Any]:
    return {media_type: {"schema": {"$ref": _REF.format(model=ref)}}}


def _response(description: str, content: dict | None = None, **headers: dict) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "headers": {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}, **headers},
    }
    if content:
        response["content"] = content
    return response


def _problems(*statuses: int) -> dict[str, Any]:
    responses = {}
    for status in statuses:
        headers = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}} if status == 503 else {}
        responses[str(status)] = _response(
            _STATUS_TEXT[status], _json("Problem", "application/problem+json"), **headers
        )
    return responses


def _item(description: str, status: int = 200, **headers: dict) -> dict[str, Any]:
    etag = {"ETag": {"$ref": "#/components/headers/ETag"}}
    return {str(status): _response(description, _json("Item"), **etag, **headers)}


def _operation(summary: str, responses: dict, **extra: Any) -> dict[str, Any]:
    operation = {"summary": summary, "responses": responses, **extra}
    operation["parameters"] = [*extra.get("parameters", []), {"$ref": "#/components/parameters/RequestId"}]
    return operation


def _body(ref: str, media_types: tuple[str, ...] = ("application/json",)) -> dict[str, Any]:
    return {
        "required": True,
        "content": {t: {"schema": {"$ref": _REF.format(model=ref)}} for t in media_types},
    }


def _list_parameters() -> list[dict[str, Any]]:
    schema = ListQuery.model_json_schema()
    parameters = []
    for name, prop in schema["properties"].items():
        prop = {k: v for k, v in prop.items() if k not in ("title", "description")}
        # Optional parameters are declared by their value's type, not "or null".
        prop = next((s for s in prop.pop("anyOf", []) if s.get("type") != "null"), {}) | prop
        if prop.get("default", 0) is None:
            del prop["default"]
        parameters.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": ListQuery.model_fields[name].description or "",
                "schema": prop,
            }
        )
    return parameters


_ITEM_ID = {
    "name": "item_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
}
_IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": 'Only change the item if its ETag is one of these (e.g. `"3"`), or `*`.',
    "schema": {"type": "string"},
}
_IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "description": "Answer 304 when the item's ETag is one of these.",
    "schema": {"type": "string"},
}


@cache
def document() -> dict[str, Any]:
    _, defs = models_json_schema(
        [
            (ItemIn, "validation"),
            (ItemPatch, "validation"),
            (Item, "serialization"),
            (ItemPage, "serialization"),
            (Problem, "serialization"),
            (Health, "serialization"),
        ],
        ref_template=_REF,
    )
    health = {
        "200": _response("Healthy.", _json("Health")),
        "503": _response(
            "The database cannot be reached within 2 s.",
            _json("Health"),
            **{"Retry-After": {"$ref": "#/components/headers/RetryAfter"}},
        ),
    }
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "Items API",
            "version": VERSION,
            "description": (
                "Items CRUD with keyset pagination, strong ETags and JSON Merge Patch."
                " Every error is RFC 9457 problem details (`application/problem+json`),"
                " 404 and 405 included (405 carries `Allow`). JSON bodies are parsed strictly:"
                " duplicate keys, `NaN` and `Infinity` are malformed JSON (400)."
            ),
        },
        "paths": {
            "/health": {"get": _operation("Application and database health", health)},
            "/health/ready": {"get": _operation("Readiness: the pool can run SELECT 1", health)},
            "/health/live": {
                "get": _operation(
                    "Liveness: the process answers (never touches the database)",
                    {
                        "200": _response(
                            "Alive.",
                            {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {"status": {"const": "ok"}},
                                        "required": ["status"],
                                    }
                                }
                            },
                        )
                    },
                )
            },
            "/items": {
                "get": _operation(
                    "List items, a page at a time",
                    {
                        "200": _response(
                            "A page of items.",
                            _json("ItemPage"),
                            Link=_header('`<...>; rel="next"` when there is a next page.'),
                        ),
                        **_problems(400, 503),
                    },
                    parameters=_list_parameters(),
                ),
                "post": _operation(
                    "Create an item",
                    {
                        **_item(
                            "Created.",
                            201,
                            Location=_header("`/items/<id>` of the new item."),
                        ),
                        **_problems(400, 409, 411, 413, 415, 422, 503),
                    },
                    requestBody=_body("ItemIn"),
                ),
            },
            "/items/{item_id}": {
                "get": _operation(
                    "Get an item",
                    {
                        **_item("The item."),
                        "304": _response(
                            "The item still has the ETag given in If-None-Match.",
                            ETag={"$ref": "#/components/headers/ETag"},
                        ),
                        **_problems(404, 503),
                    },
                    parameters=[_ITEM_ID, _IF_NONE_MATCH],
                ),
                "put": _operation(
                    "Replace an item (omitted optional fields go back to their defaults)",
                    {**_item("The replaced item."), **_problems(400, 404, 409, 411, 412, 413, 415, 422, 503)},
                    parameters=[_ITEM_ID, _IF_MATCH],
                    requestBody=_body("ItemIn"),
                ),
                "patch": _operation(
                    "Change some fields of an item (JSON Merge Patch, RFC 7396)",
                    {**_item("The changed item."), **_problems(400, 404, 409, 411, 412, 413, 415, 422, 503)},
                    parameters=[_ITEM_ID, _IF_MATCH],
                    requestBody=_body("ItemPatch", PATCH_TYPES),
                ),
                "delete": _operation(
                    "Delete an item",
                    {"204": _response("Deleted."), **_problems(404, 412, 503)},
                    parameters=[_ITEM_ID, _IF_MATCH],
                ),
            },
            "/openapi.json": {
                "get": _operation(
                    "This document",
                    {"200": _response("OpenAPI 3.1.", {"application/json": {"schema": {"type": "object"}}})},
                )
            },
        },
        "components": {
            "schemas": defs["$defs"],
            "headers": {
                "RequestId": _header(
                    "Echoes a well-formed X-Request-ID (1-128 of `[A-Za-z0-9._-]`), else a fresh id."
                ),
                "ETag": _header('The item\'s strong ETag, `"<version>"`.'),
                "RetryAfter": _header("Seconds to wait before retrying.", {"type": "integer"}),
            },
            "parameters": {
                "RequestId": {
                    "name": "X-Request-ID",
                    "in": "header",
                    "required": False,
                    "description": "Correlates the request with its log line; echoed back.",
                    "schema": {"type": "string"},
                }
            },
        },
    }


@bp.get("/openapi.json")
def openapi() -> Response:
    return Response(json.dumps(document()), 200, mimetype="application/json")
