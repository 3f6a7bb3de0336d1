"""The OpenAPI document against the running app: valid 3.1, every route of the app described
and no other, and what it says about requests and answers is what the server does.

The document is generated from the pydantic models that validate requests, so comparing it with
those models would prove nothing. These tests compare the document the server serves with
behaviour instead: the routes of the app `create_app()` builds, and the fields, parameters,
statuses, media types and headers the server actually reads and answers with. Schemathesis
(tests/api/test_schemathesis.py) checks every answer it provokes against the document's schemas.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import requests
from openapi_spec_validator import validate

from support import ROOT, undocumented, undocumented_headers

# Run in a subprocess: create_app() configures logging for the whole process.
_ROUTES = """
import json, re
from app import create_app
app = create_app()
routes = {(re.sub(r"<(?:[^:<>]+:)?(\\w+)>", r"{\\1}", rule.rule), method.lower())
          for rule in app.url_map.iter_rules()
          # /docs renders the document; it documents the API rather than being part of it.
          if rule.endpoint != "static" and not rule.endpoint.startswith("docs.")
          for method in rule.methods - {"HEAD", "OPTIONS"}}
app.extensions["pool"].close()
print(json.dumps(sorted(routes)))
"""


@pytest.fixture(scope="module")
def app_routes(migrated, tmp_path_factory: pytest.TempPathFactory) -> set[tuple[str, str]]:
    """(path template, method) of every route of the app `create_app()` returns."""
    r = subprocess.run([sys.executable, "-c", _ROUTES], cwd=ROOT, env=migrated.env(tmp_path_factory.mktemp("app")),
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    return {tuple(route) for route in json.loads(r.stdout.splitlines()[-1])}


@pytest.fixture
def document(api) -> dict[str, Any]:
    """The document as the server serves it."""
    return api.get("/openapi.json").json()


def _schema(document: dict, schema: dict) -> dict:
    """A schema with its $ref resolved and, of an anyOf, the first branch that is not null."""
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    branches = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
    return _schema(document, branches[0]) if branches else schema


def _valid(schema: dict, word: str) -> Any:
    """A value the schema allows, other than its default."""
    if schema["type"] == "string":
        return schema.get("default", word)
    return schema.get("minimum", 0) + 1


def _invalid(schema: dict) -> Any:
    """A value the schema refuses."""
    for key, value in (("maximum", 1), ("exclusiveMaximum", 0), ("minimum", -1)):
        if key in schema:
            return schema[key] + value
    if "maxLength" in schema:
        return "x" * (schema["maxLength"] + 1)
    return "!"


def _fields(response) -> set[str]:
    return {e["field"] for e in response.json().get("errors", [])}


def _send(api, method: str, url: str, kwargs: dict) -> requests.Response:
    """One exchange. The server answers 413 before reading the body and closes; a client still
    sending may see the close first (rarely): that attempt is repeated, three at most."""
    for attempt in range(3):
        try:
            return api.request(method, url, **kwargs)
        except requests.ConnectionError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def test_document_is_valid_openapi_3_1(api):
    document = api.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_document_describes_every_route_of_the_app_and_no_other(document, app_routes):
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert documented == app_routes


def test_every_documented_item_field_is_read_and_no_other_is_accepted(api, document, unique):
    post = document["paths"]["/items"]["post"]
    item_in = _schema(document, post["requestBody"]["content"]["application/json"]["schema"])
    body = {name: _valid(_schema(document, s), f"openapi-{unique}") for name, s in item_in["properties"].items()}
    created = api.post("/items", json=body)
    assert created.status_code == 201, created.text
    # Each value differs from the field's default: the server read every documented field.
    assert {name: created.json()[name] for name in body} == body
    item = _schema(document, post["responses"]["201"]["content"]["application/json"]["schema"])
    assert set(created.json()) == set(item["properties"])
    missing = api.post("/items", json={})
    assert missing.status_code == 422 and _fields(missing) == set(item_in["required"]), missing.text
    extra = api.post("/items", json={**body, "name": f"other-{unique}", "undocumented": 1})
    assert extra.status_code == 422 and _fields(extra) == {"undocumented"}, extra.text


def test_every_documented_list_parameter_is_read_and_no_other_is_accepted(api, document, unique):
    for n in range(2):
        api.create(name=f"openapi-{unique}-{n}")
    cursor = api.get("/items", params={"limit": 1}).json()["next_cursor"]
    parameters = [p for p in document["paths"]["/items"]["get"]["parameters"] if p.get("in") == "query"]
    assert parameters
    for parameter in parameters:
        name, schema = parameter["name"], _schema(document, parameter["schema"])
        good = api.get("/items", params={name: cursor if name == "cursor" else _valid(schema, unique)})
        assert good.status_code == 200, (name, good.text)
        bad = api.get("/items", params={name: _invalid(schema)})
        assert bad.status_code == 400 and _fields(bad) == {name}, (name, bad.text)
    other = api.get("/items", params={"undocumented": 1})
    assert other.status_code == 400 and _fields(other) == {"undocumented"}, other.text


def _exchanges(api, read_key, unique: str) -> list[tuple[str, str, requests.Response]]:
    """(method, path template, answer) for requests that provoke every answer of every operation
    but the 503s (a stopped database: test_outage.py)."""
    json_headers = {"Content-Type": "application/json"}
    item = api.create(name=f"openapi-{unique}")
    path, other = f"/items/{item['id']}", api.create(name=f"openapi-{unique}-other")
    etag, stale = {"If-Match": f'"{item["version"]}"'}, {"If-Match": '"999"'}
    requests_ = [
        ("GET", "/health", {}), ("GET", "/health/ready", {}), ("GET", "/health/live", {}),
        ("GET", "/openapi.json", {}),
        ("GET", "/items", {}), ("GET", "/items", {"params": {"limit": 1}}), ("GET", "/items", {"params": {"limit": 0}}),
        ("POST", "/items", {"json": {"name": f"openapi-{unique}-new", "price": 1}}),
        ("POST", "/items", {"data": b"{nope", "headers": json_headers}),
        ("POST", "/items", {"json": {"name": item["name"], "price": 1}}),
        ("POST", "/items", {"data": b"x" * (1024 * 1024 + 1), "headers": json_headers}),
        ("POST", "/items", {"data": b"{}", "headers": {"Content-Type": "text/plain"}}),
        ("POST", "/items", {"json": {}}),
        ("GET", path, {}), ("GET", path, {"headers": {"If-None-Match": f'"{item["version"]}"'}}),
        ("GET", "/items/0", {}),
        ("PUT", path, {"json": {"name": item["name"], "price": 2}, "headers": stale}),
        ("PUT", path, {"json": {"name": other["name"], "price": 2}}),
        ("PUT", path, {"data": b"{nope", "headers": json_headers}),
        ("PUT", path, {"data": b"{}", "headers": {"Content-Type": "text/plain"}}),
        ("PUT", path, {"json": {"price": -1}}),
        ("PUT", "/items/0", {"json": {"name": item["name"], "price": 2}}),
        ("PUT", path, {"json": {"name": item["name"], "price": 2}, "headers": etag}),
        ("PATCH", path, {"json": {"quantity": 5}, "headers": stale}),
        ("PATCH", path, {"json": {"quantity": -5}}),
        ("PATCH", path, {"data": b"{}", "headers": {"Content-Type": "text/plain"}}),
        ("PATCH", "/items/0", {"json": {"quantity": 5}}),
        ("PATCH", path, {"json": {"quantity": 5}}),
        ("DELETE", path, {"headers": stale}), ("DELETE", path, {}), ("DELETE", path, {}),
        ("GET", "/items", {"headers": {"Authorization": None}}),
        ("GET", path, {"headers": {"Authorization": "Bearer itm_unknown"}}),
        ("POST", "/items", {"json": {"name": f"openapi-{unique}-read", "price": 1},
                            "headers": {"Authorization": f"Bearer {read_key}"}}),
        ("DELETE", path, {"headers": {"Authorization": f"Bearer {read_key}"}}),
    ]
    return [(method, "/items/{item_id}" if url.startswith("/items/") else url, _send(api, method, url, kwargs))
            for method, url, kwargs in requests_]


def test_every_status_the_app_answers_is_documented_with_its_media_type(api, read_key, document, unique):
    exchanges = _exchanges(api, read_key, unique)
    found = [problem for method, path, response in exchanges
             for problem in undocumented(document, method, path, response)]
    assert not found, "\n".join(found)
    # The requests did provoke what they are for: every documented answer of /items but 503.
    provoked = {response.status_code for _, path, response in exchanges if path.startswith("/items")}
    assert provoked == {200, 201, 204, 304, 400, 401, 403, 404, 409, 412, 413, 415, 422}, sorted(provoked)


def test_every_header_the_app_answers_with_is_documented(api, read_key, document, unique):
    found = [problem for method, path, response in _exchanges(api, read_key, unique)
             for problem in undocumented_headers(document, method, path, response)]
    assert not found, "\n".join(found)


def test_each_items_operation_declares_the_key_scope_it_needs(document):
    scheme = document["components"]["securitySchemes"]["apiKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    needs = {(path, method): op.get("security") for path, ops in document["paths"].items()
             for method, op in ops.items()}
    for (path, method), security in needs.items():
        if not path.startswith("/items"):
            assert security is None, f"{method} {path} is public"
            continue
        scope = "read" if method == "get" else "write"
        assert security == [{"apiKey": [scope]}], (method, path)
        responses = document["paths"][path][method]["responses"]
        assert "401" in responses and ("403" in responses) == (scope == "write"), (method, path)
