"""Database outages: fast 503s while PostgreSQL is away, recovery without a restart.

Each test gets its own cluster and server, since it stops the database.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import support
from pgcluster import Cluster
from support import Api, Server, undocumented

# The server's pool timeout in these tests; a 503 must come within it (plus slack).
POOL_TIMEOUT = 2.0


@pytest.fixture
def own_stack(tmp_path) -> Iterator[tuple[Cluster, Server, Api]]:
    """A cluster and a server of the test's own, and a client with a write key."""
    with support.own_stack(tmp_path, DB_POOL_TIMEOUT=str(POOL_TIMEOUT)) as stack:
        yield stack


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
    deadline = time.monotonic() + 20
    while True:  # a crashed cluster may need a moment before it can start again
        try:
            cluster.start()
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)

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
