"""docs/api.md, the HTTP contract in prose, says what /openapi.json says.

The contract is written for people and the OpenAPI document is generated from
the code, so the two can drift apart silently. These tests read the contract's
two tables (the endpoints and the resource) and hold them against the document:
the same operations, the statuses the prose promises among each operation's
responses, and the same item fields. A failure names what differs, on which
side. No services are needed.
"""

from __future__ import annotations

import re
from pathlib import Path

from app.config import MAX_BODY_BYTES
from app.openapi import document

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
# A path parameter, written `<id>` in the prose and `{item_id}` in OpenAPI.
PARAMETER = re.compile(r"<[^>]+>|\{[^}]+\}")
STATUS = re.compile(r"\b[1-5]\d\d\b")


def _section(markdown: str, title: str) -> str:
    """The text under the level-2 heading `title`, up to the next level-2 heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    assert match, f"docs/api.md has no '## {title}' section"
    return match.group(1)


def _table_rows(section: str) -> list[list[str]]:
    """The body rows of the section's first Markdown table, as stripped cells."""
    lines = [line for line in section.splitlines() if line.startswith("|")]
    assert len(lines) > 2, "the section has no table with rows"
    # Cells are split on pipes that are not escaped (`\|` is a pipe inside a cell).
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines[2:]]


def _operation_key(method: str, path: str) -> str:
    return f"{method.upper()} {PARAMETER.sub('{…}', path)}"


def _documented_endpoints() -> dict[str, set[str]]:
    """`METHOD /path` -> the statuses its row names, from the endpoints table."""
    endpoints = {}
    for cells in _table_rows(_section(API_DOC.read_text(), "Endpoints")):
        method, path = cells[0].strip("`").split(" ", 1)
        endpoints[_operation_key(method, path)] = set(STATUS.findall(" ".join(cells[1:])))
    return endpoints


def _openapi_operations() -> dict[str, set[str]]:
    """`METHOD /path` -> the statuses of its responses, from the OpenAPI document."""
    return {
        _operation_key(method, path): set(operation["responses"])
        for path, operations in document()["paths"].items()
        for method, operation in operations.items()
        if method in HTTP_METHODS
    }


def test_every_endpoint_of_the_contract_is_an_openapi_operation():
    missing = sorted(_documented_endpoints().keys() - _openapi_operations().keys())
    assert not missing, f"in docs/api.md's endpoints table but not in /openapi.json: {missing}"


def test_every_openapi_operation_is_in_the_contract():
    missing = sorted(_openapi_operations().keys() - _documented_endpoints().keys())
    assert not missing, f"in /openapi.json but not in docs/api.md's endpoints table: {missing}"


def test_statuses_the_contract_names_are_responses_of_their_operation():
    operations = _openapi_operations()
    undocumented = {
        endpoint: sorted(statuses - operations[endpoint])
        for endpoint, statuses in _documented_endpoints().items()
        if endpoint in operations and statuses - operations[endpoint]
    }
    assert not undocumented, (
        f"statuses docs/api.md names that the operation's responses in /openapi.json lack: {undocumented}"
    )


def test_resource_fields_are_the_item_schema_properties():
    fields = [cells[0].strip("`") for cells in _table_rows(_section(API_DOC.read_text(), "The resource"))]
    properties = list(document()["components"]["schemas"]["Item"]["properties"])
    assert set(fields) == set(properties), (
        f"only in docs/api.md's resource table: {sorted(set(fields) - set(properties))}; "
        f"only in the Item schema: {sorted(set(properties) - set(fields))}"
    )


def test_the_body_limit_the_contract_names_is_the_configured_default():
    limit = f"`MAX_BODY_BYTES`, {MAX_BODY_BYTES // 1024} KiB by default"
    assert limit in API_DOC.read_text(), f"docs/api.md should say {limit!r} (app/config.py)"
