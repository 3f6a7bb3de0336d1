"""SQLModel models: a base, create/update/public variants and the table model."""

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import PlainSerializer
from sqlalchemy import BigInteger, Column, DateTime, Numeric, func
from sqlmodel import Field, SQLModel

# The contract returns a price as a JSON number; pydantic writes Decimal as a string.
JsonPrice = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]


class ItemBase(SQLModel):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    price: Decimal = Field(ge=0, lt=10_000_000_000, max_digits=12, decimal_places=2)
    quantity: int = Field(default=0, ge=0, le=2_147_483_647)


class ItemCreate(ItemBase):
    pass


class ItemUpdate(SQLModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    price: Decimal | None = Field(default=None, ge=0, lt=10_000_000_000, max_digits=12, decimal_places=2)
    quantity: int | None = Field(default=None, ge=0, le=2_147_483_647)


class Item(ItemBase, table=True):
    __tablename__ = "items"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInteger)
    name: str = Field(max_length=200, unique=True)
    price: Decimal = Field(sa_column=Column(Numeric(12, 2), nullable=False))
    created_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now())
    )
    updated_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now())
    )
    version: int = Field(default=1)


class ItemPublic(ItemBase):
    id: int
    price: JsonPrice
    created_at: datetime
    updated_at: datetime
    version: int


class ItemsPublic(SQLModel):
    items: list[ItemPublic]
    next_cursor: str | None
