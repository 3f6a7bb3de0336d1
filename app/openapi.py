"""The OpenAPI 3.1 document served at ``/openapi.json``.

Each handler declares its operation (`spec.Operation`: statuses, headers,
parameters, body) next to its code; this module walks Flask's routes and
renders each route's declaration, so the document describes exactly the
routes the app serves. Bodies come from the pydantic models in `schemas` (the
same models that validate requests) and the list parameters from
`ListQuery`, so the document cannot drift from what the code checks either.
The document is built once, on first use.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

from flask import Blueprint, Flask, Response, json
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from . import health, items, spec
from .errors import PROBLEM_TYPE
from .schemas import ProblemDocument

bp = Blueprint("openapi", __name__)

VERSION = "1.0.0"
_REF = "#/components/schemas/{model}"
# Werkzeug's `<item_id>` (or `<int:item_id>`) is OpenAPI's `{item_id}`.
_PATH_PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>")
INFO = {
    "title": "Items API",
    "version": VERSION,
    "description": (
        "Items CRUD with keyset pagination, strong ETags and JSON Merge Patch."
        " Every error is RFC 9457 problem details (`application/problem+json`),"
        " 404 and 405 included (405 carries `Allow`). JSON bodies are parsed strictly:"
        " duplicate keys, `NaN` and `Infinity` are malformed JSON (400)."
    ),
}


# API keys (app/auth.py), as a client sends them.
BEARER = "apiKey"
SECURITY_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "itm_<12 hex digits>_<43 characters>",
    "description": (
        "An API key, created by an operator (`python -m app keys create`; `make key` in the stack)."
        " Its scope is `read` (GET and HEAD) or `write` (every method; write includes read)."
    ),
}


@bp.get("/openapi.json")
@spec.Operation(
    "This document",
    replies={200: spec.Reply("OpenAPI 3.1.", {"type": "object"})},
)
def openapi() -> Response:
    return Response(json.dumps(document()), 200, mimetype="application/json")


# Every blueprint of the API: `create_app` registers these, and the document
# describes exactly their routes.
BLUEPRINTS = (health.bp, items.bp, bp)


@cache
def document() -> dict[str, Any]:
    """The whole document, built on first use from the routes' declarations."""
    routes = list(_routes())
    paths: dict[str, dict[str, Any]] = {}
    for path, method, operation in routes:
        paths.setdefault(path, {})[method] = _operation(operation)
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": INFO,
        "paths": paths,
        "components": {
            "securitySchemes": {BEARER: SECURITY_SCHEME},
            "schemas": _schemas([operation for _, _, operation in routes]),
            "headers": {h.component: _header(h, shared=False) for h in spec.SHARED_HEADERS},
            "parameters": {
                spec.REQUEST_ID_PARAMETER.component: _parameter(spec.REQUEST_ID_PARAMETER, shared=False)
            },
        },
    }


def _routes() -> Iterator[tuple[str, str, spec.Operation]]:
    """(path, method, declaration) of every route, as Flask itself maps them.

    The blueprints are registered on a throwaway app (no database, no
    request needed), so the document can be built anywhere, tests included.
    """
    scratch = Flask(__name__, static_folder=None)
    for blueprint in BLUEPRINTS:
        scratch.register_blueprint(blueprint)
    for rule in scratch.url_map.iter_rules():
        operation = spec.declared(scratch.view_functions[rule.endpoint])
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield _PATH_PARAMETER.sub(r"{\1}", rule.rule), method.lower(), operation


def _operation(operation: spec.Operation) -> dict[str, Any]:
    responses = {str(status): _response(reply) for status, reply in operation.replies.items()}
    problems = sorted({*operation.problems, *_auth_problems(operation.scope)})
    for status in problems:
        headers = {"Retry-After": spec.RETRY_AFTER} if status == 503 else {}
        if status in (401, 403):
            headers = {"WWW-Authenticate": spec.WWW_AUTHENTICATE}
        if status == 415 and len(operation.media_types) > 1:  # PATCH: it takes more than JSON
            headers = {"Accept-Patch": spec.ACCEPT_PATCH}
        problem = spec.Reply(spec.PROBLEMS[status], ProblemDocument, headers)
        responses[str(status)] = _response(problem, PROBLEM_TYPE)
    parameters = [
        *(_query_parameters(operation.query) if operation.query else ()),
        *operation.parameters,
        spec.REQUEST_ID_PARAMETER,
    ]
    rendered: dict[str, Any] = {
        "summary": operation.summary,
        "responses": responses,
        "parameters": [_parameter(p) for p in parameters],
    }
    if operation.scope:
        # Role names under an http scheme (OpenAPI 3.1): the key's scope this needs.
        rendered["security"] = [{BEARER: [operation.scope]}]
    if operation.body:
        rendered["requestBody"] = {
            "required": True,
            "content": {t: _content(operation.body) for t in operation.media_types},
        }
    return rendered


