"""Hostile and malformed input: always a 4xx problem, never a 5xx or a hang.

Every rejected request must leave the database as it was; the `unchanged`
fixture compares a digest of the whole items table before and after (of the
database the server writes to: `table_digest` in conftest.py).
Requests carry timeouts, and raw-socket tests are bounded in time.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from app.config import MAX_BODY_BYTES
from rawhttp import h2_partial_posts, parse_raw, raw_exchange

PROBLEM = "application/problem+json"
T = 10  # seconds: no request in this module may take longer
MIB = 1024 * 1024
LIMIT = MAX_BODY_BYTES  # the default body limit, which the servers under test keep
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


# --------------------------------------------------------------------------- helpers


def assert_problem(response: requests.Response, *statuses: int) -> dict[str, Any]:
    """A problem+json body with type, title, status and detail; status one of `statuses`."""
    assert response.status_code in statuses, (response.status_code, response.text[:500])
    assert response.headers.get("Content-Type", "").split(";")[0].strip() == PROBLEM, response.headers
    body = response.json()
    for key, kind in (("type", str), ("title", str), ("status", int), ("detail", str)):
        assert isinstance(body.get(key), kind), body
    assert body["status"] == response.status_code
    assert "Traceback" not in response.text
    return body


def fields(body: dict[str, Any]) -> set[str]:
    return {e["field"] for e in body.get("errors") or []}


def post_raw(
    api, body: bytes | str, content_type: str | None = "application/json", **kw: Any
) -> requests.Response:
    headers = {"Content-Type": content_type} if content_type is not None else {}
    data = body.encode() if isinstance(body, str) else body
    return api.post("/items", data=data, headers={**headers, **kw.pop("headers", {})}, timeout=T, **kw)


def item_json(unique: str, **raw: str) -> str:
    """An item body whose values are given as raw JSON text (numbers exactly as written)."""
    values = {"name": json.dumps(f"h-{unique}"), "price": "1", **raw}
    return "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in values.items()) + "}"


def assert_raw_problem(received: bytes, *statuses: int) -> dict[str, Any]:
    assert received, "the server closed the connection without an answer"
    status, headers, body = parse_raw(received)
    assert status in statuses, (status, received[:500])
    assert headers.get("content-type", "").split(";")[0] == PROBLEM, headers
    problem = json.loads(body)
    for key, kind in (("type", str), ("title", str), ("status", int), ("detail", str)):
        assert isinstance(problem.get(key), kind), problem
    assert problem["status"] == status
    return problem


def server_still_serves(api) -> None:
    assert api.get("/health/live", timeout=T).status_code == 200
    assert api.get("/items", params={"limit": 1}, timeout=T).status_code == 200


# --------------------------------------------------------------------------- strings


@pytest.mark.parametrize("field", ["name", "description"])
@pytest.mark.parametrize("text", ["a\u0000b", "\u0000", "abc\u0000"])
def test_a_nul_character_is_422_naming_the_field(api, unique, unchanged, field, text):
    body = {"name": f"h-{unique}", "price": 1, field: text if field == "description" else unique + text}
    assert fields(assert_problem(api.post("/items", json=body, timeout=T), 422)) == {field}


@pytest.mark.parametrize("field", ["name", "description"])
@pytest.mark.parametrize("escape", [r"\ud800", r"\udfff", r"x\ud800y", r"\udc00\ud800"])
def test_a_lone_surrogate_is_4xx(api, unique, unchanged, field, escape):
    value = f'"h-{unique}{escape}"' if field == "name" else f'"{escape}"'
    body = assert_problem(post_raw(api, item_json(unique, **{field: value})), 400, 422)
    if body["status"] == 422:
        assert fields(body) == {field}


def test_a_nul_character_in_a_patch_is_422_and_changes_nothing(api, unique, table_digest):
    item = api.create(name=f"h-{unique}")
    before = table_digest()
    response = api.patch(f"/items/{item['id']}", json={"description": "x\u0000"}, timeout=T)
    assert fields(assert_problem(response, 422)) == {"description"}
    assert table_digest() == before


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    "price",
    ["1e309", "1e10", "10000000000", "9999999999.999", "-0.01", "-1", "0.001", "1.005", "1e-3",
     "1e999999999", "-1e999999999", "1e-999999999", "true", "false", "null", '"19.99"', '"1"', "[1]",
     '{"amount": 1}', "1" * 5000, "0." + "1" * 5000],
    ids=lambda p: p if len(p) < 30 else f"{p[:10]}...({len(p)} chars)",
)
def test_a_price_out_of_range_or_of_the_wrong_type_is_422_naming_price(api, unique, unchanged, price):
    response = post_raw(api, item_json(unique, price=price))
    assert fields(assert_problem(response, 422)) == {"price"}


@pytest.mark.parametrize(
    "quantity",
    ["2147483648", "-1", "1.5", "1.5e0", "2147483647.5", "-0.5", "3e9", "1e10", "true", "false", '"5"',
     "null", "[1]", "9" * 30, "-" + "9" * 30, "1" * 5000],
    ids=lambda q: q if len(q) < 40 else f"{q[:10]}...({len(q)} chars)",
)
def test_a_quantity_out_of_range_or_not_an_integer_is_422_naming_quantity(api, unique, unchanged, quantity):
    response = post_raw(api, item_json(unique, quantity=quantity))
    assert fields(assert_problem(response, 422)) == {"quantity"}


@pytest.mark.parametrize("quantity", ["1e2", "1E2", "1.0e2", "100.0", "100.000", "10000e-2"])
def test_an_integral_json_number_as_quantity_is_that_integer(api, unique, quantity):
    # JSON has one number type, and JSON Schema counts 100.0 and 1e2 as integers.
    response = post_raw(api, item_json(unique, quantity=quantity))
    assert response.status_code == 201, response.text
    assert re.search(r'"quantity"\s*:\s*100\s*[,}]', response.text), response.text


@pytest.mark.parametrize("quantity", ["1e300000", "1e999999999", "-1e999999999", "1" * 5000])
def test_a_huge_quantity_is_refused_at_once(api, unique, unchanged, quantity):
    # A few bytes of JSON must not make the server build a huge integer.
    started = time.monotonic()
    response = post_raw(api, item_json(unique, quantity=quantity))
    elapsed = time.monotonic() - started
    assert fields(assert_problem(response, 422)) == {"quantity"}
    assert elapsed < 5.0, f"the server took {elapsed:.1f} s to refuse {quantity[:20]}"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("field", ["price", "quantity"])
def test_nan_and_infinity_literals_are_400(api, unique, unchanged, field, literal):
    assert_problem(post_raw(api, item_json(unique, **{field: literal})), 400)


@pytest.mark.parametrize("zero", ["-0", "-0.0", "-0.00", "0e5", "-0e-2"])
def test_negative_zero_as_price_is_zero_or_refused_never_5xx(api, unique, zero):
    response = post_raw(api, item_json(unique, price=zero))
    assert response.status_code < 500, response.text
    if response.status_code == 201:
        price = response.json()["price"]
        assert Decimal(str(price)) == 0 and not str(price).startswith("-")
    else:
        assert_problem(response, 400, 422)


def test_the_largest_price_and_quantity_are_accepted_exactly(api, unique):
    response = post_raw(api, item_json(unique, price="9999999999.99", quantity="2147483647"))
    assert response.status_code == 201, response.text
    assert json.loads(response.text, parse_float=Decimal)["price"] == Decimal("9999999999.99")
    assert response.json()["quantity"] == 2147483647


# --------------------------------------------------------------------------- ids in paths


BAD_IDS = [
    "9223372036854775808",
    "99999999999999999999999999",
    "9223372036854775807",  # the largest bigint: valid, but no such item
    "0",
    "00",
    "-1",
    "+1",
    "abc",
    "1.0",
    "1e3",
    "0x10",
    " 1",
    "1 ",
    "%D9%A1%D9%A2",  # Arabic-Indic digits ١٢
    "%EF%BC%91",  # fullwidth digit one
    "%2F",
    "..%2F",
    "..%2F..%2Fhealth",
    "%00",
    "1%00",
    "%27%20OR%201%3D1",
    "1;DROP%20TABLE%20items",
]


@pytest.mark.parametrize("item_id", BAD_IDS)
@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_an_id_that_is_not_a_positive_bigint_is_404_problem(api, unique, unchanged, method, item_id):
    kwargs = {"json": {"name": f"h-{unique}", "price": 1}} if method in ("PUT", "PATCH") else {}
    response = api.request(method, f"/items/{item_id}", timeout=T, **kwargs)
    assert_problem(response, 404)


# --------------------------------------------------------------------------- JSON syntax and shape


def test_duplicate_keys_are_400(api, unique, unchanged):
    body = f'{{"name": "h-{unique}", "price": 1, "price": 2}}'
    assert_problem(post_raw(api, body), 400)


def test_duplicate_keys_differing_only_by_escape_are_400(api, unique, unchanged):
    body = f'{{"name": "h-{unique}", "price": 1, "pr\\u0069ce": 2}}'
    assert_problem(post_raw(api, body), 400)


@pytest.mark.parametrize(
    "body",
    [
        "[" * 10_000 + "]" * 10_000,
        '{"a":' * 10_000 + "1" + "}" * 10_000,
        '{"name": "h-UNIQUE", "price": 1, "description": ' + "[" * 10_000 + "]" * 10_000 + "}",
        '{"name": "h-UNIQUE", "price": 1, "description": ' + '{"a":' * 10_000 + "1" + "}" * 10_001,
        "[" * 60_000,
    ],
    ids=["array", "object", "array in a field", "object in a field", "unclosed 60000"],
)
def test_deeply_nested_json_is_400_or_422(api, unique, unchanged, body):
    assert_problem(post_raw(api, body.replace("UNIQUE", unique)), 400, 422)


@pytest.mark.parametrize("body", ["[]", '[{"name": "x", "price": 1}]', '"a string"', "42", "1.5", "null",
                                  "true"])
def test_a_body_that_is_not_a_json_object_is_422(api, unchanged, body):
    assert_problem(post_raw(api, body), 422)


@pytest.mark.parametrize(
    "make",
    [
        lambda u: f'{{"name": "h-{u}'.encode() + b'\xff", "price": 1}',
        lambda u: f'{{"name": "h-{u}'.encode() + b'\xc3\x28", "price": 1}',
        lambda u: f'{{"name": "h-{u}'.encode() + b'\xc0\xaf", "price": 1}',  # overlong "/"
        lambda u: f'{{"name": "h-{u}'.encode() + b'\xf8\x88\x80\x80\x80", "price": 1}',  # 5-byte form
        lambda u: f'{{"name": "h-{u}'.encode() + b'\xe2\x82", "price": 1}',  # truncated sequence
        # A UTF-16 surrogate written in UTF-8 (CESU-8): not UTF-8 (RFC 3629).
        lambda u: f'{{"name": "h-{u}'.encode() + b'\xed\xa0\x80", "price": 1}',
        # JSON exchanged between systems must be UTF-8 (RFC 8259, section 8.1).
        lambda u: b"\xff\xfe" + f'{{"name": "h-{u}", "price": 1}}'.encode("utf-16-le"),
        lambda u: f'{{"name": "h-{u}", "price": 1}}'.encode("utf-32"),
    ],
    ids=["xff", "bad continuation", "overlong", "five bytes", "truncated", "encoded surrogate",
         "utf-16 with bom", "utf-32"],
)
def test_a_body_that_is_not_utf8_is_400(api, unique, unchanged, make):
    assert_problem(post_raw(api, make(unique)), 400)


@pytest.mark.parametrize("body", [b"", b" ", b"\n", b"{", b'{"name": "x",}', b"{'name': 'x'}", b"\x00",
                                  b'{"name": "x", "price": 1} trailing'])
def test_an_empty_or_broken_body_is_400(api, unchanged, body):
    assert_problem(post_raw(api, body), 400)


# --------------------------------------------------------------------------- content types


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/xml", "application/x-www-form-urlencoded",
     "multipart/form-data; boundary=x", "application/jsonx", "application/merge-patch+json", "json", ""],
)
def test_a_post_with_another_content_type_is_415(api, unique, unchanged, content_type):
    assert_problem(post_raw(api, item_json(unique), content_type), 415)


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/xml", "application/json-patch+json"]
)
def test_a_patch_with_another_content_type_is_415(api, unique, table_digest, content_type):
    item = api.create(name=f"h-{unique}")
    before = table_digest()
    headers = {"Content-Type": content_type} if content_type else {}
    response = api.patch(f"/items/{item['id']}", data=b'{"quantity": 3}', headers=headers, timeout=T)
    assert_problem(response, 415)
    assert table_digest() == before


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/json;charset=UTF-8",
                                          "Application/JSON"])
def test_json_with_a_charset_parameter_is_accepted(api, unique, content_type):
    response = post_raw(api, item_json(unique), content_type)
    assert response.status_code == 201, response.text


def test_a_patch_as_merge_patch_json_is_accepted(api, unique):
    item = api.create(name=f"h-{unique}")
    response = api.patch(f"/items/{item['id']}", data=b'{"quantity": 3}', timeout=T,
                         headers={"Content-Type": "application/merge-patch+json"})
    assert response.status_code == 200, response.text
    assert response.json()["quantity"] == 3


# --------------------------------------------------------------------------- unknown and read-only fields


@pytest.mark.parametrize("extra", ["id", "version", "created_at", "updated_at", "bogus", "Name", "price "])
def test_an_unknown_or_read_only_field_in_a_post_is_422_naming_it(api, unique, unchanged, extra):
    body = {"name": f"h-{unique}", "price": 1, extra: 1}
    assert fields(assert_problem(api.post("/items", json=body, timeout=T), 422)) == {extra}


def test_every_read_only_and_unknown_field_is_listed(api, unique, unchanged):
    body = {"name": f"h-{unique}", "price": 1, "id": 1, "version": 1, "created_at": "2020-01-01T00:00:00Z",
            "updated_at": "2020-01-01T00:00:00Z", "bogus": True}
    found = fields(assert_problem(api.post("/items", json=body, timeout=T), 422))
    assert found == {"id", "version", "created_at", "updated_at", "bogus"}


def test_several_bad_fields_at_once_are_all_listed(api, unique, unchanged):
    body = {"name": "   ", "description": "x" * 2001, "price": "1", "quantity": -1, "id": 5, "bogus": 1}
    found = fields(assert_problem(api.post("/items", json=body, timeout=T), 422))
    assert found == {"name", "description", "price", "quantity", "id", "bogus"}


def test_missing_required_fields_are_all_listed(api, unchanged):
    found = fields(assert_problem(api.post("/items", json={}, timeout=T), 422))
    assert found == {"name", "price"}


def test_a_read_only_field_in_a_patch_is_422_and_changes_nothing(api, unique, table_digest):
    item = api.create(name=f"h-{unique}")
    before = table_digest()
    response = api.patch(f"/items/{item['id']}", json={"quantity": 2, "version": 9, "id": 1}, timeout=T)
    assert fields(assert_problem(response, 422)) == {"version", "id"}
    assert table_digest() == before


# --------------------------------------------------------------------------- body size


def _padded_item(unique: str, size: int) -> bytes:
    head = f'{{"name": "h-{unique}", "price": 1, "description": "'.encode()
    tail = b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def test_a_declared_body_over_the_limit_is_413(server, api_key, unique, unchanged):
    body = _padded_item(unique, 2 * MIB)
    request = (
        f"POST /items HTTP/1.1\r\nHost: {urlsplit(server.url).netloc}\r\nAuthorization: Bearer {api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    chunks = [body[i:i + 65536] for i in range(0, len(body), 65536)]
    assert_raw_problem(raw_exchange(server, request, body_chunks=chunks), 413)


def post_oversized(api, body: bytes, *, chunked: bool) -> requests.Response:
    """POST an oversized body with requests, the way an ordinary client would.

    The server answers before reading the whole body and then closes the
    connection; a client still sending can, rarely, see that close (a reset)
    before it reads the answer. Such a lost answer is retried (the body is
    refused, so nothing was stored); three lost answers in a row fail the test.
    """
    errors = []
    for _ in range(3):
        data = _chunks(body, 65536) if chunked else body
        try:
            return api.post("/items", data=data, timeout=T, headers={"Content-Type": "application/json"})
        except requests.ConnectionError as e:
            errors.append(repr(e))
    pytest.fail(f"no answer was readable in three attempts: {errors}")


def test_a_declared_body_over_the_limit_is_413_with_requests(api, unique, unchanged):
    assert_problem(post_oversized(api, _padded_item(unique, 2 * MIB), chunked=False), 413)


def test_a_declared_length_over_the_limit_is_413_before_the_body_is_sent(server, api_key, unique, unchanged):
    # Only the headers go out: the answer must come without waiting for 2 MiB.
    request = (
        f"POST /items HTTP/1.1\r\nHost: {urlsplit(server.url).netloc}\r\nAuthorization: Bearer {api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {2 * MIB}\r\nConnection: close\r\n\r\n"
    ).encode()
    started = time.monotonic()
    received = raw_exchange(server, request, timeout=5)
    assert time.monotonic() - started < 5, "the server waited for the body"
    assert_raw_problem(received, 413)


def test_a_body_of_exactly_the_limit_is_not_413(api, unique):
    response = post_raw(api, _padded_item(unique, LIMIT))
    # The description is far too long for the contract, but the size is allowed.
    assert fields(assert_problem(response, 422)) == {"description"}


def _chunks(data: bytes, size: int = 8192):
    for i in range(0, len(data), size):
        yield data[i:i + size]


def test_a_small_chunked_json_body_is_created_or_411(api, unique):
    body = item_json(unique, quantity="4").encode()
    response = api.post("/items", data=_chunks(body, 7), headers={"Content-Type": "application/json"},
                        timeout=T)
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    if response.status_code == 201:
        assert response.json()["name"] == f"h-{unique}"
        assert response.json()["quantity"] == 4
    else:
        assert_problem(response, 411)


def test_a_chunked_body_over_the_limit_is_413_or_411(api, unique, unchanged):
    response = post_oversized(api, _padded_item(unique, 2 * MIB), chunked=True)
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert_problem(response, 413, 411)
    server_still_serves(api)


def test_a_chunked_body_valid_in_its_first_bytes_but_longer_is_413_or_411(api, unique, unchanged):
    # A valid item followed by 2 MiB of JSON whitespace: cutting the body at the limit
    # and parsing what was read would wrongly accept it.
    body = item_json(unique).encode() + b" " * (2 * MIB)
    assert_problem(post_oversized(api, body, chunked=True), 413, 411)


# --------------------------------------------------------------------------- headers


def test_thousands_of_headers_are_refused_or_handled_never_5xx_or_a_hang(api, server):
    headers = {f"X-Junk-{i}": "x" for i in range(2000)}
    started = time.monotonic()
    try:
        response = api.get("/items", params={"limit": 1}, headers=headers, timeout=T)
    except requests.ConnectionError:
        response = None  # the server may drop such a request; it must not hang or fail
    assert time.monotonic() - started < T
    if response is not None:
        assert response.status_code < 500, response.text
    server_still_serves(api)


def test_a_10_kb_header_value_is_handled(api):
    response = api.get("/items", params={"limit": 1}, headers={"X-Junk": "a" * 10_240}, timeout=T)
    assert response.status_code == 200, response.text


def test_a_header_with_non_ascii_bytes_is_handled(api):
    response = api.get("/items", params={"limit": 1}, timeout=T,
                       headers={"X-Junk": "caf\u00e9 \xff\xfe".encode("latin-1")})
    assert response.status_code == 200, response.text


def test_a_request_id_with_non_ascii_bytes_is_replaced(api):
    response = api.get("/items", params={"limit": 1}, timeout=T,
                       headers={"X-Request-ID": "abc\u00e9".encode("latin-1")})
    assert response.status_code == 200
    assert _REQUEST_ID.fullmatch(response.headers["X-Request-ID"])
    assert response.headers["X-Request-ID"] != "abc\u00e9"


def test_a_post_with_junk_headers_still_validates_its_body(api, unique, unchanged):
    headers = {"X-Junk": "\xff".encode("latin-1"), "Content-Type": "application/json"}
    response = api.post("/items", data=item_json(unique, price="-1"), headers=headers, timeout=T)
    assert fields(assert_problem(response, 422)) == {"price"}


def test_a_slow_client_does_not_stop_others_from_being_served(api, server):
    host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
    request = f"GET /items?limit=1 HTTP/1.1\r\nHost: {host}:{port}\r\nX-Slow: " + "s" * 100
    slow = [socket.create_connection((host, port), timeout=5) for _ in range(12)]
    stop = threading.Event()

    def trickle() -> None:
        for byte in request.encode():
            if stop.is_set():
                return
            for sock in slow:
                try:
                    sock.send(bytes([byte]))
                except OSError:
                    pass
            stop.wait(0.2)

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        time.sleep(0.5)  # the slow clients have started their headers
        deadline = time.monotonic() + 3
        served = 0
        while time.monotonic() < deadline:
            started = time.monotonic()
            response = api.get("/items", params={"limit": 1}, timeout=2)
            assert response.status_code == 200
            assert time.monotonic() - started < 1, "a request waited behind the slow clients"
            served += 1
            time.sleep(0.1)
        assert served >= 10
        assert trickler.is_alive(), "the slow clients finished too early to prove anything"
    finally:
        stop.set()
        trickler.join(2)
        for sock in slow:
            sock.close()


# --------------------------------------------------------------------------- text limits


def test_a_name_of_exactly_200_characters_is_accepted(api, unique):
    name = unique + "n" * (200 - len(unique))
    response = api.post("/items", json={"name": name, "price": 1}, timeout=T)
    assert response.status_code == 201, response.text
    assert response.json()["name"] == name


def test_a_name_of_200_non_bmp_characters_is_accepted(api, unique):
    name = unique + "\U0001f600" * (200 - len(unique))
    response = api.post("/items", json={"name": name, "price": 1}, timeout=T)
    assert response.status_code == 201, response.text
    assert response.json()["name"] == name


@pytest.mark.parametrize("filler", ["n", "\U0001f600", "\u00e9"])
def test_a_name_of_201_characters_is_rejected(api, unique, unchanged, filler):
    name = unique + filler * (201 - len(unique))
    response = api.post("/items", json={"name": name, "price": 1}, timeout=T)
    assert fields(assert_problem(response, 422)) == {"name"}


def test_a_description_of_exactly_2000_characters_is_accepted(api, unique):
    body = {"name": f"h-{unique}", "price": 1, "description": "d" * 2000}
    response = api.post("/items", json=body, timeout=T)
    assert response.status_code == 201, response.text
    assert response.json()["description"] == "d" * 2000


def test_a_description_of_2001_characters_is_rejected(api, unique, unchanged):
    body = {"name": f"h-{unique}", "price": 1, "description": "d" * 2001}
    assert fields(assert_problem(api.post("/items", json=body, timeout=T), 422)) == {"description"}


@pytest.mark.parametrize("name", ["", " ", "   ", "\t\n", "\u00a0", "\u3000", "\u2028", "\ufeff", " \u200a "])
def test_an_empty_or_whitespace_only_name_is_rejected(api, unchanged, name):
    response = api.post("/items", json={"name": name, "price": 1}, timeout=T)
    assert fields(assert_problem(response, 422)) == {"name"}


def test_names_that_differ_only_in_case_are_distinct(api, unique):
    lower = api.post("/items", json={"name": f"case-{unique}", "price": 1}, timeout=T)
    upper = api.post("/items", json={"name": f"CASE-{unique.upper()}", "price": 1}, timeout=T)
    assert (lower.status_code, upper.status_code) == (201, 201), (lower.text, upper.text)
    assert lower.json()["id"] != upper.json()["id"]


# --------------------------------------------------------------------------- X-Request-ID


@pytest.mark.parametrize("request_id", ["abc", "A-b_c.9", "0" * 128, str(uuid.uuid4())])
def test_a_well_formed_request_id_is_echoed(api, request_id):
    response = api.get("/items", params={"limit": 1}, headers={"X-Request-ID": request_id}, timeout=T)
    assert response.headers["X-Request-ID"] == request_id


def test_a_well_formed_request_id_is_echoed_on_errors_too(api):
    response = api.get("/items/abc", headers={"X-Request-ID": "err-123"}, timeout=T)
    assert_problem(response, 404)
    assert response.headers["X-Request-ID"] == "err-123"


@pytest.mark.parametrize("request_id", ["a" * 129, "a b", "<script>", "a/b", "a;b", "", "é",
                                        "id%0d%0a"])
def test_an_over_long_or_malformed_request_id_is_replaced(api, request_id):
    response = api.get("/items", params={"limit": 1}, headers={"X-Request-ID": request_id}, timeout=T)
    echoed = response.headers["X-Request-ID"]
    assert echoed != request_id
    assert _REQUEST_ID.fullmatch(echoed)


def test_fresh_request_ids_differ(api):
    seen = {api.get("/health/live", timeout=T).headers["X-Request-ID"] for _ in range(5)}
    assert len(seen) == 5


# --------------------------------------------------------------------------- round two: one
# connection must never take the API down (HTTP/2, huge member lists, numbers PostgreSQL refuses,
# truncated bodies, entity tags, protocol headers, log lines)


def test_http2_prior_knowledge_is_not_spoken(server):
    answer = h2_partial_posts(server, streams=1)
    # An HTTP/2 server answers the preface with a SETTINGS frame (type 4 in the fifth byte).
    assert not (len(answer) >= 9 and answer[3] == 0x4), answer[:40]


def test_dropped_http2_streams_leave_every_endpoint_answering(api, server):
    for _ in range(2):
        h2_partial_posts(server, streams=4)
    started = time.monotonic()
    assert api.get("/health/live", timeout=T).status_code == 200
    assert api.get("/items", params={"limit": 1}, timeout=T).status_code == 200
    assert time.monotonic() - started < 2


def _members(count: int, unique: str) -> str:
    return "{" + f'"name": "h-{unique}", "price": 1, ' + ", ".join(f'"k{i}": 1' for i in range(count)) + "}"


def test_more_members_than_an_item_can_have_is_422_without_validating(api, unique, unchanged):
    body = assert_problem(post_raw(api, _members(65, unique)), 422)
    assert "67 members" in body["detail"], body["detail"]


def test_an_error_list_is_capped_at_50_and_counts_the_rest(api, unique, unchanged):
    body = assert_problem(post_raw(api, _members(5000, unique)), 422)
    assert len(body["errors"]) == 50
    assert body["errors_omitted"] == 4950
    assert body["errors"][0] == {"field": "k0", "message": "is not a known field"}


def test_many_unknown_query_parameters_are_capped_too(api):
    query = "&".join(f"p{i}=1" for i in range(500))
    body = assert_problem(api.get(f"/items?{query}", timeout=T), 400)
    assert len(body["errors"]) == 50 and body["errors_omitted"] == 450
    assert "and 450 more" in body["detail"]


@pytest.mark.parametrize("price", ["0e-16384", "1." + "0" * 16384, "1e-99999", "0e99999", "1" + "0" * 60])
def test_a_price_postgresql_cannot_take_is_422_before_any_sql(api, unique, unchanged, price):
    assert fields(assert_problem(post_raw(api, item_json(unique, price=price)), 422)) == {"price"}


@pytest.mark.parametrize("param,value", [("min_price", "1e-16384"), ("max_price", "0e-99999"),
                                         ("min_price", "1." + "0" * 2000), ("max_price", "1e+99999")])
def test_a_price_filter_postgresql_cannot_take_is_400(api, param, value):
    body = assert_problem(api.get("/items", params={param: value}, timeout=T), 400)
    assert fields(body) == {param}


def test_a_price_with_trailing_zeros_within_bounds_is_accepted(api, unique):
    response = post_raw(api, item_json(unique, price="19.9900000000"))
    assert response.status_code == 201, response.text
    assert str(response.json()["price"]) == "19.99"


def _half_close(server, request: bytes) -> bytes:
    """Send `request`, close our sending side, and read the whole answer."""
    host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
    with socket.create_connection((host, port), timeout=T) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while data := sock.recv(65536):
            received += data
        return received


def _post_head(server, key: str, **headers: str) -> bytes:
    lines = [f"POST /items HTTP/1.1", f"Host: {urlsplit(server.url).netloc}", f"Authorization: Bearer {key}",
             "Content-Type: application/json", *(f"{k.replace('_', '-')}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_a_body_shorter_than_its_content_length_is_400_and_stores_nothing(server, api_key, unique, unchanged):
    body = item_json(unique).encode()
    received = _half_close(server, _post_head(server, api_key, Content_Length=str(len(body) + 50)) + body)
    assert "Content-Length" in assert_raw_problem(received, 400)["detail"]


def test_a_chunked_body_without_its_last_chunk_stores_nothing(server, api_key, unique, unchanged):
    body = item_json(unique).encode()
    chunk = b"%x\r\n%s\r\n" % (len(body), body)  # a whole item, but no terminating 0-chunk
    received = _half_close(server, _post_head(server, api_key, Transfer_Encoding="chunked") + chunk)
    assert_raw_problem(received, 411)


def test_a_chunked_body_is_411_asking_for_content_length(api, unique, unchanged):
    body = item_json(unique).encode()
    response = api.post("/items", data=_chunks(body, 7), headers={"Content-Type": "application/json"},
                        timeout=T)
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" in assert_problem(response, 411)["detail"]


@pytest.mark.parametrize("if_match", ["1", "W/\"1\"", "1, 2", "\"1", "'1'"])
def test_if_match_without_a_strong_quoted_tag_matches_nothing(api, unique, if_match):
    item = api.post("/items", json={"name": f"h-{unique}", "price": 1}, timeout=T).json()
    response = api.patch(f"/items/{item['id']}", json={"quantity": 3}, headers={"If-Match": if_match},
                         timeout=T)
    assert_problem(response, 412)
    assert api.get(f"/items/{item['id']}", timeout=T).json()["version"] == 1


def test_if_match_with_the_quoted_tag_among_others_matches(api, unique):
    item = api.post("/items", json={"name": f"h-{unique}", "price": 1}, timeout=T).json()
    response = api.patch(f"/items/{item['id']}", json={"quantity": 3}, headers={"If-Match": '"7", "1"'},
                         timeout=T)
    assert response.status_code == 200, response.text


def _every_kind_of_response(api, unique) -> dict[str, requests.Response]:
    item = api.post("/items", json={"name": f"h-{unique}", "price": 1}, timeout=T)
    path = f"/items/{item.json()['id']}"
    return {
        "created": item,
        "item": api.get(path, timeout=T),
        "not modified": api.get(path, headers={"If-None-Match": item.headers["ETag"]}, timeout=T),
        "listing": api.get("/items", params={"limit": 1}, timeout=T),
        "error": api.get("/items/0", timeout=T),
        "health": api.get("/health/live", timeout=T),
        "openapi": api.get("/openapi.json", timeout=T),
        "options": api.options("/items", timeout=T),
        "deleted": api.delete(path, timeout=T),
    }


def test_every_response_says_nosniff(api, unique):
    for kind, response in _every_kind_of_response(api, unique).items():
        assert response.headers.get("X-Content-Type-Options") == "nosniff", kind


def test_items_revalidate_and_nothing_else_is_stored(api, unique):
    expected = {"created": "no-cache", "item": "no-cache", "not modified": "no-cache"}
    for kind, response in _every_kind_of_response(api, unique).items():
        assert response.headers.get("Cache-Control") == expected.get(kind, "no-store"), kind


def test_options_has_no_html_content_type(api):
    response = api.options("/items", timeout=T)
    assert response.status_code == 200
    assert "text/html" not in response.headers.get("Content-Type", "")
    assert {"GET", "POST"} <= {m.strip() for m in response.headers["Allow"].split(",")}


@pytest.mark.parametrize("host_lines", [[], ["Host: a", "Host: b"]], ids=["no Host", "two Hosts"])
def test_a_request_without_exactly_one_host_is_400(server, host_lines):
    request = "\r\n".join(["GET /items?limit=1 HTTP/1.1", *host_lines, "Connection: close", "", ""])
    assert_raw_problem(raw_exchange(server, request.encode()), 400)


@pytest.mark.parametrize("charset", ["latin-1", "utf-16", "iso-8859-1", "us-ascii"])
def test_a_charset_other_than_utf8_is_415(api, unique, unchanged, charset):
    response = post_raw(api, item_json(unique), content_type=f"application/json; charset={charset}")
    assert_problem(response, 415)


@pytest.mark.parametrize("spelling", ["0{id}", "00{id}", "0000000000000000000{id}"])
def test_an_id_with_leading_zeros_is_404(api, unique, spelling):
    item = api.post("/items", json={"name": f"h-{unique}", "price": 1}, timeout=T).json()
    assert_problem(api.get("/items/" + spelling.format(id=item["id"]), timeout=T), 404)
