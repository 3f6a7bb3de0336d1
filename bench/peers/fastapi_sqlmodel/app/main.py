"""Peer 2: FastAPI + SQLModel, served by `fastapi run --workers 4` (Uvicorn workers),
as the FastAPI full-stack template does. Same table, same JSON as the product."""

from fastapi import FastAPI
from sqlmodel import text

from .core_db import SessionDep
from .routes import router

app = FastAPI(title="items peer (FastAPI + SQLModel)")
app.include_router(router)


@app.get("/health/ready")
def ready(session: SessionDep):
    session.exec(text("SELECT 1"))
    return {"status": "ok", "checks": {"app": "ok", "database": "ok"}}
