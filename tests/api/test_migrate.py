"""`python -m app migrate`: ordered, recorded, idempotent, safe to run concurrently."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from support import ROOT, Database, run_cli
from pgcluster import APP_ROLE, Cluster, new_cluster

from app.migrate import available


@dataclass(frozen=True)
class Fresh:
    """An empty database in the module's cluster, and the environment that points the app at it."""

    cluster: Cluster
    name: str
    env: dict[str, str]

    def psql(self, script: str) -> str:
        return self.cluster.psql(script, database=self.name)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """One throwaway cluster for the module: each test gets a database of its own in it (a
    container cluster costs seconds to start, a database a fraction of one)."""
    cluster = new_cluster()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def fresh(cluster: Cluster, tmp_path) -> Fresh:
    """A database that no migration has touched, laid out as the stack's init script lays out
    its own: the application role owns its schema there (the role is the cluster's)."""
    name = f"fresh_{uuid.uuid4().hex[:12]}"
    cluster.psql(f"CREATE DATABASE {name};", database="postgres")
    cluster.psql(f"CREATE SCHEMA {APP_ROLE} AUTHORIZATION {APP_ROLE};", database=name)
    url = cluster.url.rsplit("/", 1)[0] + "/" + name
    return Fresh(cluster, name, Database(url, cluster.password, cluster).env(tmp_path))


# The versions of the files in app/migrations, in order.
EVERY_VERSION = [m.version for m in available()]


def applied(db: Fresh) -> list[str]:
    return db.psql("SELECT version FROM app.schema_migrations ORDER BY version").split()


def test_migrate_creates_the_schema_on_an_untouched_database(fresh):
    result = run_cli("migrate", env=fresh.env)
    assert result.returncode == 0, result.stderr
    assert applied(fresh) == EVERY_VERSION
    assert EVERY_VERSION[:2] == ["0001", "0002"]
    for table in ("items", "cursor_key", "api_keys"):
        assert fresh.psql(f"SELECT to_regclass('app.{table}') IS NOT NULL").strip() == "t", table


def test_migrate_twice_applies_nothing_the_second_time(fresh):
    assert run_cli("migrate", env=fresh.env).returncode == 0
    second = run_cli("migrate", env=fresh.env)
    assert second.returncode == 0
    assert '"applied": 0' in second.stdout
    assert applied(fresh) == EVERY_VERSION


def test_concurrent_migrations_take_turns_under_the_advisory_lock(fresh):
    processes = [
        subprocess.Popen([sys.executable, "-m", "app", "migrate"], cwd=ROOT, env=fresh.env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    results = [(p.wait(60), p.stdout.read(), p.stderr.read()) for p in processes]
    assert [code for code, _, _ in results] == [0, 0, 0, 0], results
    assert sum('"migration.applied"' in out for _, out, _ in results) == 1
    assert applied(fresh) == EVERY_VERSION


def test_an_edited_migration_is_reported_not_ignored(fresh):
    assert run_cli("migrate", env=fresh.env).returncode == 0
    fresh.psql("UPDATE app.schema_migrations SET checksum = 'edited' WHERE version = '0001'")
    result = run_cli("migrate", env=fresh.env)
    assert result.returncode == 1
    assert "0001_items.sql was changed after it was applied" in result.stderr


def test_the_app_refuses_to_start_on_an_unmigrated_database(fresh):
    result = run_cli("serve", env={**fresh.env, "PORT": "1"})
    assert result.returncode != 0
    assert "python -m app migrate" in result.stdout + result.stderr
