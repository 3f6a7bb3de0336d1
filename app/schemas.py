"""The shapes the API accepts and returns, declared once.

These pydantic models validate requests, word the validation errors, and are
the JSON Schemas (2020-12, the dialect of OpenAPI 3.1) that ``/openapi.json``
publishes. Where pydantic's default schema would promise more than the API
accepts (a price as a string, say), the schema is written out here, next to
the check that enforces it.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)

MAX_PRICE = Decimal(10_000_000_000)
MAX_QUANTITY = 2_147_483_647
MAX_ID = 2**63 - 1
# Digits (and exponent) a written price may have; numeric(12,2) needs 12.
MAX_DIGITS = 40
SORT_FIELDS = ("id", "name", "price", "quantity", "created_at", "updated_at")
READ_ONLY_FIELDS = ("id", "created_at", "updated_at", "version")

# Whitespace as JSON Schema regexes (ECMA-262 \s) know it, spelled out so that
# the published pattern and the check below agree on every character.
_SPACE = r"\t\n\x0b\x0c\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
TEXT_PATTERN = r"^[^\u0000]*$"
NAME_PATTERN = rf"^[^\u0000]*[^\u0000{_SPACE}][^\u0000]*$"
_NAME_RE = re.compile(NAME_PATTERN, re.DOTALL)


def _storable(value: str) -> str:
    """PostgreSQL text holds any Unicode except NUL; lone surrogates are not Unicode."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


