"""Shared fixtures: a real PostgreSQL and the real server, over real HTTP.

The session starts a throwaway cluster (unless TEST_DATABASE_URL names one),
migrates it with ``python -m app migrate``, and serves the app with
``python -m app serve`` (Granian) on a free port; or, when TEST_API_URL is
set, uses the API running there (the container stack's e2e tests do that).
Tests talk to it with `requests`, as any client would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from pgcluster import Cluster, free_port

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests under tests/e2e are container tests; they carry the e2e marker."""
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


class Database:
    """Where the tests' database is, and how to reach it as the app does."""

    def __init__(self, url: str, password: str | None, cluster: Cluster | None):
        self.url = url
        self.password = password
        self.cluster = cluster

    def env(self, tmp: Path) -> dict[str, str]:
        env = {**os.environ, "DATABASE_URL": self.url, "LOG_LEVEL": "INFO"}
        env.pop("DATABASE_PASSWORD_FILE", None)
        if self.password is not None:
            secret = tmp / f"db-password-{uuid.uuid4().hex}"
            secret.write_text(self.password + "\n")
            env["DATABASE_PASSWORD_FILE"] = str(secret)
        return env


def start_database() -> Database:
    if os.environ.get("TEST_DATABASE_URL"):
        return Database(os.environ["TEST_DATABASE_URL"], None, None)
    cluster = Cluster()
    return Database(cluster.url, cluster.password, cluster)


@pytest.fixture(scope="session")
def database() -> Iterator[Database]:
    db = start_database()
    yield db
    if db.cluster:
        db.cluster.destroy()


def run_cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Server:
    """``python -m app serve`` in a subprocess, its log kept in a file."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app", "serve"],
            cwd=ROOT,
            env={**env, "PORT": str(self.port), "HOST": "127.0.0.1"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {log_path.read_text()[-2000:]}")
            try:
                if requests.get(self.url + "/health/ready", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not become ready in 30 s")

    def log_lines(self) -> list[str]:
        return self.log_path.read_text().splitlines()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture(scope="session")
def migrated(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Database:
    result = run_cli("migrate", env=database.env(tmp_path_factory.mktemp("migrate")))
    assert result.returncode == 0, result.stderr
    return database


class RemoteServer:
    """An API that is already running elsewhere (TEST_API_URL), such as the container stack."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.port = urlsplit(self.url).port or 80

    def log_lines(self) -> list[str]:
        pytest.skip("the log of a server given by TEST_API_URL is not readable from here")


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


class Api(requests.Session):
    """A requests session whose paths are relative to the server."""

    def __init__(self, base: str):
        super().__init__()
        self.base = base

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs.setdefault("timeout", 30)
        return super().request(method, self.base + url, *args, **kwargs)

    def create(self, **fields: Any) -> dict[str, Any]:
        """POST an item (a unique name unless one is given) and return it."""
        fields.setdefault("name", f"item-{uuid.uuid4().hex}")
        fields.setdefault("price", 1)
        response = self.post("/items", json=fields)
        assert response.status_code == 201, response.text
        return response.json()


@pytest.fixture
def api(server: Server) -> Iterator[Api]:
    with Api(server.url) as session:
        yield session


@pytest.fixture
def unique() -> str:
    """A fresh word to put in names, so a test can filter down to its own items."""
    return uuid.uuid4().hex[:12]
