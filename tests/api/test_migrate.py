"""`python -m app migrate`: ordered, recorded, idempotent, safe to run concurrently."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from support import ROOT, Database, run_cli
from pgcluster import Cluster, new_cluster

from app.migrate import available


@pytest.fixture
def fresh(tmp_path) -> Iterator[tuple[Cluster, dict[str, str]]]:
    """An empty database that no init script or migration has touched."""
    cluster = new_cluster()
    try:
        yield cluster, Database(cluster.url, cluster.password, cluster).env(tmp_path)
    finally:
        cluster.destroy()


# The versions of the files in app/migrations, in order.
EVERY_VERSION = [m.version for m in available()]


def applied(cluster: Cluster) -> list[str]:
    return cluster.psql("SELECT version FROM app.schema_migrations ORDER BY version").split()


def test_migrate_creates_the_schema_on_an_untouched_database(fresh):
    cluster, env = fresh
    result = run_cli("migrate", env=env)
    assert result.returncode == 0, result.stderr
    assert applied(cluster) == EVERY_VERSION
    assert EVERY_VERSION[:2] == ["0001", "0002"]
    for table in ("items", "cursor_key", "api_keys"):
        assert cluster.psql(f"SELECT to_regclass('app.{table}') IS NOT NULL").strip() == "t", table


def test_migrate_twice_applies_nothing_the_second_time(fresh):
    cluster, env = fresh
    assert run_cli("migrate", env=env).returncode == 0
    second = run_cli("migrate", env=env)
    assert second.returncode == 0
    assert '"applied": 0' in second.stdout
    assert applied(cluster) == EVERY_VERSION


def test_concurrent_migrations_take_turns_under_the_advisory_lock(fresh):
    cluster, env = fresh
    processes = [
        subprocess.Popen([sys.executable, "-m", "app", "migrate"], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    results = [(p.wait(60), p.stdout.read(), p.stderr.read()) for p in processes]
    assert [code for code, _, _ in results] == [0, 0, 0, 0], results
    assert sum('"migration.applied"' in out for _, out, _ in results) == 1
    assert applied(cluster) == EVERY_VERSION


def test_an_edited_migration_is_reported_not_ignored(fresh):
    cluster, env = fresh
    assert run_cli("migrate", env=env).returncode == 0
    cluster.psql("UPDATE app.schema_migrations SET checksum = 'edited' WHERE version = '0001'")
    result = run_cli("migrate", env=env)
    assert result.returncode == 1
    assert "0001_items.sql was changed after it was applied" in result.stderr


def test_the_app_refuses_to_start_on_an_unmigrated_database(fresh):
    _, env = fresh
    result = run_cli("serve", env={**env, "PORT": "1"})
    assert result.returncode != 0
    assert "python -m app migrate" in result.stdout + result.stderr
