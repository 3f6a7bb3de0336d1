"""Versioned SQL migrations, applied in order under an advisory lock.

Each file in ``app/migrations`` named ``NNNN_description.sql`` is applied once,
in its own transaction together with its row in ``schema_migrations``. A
session-level advisory lock makes replicas that start together take turns:
the first applies what is missing, the others then find nothing to do. The
checksum of every applied file is kept, so an edited migration is reported
instead of silently diverging from the database.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from .config import Config
from .db import connection_kwargs

log = logging.getLogger("app.migrate")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Any constant shared by all replicas; this one spells "items" in hex.
ADVISORY_LOCK_ID = 0x6974656D73


class MigrationError(Exception):
    """The database and the migration files disagree."""


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def available() -> list[Migration]:
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        match = FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file name not understood: {path.name}")
        found.append(Migration(match.group(1), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return found


def migrate(config: Config) -> list[str]:
    """Apply the missing migrations; return the versions applied."""
    migrations = available()
    applied_now = []
    with psycopg.connect(config.conninfo, **connection_kwargs(config)) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_ID,))
        try:
            conn.execute(
                """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version    text PRIMARY KEY,
                    checksum   text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """
            )
            done = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
            for migration in migrations:
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.path.name} was changed after it was applied"
                        )
                    continue
                with conn.transaction():
                    conn.execute(migration.sql)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, checksum) VALUES (%s, %s)",
                        (migration.version, migration.checksum),
                    )
                log.info(
                    "migration applied",
                    extra={"event": "migration.applied", "migration": migration.path.name},
                )
                applied_now.append(migration.version)
            unknown = sorted(set(done) - {m.version for m in migrations})
            if unknown:
                raise MigrationError(
                    f"the database has migrations this code does not know: {', '.join(unknown)}"
                )
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_ID,))
    log.info(
        "database is up to date",
        extra={"event": "migration.done", "applied": len(applied_now), "known": len(migrations)},
    )
    return applied_now
