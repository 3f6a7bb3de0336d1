"""Reading request bodies and query strings into the models of `schemas`.

The order of the checks follows the contract: media type (415, a charset
other than UTF-8 included), a declared length (411 without one), size (413,
decided from Content-Length before anything is read), a body shorter than
declared (400), JSON syntax (400), then the model (422, listing the offending
fields). JSON numbers are parsed as Decimal so that a price is never rounded
through a binary float; duplicate keys, NaN and Infinity are syntax errors.

Work per request is bounded: the body's size by MAX_BODY_BYTES, an object
with more members than an item could have is refused before the model sees
it, and an error lists at most `MAX_ERRORS` fields (and says how many more).
Chunked bodies are refused (411): Granian hands a chunked body that lost its
last chunk to the app as if it were whole, so the app could not tell a cut
body from a complete one. Clients send Content-Length for JSON; the edge
turns a chunked upload into one.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from .errors import Problem
from .schemas import READ_ONLY_FIELDS

M = TypeVar("M", bound=BaseModel)

JSON_TYPES = ("application/json",)
PATCH_TYPES = ("application/merge-patch+json", "application/json")
# JSON is UTF-8 (RFC 8259); a body declared in another charset would be misread.
UTF8 = ("utf-8", "utf8")
# An item has 8 names (4 writable, 4 read-only); more members than this can
# only be a mistake or an attack, and are refused without further work.
MAX_MEMBERS = 64
# Errors listed in one problem; the rest are counted.
MAX_ERRORS = 50


class _JSONSyntaxError(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _JSONSyntaxError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _no_constant(name: str) -> Any:
    raise _JSONSyntaxError(f"{name} is not a JSON number")


def parse_json(data: bytes) -> Any:
    """Strict JSON: UTF-8 only, exact numbers, no NaN/Infinity, no duplicate keys.

    Every number becomes a Decimal, integers included: Python's int() refuses
    very long digit strings, and a Decimal is range-checked before anything
    turns it into an int (see `schemas`).
    """
    try:
        # RFC 8259 wants UTF-8; json.loads(bytes) would also guess UTF-16/32.
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Problem(400, "Bad Request", "The body is not valid UTF-8.") from None
    try:
        return json.loads(
            text,
            parse_float=Decimal,
            parse_int=Decimal,
            parse_constant=_no_constant,
            object_pairs_hook=_no_duplicates,
        )
    except _JSONSyntaxError as e:
        raise Problem(400, "Bad Request", f"The body is not valid JSON: {e}.") from None
    except json.JSONDecodeError as e:
        raise Problem(
            400, "Bad Request", f"The body is not valid JSON: {e.msg} at position {e.pos}."
        ) from None
    except RecursionError:
        raise Problem(400, "Bad Request", "The body is not valid JSON: nested too deeply.") from None


def body(model: type[M], media_types: tuple[str, ...] = JSON_TYPES) -> M:
    """The request body validated against `model`, or a Problem."""
    _check_media_type(media_types)
    data = parse_json(_read_body())
    if not isinstance(data, dict):
        raise Problem(
            422,
            "Unprocessable Content",
            "The body must be a JSON object.",
            errors=[{"field": "", "message": "must be a JSON object"}],
        )
    if len(data) > MAX_MEMBERS:
        raise _invalid_fields(
            [{"field": k, "message": _unknown_field(k)} for k in data if k not in model.model_fields],
            f"The body has {len(data)} members; an item has at most {MAX_MEMBERS}.",
        )
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise _invalid_fields(field_errors(e)) from None


def _check_media_type(media_types: tuple[str, ...]) -> None:
    charset = request.mimetype_params.get("charset")
    if request.mimetype in media_types and (charset is None or charset.lower() in UTF8):
        return
    headers = {"Accept-Patch": ", ".join(PATCH_TYPES)} if request.method == "PATCH" else None
    raise Problem(
        415,
        "Unsupported Media Type",
        f"The body must be sent as {' or '.join(media_types)}, in UTF-8.",
        headers=headers,
    )


def _read_body() -> bytes:
    """The whole body, when its declared length arrived; never more than the limit."""
    declared = request.content_length
    if declared is None:
        raise Problem(
            411,
            "Length Required",
            "Send the body with a Content-Length header (chunked bodies are not accepted).",
            # The body was not read: the connection cannot carry another request.
            headers={"Connection": "close"},
        )
    # get_data() refuses (413) a declared length over MAX_CONTENT_LENGTH
    # before reading anything.
    raw = request.get_data(cache=False)
    if len(raw) != declared:
        # The client hung up early (Granian ends the body where the data did).
        raise Problem(
            400,
            "Bad Request",
            f"The body ended after {len(raw)} of the {declared} bytes its Content-Length declared.",
        )
    return raw


def _unknown_field(name: str) -> str:
    return "is read-only" if name in READ_ONLY_FIELDS else "is not a known field"


def _invalid_fields(errors: list[dict[str, str]], detail: str | None = None) -> Problem:
    return listed(422, "Unprocessable Content", "Invalid fields", errors, detail)


def listed(
    status: int, title: str, what: str, errors: list[dict[str, str]], detail: str | None = None
) -> Problem:
    """A problem listing the first `MAX_ERRORS` errors and counting the rest."""
    shown, omitted = errors[:MAX_ERRORS], max(0, len(errors) - MAX_ERRORS)
    more = f" and {omitted} more" if omitted else ""
    names = ", ".join(sorted({err["field"] for err in shown}))
    return Problem(status, title, detail or f"{what}: {names}{more}.", errors=shown, omitted=omitted)


def query(model: type[M]) -> M:
    """The query string validated against `model`; errors are 400s naming the parameter."""
    args = request.args
    repeated = sorted(k for k in args if len(args.getlist(k)) > 1)
    if repeated:
        raise _bad_query([{"field": k, "message": "is given more than once"} for k in repeated])
    try:
        return model.model_validate(args.to_dict())
    except ValidationError as e:
        raise _bad_query(field_errors(e, unknown="is not a known parameter", read_only=())) from None


def _bad_query(errors: list[dict[str, str]]) -> Problem:
    return listed(400, "Bad Request", "Invalid query parameters", errors)


def field_errors(
    e: ValidationError,
    *,
    unknown: str = "is not a known field",
    read_only: tuple[str, ...] = READ_ONLY_FIELDS,
) -> list[dict[str, str]]:
    """Pydantic's errors as ``{"field", "message"}``, worded for API clients."""
    errors = []
    for err in e.errors(include_url=False):
        field = ".".join(str(part) for part in err["loc"])
        kind = err["type"]
        if kind == "missing":
            message = "is required"
        elif kind == "extra_forbidden":
            message = "is read-only" if field in read_only else unknown
        elif err.get("input", ...) is None:
            message = "must not be null"
        elif kind == "value_error":
            message = str(err["ctx"]["error"])
        else:
            message = err["msg"]
        errors.append({"field": field, "message": message})
    return errors
