"""The API suite's fixtures: a real PostgreSQL and the real server, over real HTTP.

The session starts a throwaway cluster (unless TEST_DATABASE_URL names one),
migrates it with ``python -m app migrate``, and serves the app with
``python -m app serve`` (Granian) on a free port; or, when TEST_API_URL is
set, uses the API running there (the container suites run these tests against
their stack that way). Tests talk to it with `requests`, as any client would,
with a `write` API key: made with ``python -m app keys create`` for the local
server, or given as TEST_API_KEY with TEST_API_URL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support import Api, Database, RemoteServer, Server, run_cli, start_database, table_snapshot


@pytest.fixture(scope="session")
def database() -> Iterator[Database]:
    db = start_database()
    yield db
    if db.cluster:
        db.cluster.destroy()


@pytest.fixture(scope="session")
def migrated(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Database:
    result = run_cli("migrate", env=database.env(tmp_path_factory.mktemp("migrate")))
    assert result.returncode == 0, result.stderr
    return database


@pytest.fixture(scope="session")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The server under test: ``python -m app serve``, or the one TEST_API_URL names."""
    if os.environ.get("TEST_API_URL"):
        yield RemoteServer(os.environ["TEST_API_URL"])  # type: ignore[misc]
        return
    migrated = request.getfixturevalue("migrated")
    tmp = tmp_path_factory.mktemp("server")
    srv = Server(migrated.env(tmp), tmp / "server.log")
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def api_key(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A `write` key for the server under test, made the way an operator makes one."""
    key = _server_key(request, tmp_path_factory, "write", "TEST_API_KEY")
    if key is None:
        pytest.fail("TEST_API_URL is set without TEST_API_KEY (a write key of that server)")
    return key


@pytest.fixture(scope="session")
def read_key(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A `read` key for the server under test (TEST_API_READ_KEY with TEST_API_URL)."""
    key = _server_key(request, tmp_path_factory, "read", "TEST_API_READ_KEY")
    if key is None:
        pytest.skip("TEST_API_URL is set without TEST_API_READ_KEY")
    return key


def _server_key(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, scope: str,
                variable: str) -> str | None:
    """A new key of `scope` for the local server; for a TEST_API_URL one, `variable`'s (or None)."""
    if os.environ.get("TEST_API_URL"):
        return os.environ.get(variable) or None
    return create_key(request.getfixturevalue("migrated"), tmp_path_factory.mktemp(scope), scope)


def create_key(database: Database, tmp: Path, scope: str, *extra: str) -> str:
    """A new key of `scope` (a unique name), from ``python -m app keys create``'s stdout."""
    name = f"tests-{scope}-{uuid.uuid4().hex[:8]}"
    result = run_cli("keys", "create", "--name", name, "--scope", scope, *extra, env=database.env(tmp))
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def api(server: Server, api_key: str) -> Iterator[Api]:
    with Api(server.url, api_key) as session:
        yield session


@pytest.fixture
def unique() -> str:
    """A fresh word to put in names, so a test can filter down to its own items."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
def table_digest(request: pytest.FixtureRequest) -> Callable[[], str]:
    """A digest of the items table of the database the server under test writes to.

    Locally, the throwaway cluster's. A server named by TEST_API_URL writes to a database of its
    own, which only whoever points the tests at it can reach: a plugin of theirs provides the
    `served_table_digest` fixture (tests/reliability/reliability_plugin.py: psql in the
    container). Without one, the tests that compare the table skip rather than compare a
    database the requests never reach.
    """
    if os.environ.get("TEST_API_URL"):
        try:
            return request.getfixturevalue("served_table_digest")
        except pytest.FixtureLookupError:
            pytest.skip("TEST_API_URL is set and no plugin provides a digest of that server's table")
    migrated: Database = request.getfixturevalue("migrated")
    if migrated.cluster is None:
        pytest.skip("needs the throwaway cluster to inspect the table")
    return lambda: table_snapshot(migrated)


@pytest.fixture
def unchanged(table_digest: Callable[[], str]) -> Iterator[None]:
    """Asserts, after the test, that the items table is exactly as before it."""
    before = table_digest()
    yield
    assert table_digest() == before, "a rejected request changed the items table"
