"""Reading request bodies and query strings into the models of `schemas`.

The order of the checks follows the contract: media type (415), size (413,
decided from Content-Length before anything is read), JSON syntax (400), then
the model (422, listing every offending field). JSON numbers are parsed as
Decimal so that a price is never rounded through a binary float; duplicate
keys, NaN and Infinity are syntax errors.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, TypeVar

from flask import current_app, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from .errors import Problem
from .schemas import READ_ONLY_FIELDS

M = TypeVar("M", bound=BaseModel)

JSON_TYPES = ("application/json",)
PATCH_TYPES = ("application/merge-patch+json", "application/json")


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
    if request.mimetype not in media_types:
        headers = {"Accept-Patch": ", ".join(PATCH_TYPES)} if request.method == "PATCH" else None
        raise Problem(
            415,
            "Unsupported Media Type",
            f"The body must be sent as {' or '.join(media_types)}.",
            headers=headers,
        )
    # get_data() refuses (413) a declared length over MAX_CONTENT_LENGTH
    # before reading anything. A chunked body has no declared length: it is
    # read up to the limit and, if it reaches it, refused the same way.
    raw = request.get_data(cache=False)
    if request.content_length is None and len(raw) >= current_app.config["MAX_CONTENT_LENGTH"]:
        raise RequestEntityTooLarge()
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise Problem(
            422,
            "Unprocessable Content",
            "The body must be a JSON object.",
            errors=[{"field": "", "message": "must be a JSON object"}],
        )
    try:
        return model.model_validate(data)
    except ValidationError as e:
        errors = field_errors(e)
        raise Problem(
            422,
            "Unprocessable Content",
            "Invalid fields: " + ", ".join(sorted({err["field"] for err in errors})) + ".",
            errors=errors,
        ) from None


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
    names = ", ".join(sorted({err["field"] for err in errors}))
    return Problem(400, "Bad Request", f"Invalid query parameters: {names}.", errors=errors)


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
