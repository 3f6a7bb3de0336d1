"""Database outages: fast 503s while PostgreSQL is away, recovery without a restart.

The module has a cluster of its own, since each test stops or kills it (and has it running
again afterwards); each test has a server of its own.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from pgcluster import Cluster, new_cluster
from support import Api, Database, Server, run_cli, undocumented

# The server's pool timeout in these tests; a 503 must come within it (plus slack).
POOL_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def outage_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, dict[str, str], str]]:
    """One migrated cluster for the module, to stop and kill, with a write key (a container
    cluster costs seconds to start); each test has it running again before the next."""
    if os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("needs a cluster of its own to stop (TEST_DATABASE_URL is set)")
    cluster = new_cluster()
    try:
        db = Database(cluster.url, cluster.password, cluster)
        env = {**db.env(tmp_path_factory.mktemp("outage")), "DB_POOL_TIMEOUT": str(POOL_TIMEOUT)}
        assert run_cli("migrate", env=env).returncode == 0
        key = run_cli("keys", "create", "--name", "outage", "--scope", "write", env=env).stdout.strip()
        yield cluster, env, key
    finally:
        cluster.destroy()


@pytest.fixture
def own_stack(outage_cluster, tmp_path) -> Iterator[tuple[Cluster, Server, Api]]:
    """The module's cluster, a server of the test's own, and a client with a write key."""
    cluster, env, key = outage_cluster
    server = Server(env, tmp_path / "server.log")
    try:
        with Api(server.url, key) as client:
            yield cluster, server, client
    finally:
        server.stop()
        try:
            cluster.psql("SELECT 1", database="postgres")
        except Exception:  # a test stopped or killed it and failed before starting it again
            start_again(cluster)


def start_again(cluster: Cluster) -> None:
    """Start a stopped or killed cluster; a crashed one may need a moment before it can."""
    deadline = time.monotonic() + 20
    while True:
        try:
            cluster.start()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def wait_for(url: str, status: int, within: float) -> float:
    """Poll until `url` answers `status`; return how long it took."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        try:
            if requests.get(url, timeout=5).status_code == status:
                return time.monotonic() - start
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer {status} within {within} s")


def assert_fast_503s(client: Api) -> None:
    for path in ("/items", "/items/1"):
        start = time.monotonic()
        response = client.get(path, timeout=30)
        elapsed = time.monotonic() - start
        assert response.status_code == 503, response.text
        assert response.headers["Content-Type"] == "application/problem+json"
        assert int(response.headers["Retry-After"]) >= 1
        assert elapsed < POOL_TIMEOUT + 2.5, f"{path} took {elapsed:.1f} s"
    health = client.get("/health", timeout=30)
    assert health.status_code == 503
    assert health.json() == {"status": "error", "checks": {"app": "ok", "database": "error"}}
    assert client.get("/health/live", timeout=5).status_code == 200


def test_stopped_database_gives_fast_503s_then_recovers_without_restart(own_stack):
    cluster, server, client = own_stack
    created = client.post("/items", json={"name": "before", "price": 1}, timeout=5)
    assert created.status_code == 201
    pid = server.process.pid

    cluster.stop()
    assert_fast_503s(client)
    time.sleep(6)  # longer than the pool's reconnect window: recovery must not depend on it
    cluster.start()

    wait_for(server.url + "/health/ready", 200, within=5)
    item = client.get(created.headers["Location"], timeout=5)
    assert item.status_code == 200
    assert client.post("/items", json={"name": "after", "price": 1}, timeout=5).status_code == 201
    assert server.process.poll() is None and server.process.pid == pid


def test_killed_database_gives_fast_503s_then_recovers_without_restart(own_stack):
    cluster, server, client = own_stack
    assert client.get("/items", timeout=5).status_code == 200

    cluster.kill()
    assert_fast_503s(client)
    start_again(cluster)

    wait_for(server.url + "/health/ready", 200, within=5)
    assert client.get("/items", timeout=5).status_code == 200
    assert server.process.poll() is None


def test_more_clients_than_threads_each_get_a_503_within_the_pool_timeout(own_stack):
    # 16 clients, 4 blocking threads: without failing fast, requests queued behind
    # threads that each wait out the pool timeout would be answered several timeouts late.
    cluster, server, client = own_stack
    assert client.get("/items/1", timeout=5).status_code in (200, 404)
    cluster.stop()

    def timed_get(_: int) -> tuple[int, float]:
        start = time.monotonic()
        # Each client on a connection of its own, with the same key.
        status = requests.get(server.url + "/items/1", timeout=60,
                              headers={"Authorization": client.headers["Authorization"]}).status_code
        return status, time.monotonic() - start

    with ThreadPoolExecutor(16) as clients:
        answers = list(clients.map(timed_get, range(64)))
    assert {status for status, _ in answers} == {503}
    slowest = max(seconds for _, seconds in answers)
    assert slowest < POOL_TIMEOUT + 1.5, f"a 503 took {slowest:.1f} s"

    cluster.start()
    wait_for(server.url + "/health/ready", 200, within=5)
    assert client.get("/items/1", timeout=5).status_code in (200, 404)


def test_the_503s_of_a_stopped_database_are_the_documented_ones(own_stack):
    # Every operation that needs the database answers 503 while it is away, as the OpenAPI
    # document says: the status, its media type, and the headers it lists (Retry-After).
    cluster, server, client = own_stack
    document = client.get("/openapi.json", timeout=5).json()
    item = client.post("/items", json={"name": "documented", "price": 1}, timeout=5).json()
    cluster.stop()
    found = []
    for method, url, body in (("GET", "/health", None), ("GET", "/health/ready", None), ("GET", "/items", None),
                              ("POST", "/items", {"name": "away", "price": 1}), ("GET", f"/items/{item['id']}", None),
                              ("PUT", f"/items/{item['id']}", {"name": "away", "price": 1}),
                              ("PATCH", f"/items/{item['id']}", {"price": 2}), ("DELETE", f"/items/{item['id']}", None)):
        response = client.request(method, url, json=body, timeout=30)
        assert response.status_code == 503, (method, url, response.status_code)
        path = "/items/{item_id}" if url.startswith("/items/") else url
        found += undocumented(document, method, path, response)
        promised = document["paths"][path][method.lower()]["responses"]["503"].get("headers", {})
        found += [f"{method} {path} -> 503: no {name} header" for name in promised if name not in response.headers]
    assert not found, "\n".join(found)
