"""The items endpoints, in the style of the template's api/routes/items.py."""

from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Query, Response
from sqlmodel import select

from .core_db import SessionDep
from .models import Item, ItemCreate, ItemPublic, ItemsPublic, ItemUpdate

router = APIRouter(prefix="/items", tags=["items"])


@router.get("", response_model=ItemsPublic)
def read_items(
    session: SessionDep, limit: int = Query(default=20, ge=1, le=100), cursor: int | None = None
):
    statement = select(Item).order_by(Item.id).limit(limit + 1)
    if cursor is not None:
        statement = statement.where(Item.id > cursor)
    items = session.exec(statement).all()
    more = len(items) > limit
    items = items[:limit]
    return ItemsPublic(items=items, next_cursor=str(items[-1].id) if more else None)


@router.get("/{id}", response_model=ItemPublic)
def read_item(session: SessionDep, id: int, response: Response):
    item = session.get(Item, id)
    if not item:
        raise HTTPException(status_code=404, detail="Item not found")
    response.headers["ETag"] = f'"{item.version}"'
    return item


@router.post("", response_model=ItemPublic, status_code=201)
def create_item(session: SessionDep, item_in: ItemCreate, response: Response):
    item = Item.model_validate(item_in)
    session.add(item)
    session.commit()
    session.refresh(item)
    response.headers["Location"] = f"/items/{item.id}"
    response.headers["ETag"] = f'"{item.version}"'
    return item


@router.patch("/{id}", response_model=ItemPublic)
def update_item(session: SessionDep, id: int, item_in: ItemUpdate, response: Response):
    item = session.get(Item, id)
    if not item:
        raise HTTPException(status_code=404, detail="Item not found")
    update_dict = item_in.model_dump(exclude_unset=True)
    if update_dict:
        item.sqlmodel_update(update_dict)
        item.version += 1
        item.updated_at = datetime.now(UTC)
        session.add(item)
        session.commit()
        session.refresh(item)
    response.headers["ETag"] = f'"{item.version}"'
    return item
