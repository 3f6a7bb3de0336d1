"""Peer 1: the items endpoints written the usual Flask way.

Flask + Flask-SQLAlchemy (ORM, its default session and pool) + psycopg2, served
by Gunicorn sync workers, as the flask-on-docker and cookiecutter-flask
templates do. It reads and writes the table that the product's migration
creates (`items`, in the `app` role's schema) and answers with the same JSON
for the operations the benchmark drives.
"""

import os
from datetime import UTC, datetime

from flask import Flask, abort, jsonify, request, url_for
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import text

db = SQLAlchemy()

WRITABLE = ("name", "description", "price", "quantity")


class Item(db.Model):
    __tablename__ = "items"

    id = db.Column(db.BigInteger, primary_key=True)
    name = db.Column(db.Text, nullable=False, unique=True)
    description = db.Column(db.Text)
    price = db.Column(db.Numeric(12, 2), nullable=False)
    quantity = db.Column(db.Integer, nullable=False, default=0)
    created_at = db.Column(db.DateTime(timezone=True), nullable=False, server_default=db.func.now())
    updated_at = db.Column(db.DateTime(timezone=True), nullable=False, server_default=db.func.now())
    version = db.Column(db.Integer, nullable=False, default=1)

    def to_dict(self):
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "price": float(self.price),
            "quantity": self.quantity,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "version": self.version,
        }


def item_response(item, status=200, **headers):
    response = jsonify(item.to_dict())
    response.status_code = status
    response.headers["ETag"] = f'"{item.version}"'
    response.headers.update(headers)
    return response


def valid(data, partial=False):
    """Just enough checking to refuse what the table would refuse anyway."""
    if not isinstance(data, dict) or set(data) - set(WRITABLE):
        return False
    if not partial and ("name" not in data or "price" not in data):
        return False
    checks = {
        "name": lambda v: isinstance(v, str) and 0 < len(v) <= 200,
        "description": lambda v: v is None or (isinstance(v, str) and len(v) <= 2000),
        "price": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1e10,
        "quantity": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
    }
    return all(checks[k](v) for k, v in data.items())


def create_app():
    app = Flask(__name__)
    # postgresql+psycopg2://user:password@host:port/db
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
    db.init_app(app)

    @app.get("/health/ready")
    def ready():
        db.session.execute(text("SELECT 1"))
        return {"status": "ok", "checks": {"app": "ok", "database": "ok"}}

    @app.get("/items/<int:item_id>")
    def get_item(item_id):
        return item_response(db.get_or_404(Item, item_id))

    @app.get("/items")
    def list_items():
        limit = request.args.get("limit", 20, type=int)
        if not 1 <= limit <= 100:
            abort(400)
        query = db.select(Item).order_by(Item.id).limit(limit + 1)
        cursor = request.args.get("cursor", type=int)
        if cursor is not None:
            query = query.where(Item.id > cursor)
        items = db.session.execute(query).scalars().all()
        more = len(items) > limit
        items = items[:limit]
        return jsonify(
            items=[item.to_dict() for item in items],
            next_cursor=str(items[-1].id) if more else None,
        )

    @app.post("/items")
    def create_item():
        data = request.get_json()
        if not valid(data):
            abort(422)
        item = Item(**data)
        db.session.add(item)
        db.session.commit()
        return item_response(item, 201, Location=url_for("get_item", item_id=item.id))

    @app.patch("/items/<int:item_id>")
    def update_item(item_id):
        item = db.get_or_404(Item, item_id)
        data = request.get_json()
        if not valid(data, partial=True):
            abort(422)
        if data:
            for key, value in data.items():
                setattr(item, key, value)
            item.version += 1
            item.updated_at = datetime.now(UTC)
            db.session.commit()
        return item_response(item)

    return app


app = create_app()