def _auth_problems(scope: str | None) -> tuple[int, ...]:
    """401 wherever a key is needed; 403 only where a valid key may lack the scope (writes)."""
    return {None: (), "read": (401,), "write": (401, 403)}[scope]


def _response(reply: spec.Reply, media_type: str = "application/json") -> dict[str, Any]:
    headers = {**spec.EVERY_RESPONSE, **reply.headers}
    response: dict[str, Any] = {
        "description": reply.description,
        "headers": {name: _header(header) for name, header in headers.items()},
    }
    if reply.body is not None:
        response["content"] = {media_type: _content(reply.body)}
    return response


def _content(body: type[BaseModel] | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(body, type):
        return {"schema": {"$ref": _REF.format(model=_title(body))}}
    return {"schema": dict(body)}


def _header(header: spec.Header, shared: bool = True) -> dict[str, Any]:
    """A header, or a reference to its one description under components."""
    if shared and header.component:
        return {"$ref": f"#/components/headers/{header.component}"}
    return {"description": header.description, "schema": {"type": header.type}}


def _parameter(parameter: spec.Parameter, shared: bool = True) -> dict[str, Any]:
    """A parameter, or a reference to its one description under components."""
    if shared and parameter.component:
        return {"$ref": f"#/components/parameters/{parameter.component}"}
    rendered: dict[str, Any] = {
        "name": parameter.name,
        "in": parameter.location,
        "required": parameter.required,
    }
    if parameter.description is not None:
        rendered["description"] = parameter.description
    rendered["schema"] = dict(parameter.schema)
    return rendered


def _query_parameters(model: type[BaseModel]) -> list[spec.Parameter]:
    """One optional query parameter per field of `model`, typed by its JSON Schema."""
    properties = model.model_json_schema()["properties"]
    parameters = []
    for name, prop in properties.items():
        prop = {k: v for k, v in prop.items() if k not in ("title", "description")}
        # Optional parameters are declared by their value's type, not "or null".
        prop = next((s for s in prop.pop("anyOf", []) if s.get("type") != "null"), {}) | prop
        if prop.get("default", 0) is None:
            del prop["default"]
        description = model.model_fields[name].description or ""
        parameters.append(spec.Parameter(name, "query", prop, description))
    return parameters


def _schemas(operations: list[spec.Operation]) -> dict[str, Any]:
    """The JSON Schema of every model the operations read or return, named by its title.

    Requests are described as validated, responses as serialized. Naming by
    title keeps the published names apart from the Python ones (the model
    `ProblemDocument` is published as "Problem").
    """
    models: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {}
    for operation in operations:
        if operation.body:
            models[operation.body, "validation"] = None
        for reply in operation.replies.values():
            if isinstance(reply.body, type):
                models[reply.body, "serialization"] = None
        if operation.problems or operation.scope:
            models[ProblemDocument, "serialization"] = None
    _, defs = models_json_schema(list(models), ref_template="{model}")
    titles = {key: schema.get("title", key) for key, schema in defs["$defs"].items()}
    if len(set(titles.values())) != len(titles):
        raise ValueError(f"two models share a title: {sorted(titles.values())}")
    return {titles[key]: _retarget(schema, titles) for key, schema in defs["$defs"].items()}


def _retarget(node: Any, titles: dict[str, str]) -> Any:
    """`node` with every ``$ref`` pointing at the component named by the target's title."""
    if isinstance(node, dict):
        return {
            k: _REF.format(model=titles[v]) if k == "$ref" else _retarget(v, titles) for k, v in node.items()
        }
    if isinstance(node, list):
        return [_retarget(v, titles) for v in node]
    return node


def _title(model: type[BaseModel]) -> str:
    return model.model_config.get("title") or model.__name__