def _not_blank(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError("must not be blank")
    return value


def _json_number(value: Any) -> Decimal:
    """A price is a JSON number: parsed as Decimal, or an integer; not a bool or a string."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise ValueError("must be a number")
    return _bounded(Decimal(value))


def _bounded(value: Decimal | None) -> Decimal | None:
    """A decimal PostgreSQL can take: few digits, a small exponent.

    ``0e-16384`` is zero and ``1.000…`` (16,384 zeros) is one, but numeric
    refuses both (its scale stops at 16,383), so they are refused here, as
    bad input, before any SQL.
    """
    if value is None or not value.is_finite():
        return value
    digits, exponent = len(value.as_tuple().digits), value.as_tuple().exponent
    if digits > MAX_DIGITS or not -MAX_DIGITS <= exponent <= MAX_DIGITS:
        raise ValueError(f"must be written with at most {MAX_DIGITS} digits and a small exponent")
    return value


Name = Annotated[
    str,
    Field(min_length=1, max_length=200, json_schema_extra={"pattern": NAME_PATTERN}),
    AfterValidator(_storable),
    AfterValidator(_not_blank),
]
Description = Annotated[
    str,
    Field(max_length=2000, json_schema_extra={"pattern": TEXT_PATTERN}),
    AfterValidator(_storable),
]
# Request bodies are parsed with JSON numbers as Decimal (never a binary
# float), so a price arrives exact; a price written as a string is refused.
Price = Annotated[
    Decimal,
    BeforeValidator(_json_number),
    Field(ge=0, lt=MAX_PRICE, decimal_places=2),
    WithJsonSchema(
        {
            "type": "number",
            "minimum": 0,
            "exclusiveMaximum": int(MAX_PRICE),
            "multipleOf": 0.01,
            "description": "At most 2 decimal places; returned exactly as stored.",
        }
    ),
]
def _json_integer(value: Any) -> Any:
    """A quantity parsed as Decimal, as an int: range first, so 1e999999999 costs nothing.

    JSON has one number type: 3, 3.0 and 3e0 are all the integer 3, as JSON
    Schema agrees. Anything that is not a number is left to the int check.
    """
    if not isinstance(value, Decimal):
        return value
    if not value.is_finite() or not 0 <= value <= MAX_QUANTITY:
        raise ValueError(f"must be an integer from 0 to {MAX_QUANTITY}")
    if value != value.to_integral_value():
        raise ValueError("must be an integer")
    return int(value)


Quantity = Annotated[int, Field(ge=0, le=MAX_QUANTITY), BeforeValidator(_json_integer)]


def _no_defaults(schema: dict[str, Any]) -> None:
    # In a merge patch an absent field means "leave it"; there is no default.
    for prop in schema.get("properties", {}).values():
        prop.pop("default", None)


class ItemIn(BaseModel):
    """The writable fields of an item, for POST and PUT (full replacement)."""

    model_config = ConfigDict(extra="forbid", strict=True, title="ItemIn")

    name: Name
    description: Description | None = None
    price: Price
    quantity: Quantity = 0


class ItemPatch(BaseModel):
    """A JSON Merge Patch (RFC 7396): only the fields present change.

    ``description: null`` clears the description; ``null`` for any other
    field is refused, since those fields cannot be empty.
    """

    model_config = ConfigDict(
        extra="forbid", strict=True, title="ItemPatch", json_schema_extra=_no_defaults
    )

    name: Name = None  # type: ignore[assignment]  # absent, never null
    description: Description | None = None
    price: Price = None  # type: ignore[assignment]
    quantity: Quantity = None  # type: ignore[assignment]


class Item(BaseModel):
    """An item as the API returns it."""

    model_config = ConfigDict(title="Item")

    id: Annotated[int, Field(ge=1, le=MAX_ID, json_schema_extra={"readOnly": True})]
    name: Name
    description: Description | None
    price: Price
    quantity: Quantity
    created_at: Annotated[datetime, Field(json_schema_extra={"readOnly": True})]
    updated_at: Annotated[datetime, Field(json_schema_extra={"readOnly": True})]
    version: Annotated[int, Field(ge=1, json_schema_extra={"readOnly": True})]


class ItemPage(BaseModel):
    """One page of items, and the cursor of the next page (null on the last)."""

    model_config = ConfigDict(title="ItemPage")

    items: list[Item]
    next_cursor: str | None


class ListQuery(BaseModel):
    """The query parameters of ``GET /items``; any other parameter is a 400."""

    model_config = ConfigDict(extra="forbid", title="ListQuery")

    limit: Annotated[int, Field(ge=1, le=100, description="Page size.")] = 20
    cursor: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=2048,
            description="The `next_cursor` of the previous page, with the same sort and filters.",
        ),
    ] = None
    sort: Annotated[
        str,
        Field(
            pattern=rf"^-?({'|'.join(SORT_FIELDS)})(,-?({'|'.join(SORT_FIELDS)}))*$",
            description=(
                "Comma-separated fields, each optionally prefixed by `-` for descending;"
                " ties are broken by `id`."
            ),
        ),
    ] = "id"
    name_contains: Annotated[
        str | None,
        Field(min_length=1, max_length=200, description="Case-insensitive substring of the name."),
        AfterValidator(lambda v: v if v is None else _storable(v)),
        WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 200, "pattern": TEXT_PATTERN}),
    ] = None
    min_price: Annotated[
        Decimal | None,
        Field(ge=0, lt=MAX_PRICE),
        AfterValidator(_bounded),
        WithJsonSchema({"type": "number", "minimum": 0, "exclusiveMaximum": int(MAX_PRICE)}),
    ] = None
    max_price: Annotated[
        Decimal | None,
        Field(ge=0, lt=MAX_PRICE),
        AfterValidator(_bounded),
        WithJsonSchema({"type": "number", "minimum": 0, "exclusiveMaximum": int(MAX_PRICE)}),
    ] = None
    min_quantity: Annotated[int | None, Field(ge=0, le=MAX_QUANTITY)] = None
    max_quantity: Annotated[int | None, Field(ge=0, le=MAX_QUANTITY)] = None

    def sort_keys(self) -> tuple[tuple[str, bool], ...]:
        """(field, descending) pairs, first mention wins, ending with ``id``."""
        keys: dict[str, bool] = {}
        for part in self.sort.split(","):
            field = part.lstrip("-")
            keys.setdefault(field, part.startswith("-"))
            if field == "id":
                break  # id is unique: nothing after it can change the order
        keys.setdefault("id", False)
        return tuple(keys.items())

    def filters(self) -> dict[str, Any]:
        """The filters in use (everything but paging and order)."""
        return self.model_dump(exclude={"limit", "cursor", "sort"}, exclude_none=True)


class FieldError(BaseModel):
    field: str
    message: str


# The body of every error (the exception `errors.Problem` becomes one),
# published under its title, "Problem". (The docstring is the schema's description.)
class ProblemDocument(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(title="Problem")

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = Field(
        default=None,
        description="Validation errors: the offending fields or parameters (the first 50).",
    )
    errors_omitted: int | None = Field(
        default=None, ge=1, description="How many more errors there were than `errors` lists."
    )


class Health(BaseModel):
    model_config = ConfigDict(title="Health")

    status: Literal["ok", "error"]
    checks: dict[Literal["app", "database"], Literal["ok", "error"]]
