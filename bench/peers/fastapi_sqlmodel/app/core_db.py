"""The engine and the per-request session, as the FastAPI full-stack template sets them up."""

import os
from collections.abc import Generator
from typing import Annotated

from fastapi import Depends
from sqlmodel import Session, create_engine

# postgresql+psycopg://user:password@host:port/db (psycopg 3, as in the template)
engine = create_engine(os.environ["DATABASE_URL"])


def get_db() -> Generator[Session, None, None]:
    with Session(engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_db)]
