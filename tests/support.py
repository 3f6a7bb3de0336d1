"""Helpers the tests share: the database, the server under test, an HTTP session.

Kept out of the conftests so that test modules and the conftests alike import them by name
(``from support import ...``): pytest imports every conftest.py under that one name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
import requests

from pgcluster import Cluster, new_cluster
from tools.docker_cli import free_port

ROOT = Path(__file__).resolve().parent.parent
Reading = TypeVar("Reading")

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
    cluster = new_cluster()
    return Database(cluster.url, cluster.password, cluster)


def run_cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def bare_env(**overrides: str) -> dict[str, str]:
    """This process's environment without any of the app's settings, then `overrides`."""
    env = {k: v for k, v in os.environ.items() if k not in (
        "DATABASE_URL", "DATABASE_PASSWORD_FILE", "DB_POOL_MIN", "DB_POOL_MAX", "DB_POOL_TIMEOUT",
        "LOG_LEVEL", "MAX_BODY_BYTES", "PORT", "HOST", "WORKERS", "BLOCKING_THREADS", "WATCHDOG_TIMEOUT",
        "PROXY_HOPS", "API_AUTH", "API_DOCS", "RELOAD")}
    env.update(overrides)
    return env


class Server:
    """``python -m app serve`` in a subprocess, its log kept in a file."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Its own metrics port too: several servers (and test runs) share this host.
        self.metrics_url = f"http://127.0.0.1:{free_port()}/metrics"
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app", "serve"],
            cwd=ROOT,
            env={**env, "PORT": str(self.port), "HOST": "127.0.0.1",
                 "METRICS_PORT": str(urlsplit(self.metrics_url).port)},
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
            except (requests.ConnectionError, requests.Timeout):
                pass  # not listening yet, or still starting its worker
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


@contextmanager
def own_stack(tmp: Path, **settings: str) -> Iterator[tuple[Cluster, Server, Api]]:
    """A cluster and a server of the caller's own (`settings`: the server's environment), and a
    client with a write key; for tests that stop, kill or reconfigure the database."""
    if os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("needs a cluster of its own (TEST_DATABASE_URL is set)")
    cluster = new_cluster()
    db = Database(cluster.url, cluster.password, cluster)
    env = {**db.env(tmp), **settings}
    server = None
    try:
        assert run_cli("migrate", env=env).returncode == 0
        key = run_cli("keys", "create", "--name", "own", "--scope", "write", env=env).stdout.strip()
        server = Server(env, tmp / "server.log")
        with Api(server.url, key) as client:
            yield cluster, server, client
    finally:
        if server is not None:
            server.stop()
        cluster.destroy()


class RemoteServer:
    """An API that is already running elsewhere (TEST_API_URL), such as the container stack."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.port = urlsplit(self.url).port or 80

    def log_lines(self) -> list[str]:
        pytest.skip("the log of a server given by TEST_API_URL is not readable from here")


class Api(requests.Session):
    """A requests session whose paths are relative to the server, sending `key` (an API key)
    on every request when one is given."""

    def __init__(self, base: str, key: str | None = None):
        super().__init__()
        self.base = base
        if key:
            self.headers["Authorization"] = f"Bearer {key}"

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


def table_snapshot(db: Database) -> str:
    """Row count and a digest of every row of app.items (and the cursor key), read as superuser."""
    assert db.cluster is not None
    return db.cluster.psql(
        "SELECT count(*) || ' ' || coalesce(md5(string_agg("
        "concat_ws('|', id, name, description, price, quantity, version, created_at, updated_at),"
        " ',' ORDER BY id)), '') FROM app.items;"
        " SELECT count(*) FROM app.cursor_key;"
    )


def json_records(lines: Iterable[str]) -> list[dict]:
    """The JSON objects among log lines, parsed, in order; any other line (a traceback, a
    plain-text line of a tool) is skipped. Tests that every line is JSON check that themselves."""
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def poll(read: Callable[[], Reading], done: Callable[[Reading], bool], timeout: float,
         interval: float) -> Reading:
    """`read()` every `interval` s until `done` holds for what it read, or `timeout` s have passed;
    the last reading either way. For what arrives late (buffered logs, metrics folded once a
    second): no fixed sleep to guess long enough, and after the timeout the caller's own
    assertions say what is missing, which says more than "timed out"."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value) or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    """The predicate's first truthy value, asked every `interval` s; AssertionError after `timeout` s."""
    value = poll(predicate, bool, timeout, interval)
    if not value:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")
    return value


def unavailable(reason: str) -> None:
    """Skip, or fail under CI=true: CI must run the tests that need an engine."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def children(pid: int) -> list[int]:
    """The child processes of `pid`, from /proc (on the engine's host, for a container's)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def granian_workers(main_pid: int) -> list[int]:
    """The worker processes of the server whose container or process has main pid `main_pid`.

    Under tini (`init: true`) the main pid is tini, whose one child is Granian's main process;
    otherwise it is Granian's main process itself. The workers are that process's children.
    """
    serving = main_pid
    if b"serve" not in Path(f"/proc/{main_pid}/cmdline").read_bytes():
        (serving,) = children(main_pid)
    # Spawned workers come with multiprocessing's resource tracker: not a worker.
    workers = [p for p in children(serving) if b"resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert workers, f"no Granian worker under pid {main_pid}"
    return workers


# What HTTP itself puts in an answer; an OpenAPI document describes the other headers.
# HTTP's own headers, and the one the TLS terminator adds (the edge, on HTTPS only): the
# document describes the API, not the connection.
_FRAMING_HEADERS = {"content-type", "content-length", "date", "server", "connection", "transfer-encoding",
                    "keep-alive", "strict-transport-security"}


def undocumented(document: dict[str, Any], method: str, path: str, response: requests.Response) -> list[str]:
    """What in an answer of the server the OpenAPI document does not say, for the operation
    `method` on the path template `path`: its status, its media type (or a body where the
    document gives none)."""
    operation = document["paths"][path][method.lower()]
    where = f"{method} {path} -> {response.status_code}"
    documented = operation["responses"].get(str(response.status_code))
    if documented is None:
        return [f"{where}: status not documented (documented: {sorted(operation['responses'])})"]
    found = []
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
    content = documented.get("content", {})
    if content and media_type not in content:
        found.append(f"{where}: {media_type or 'no'} content, documented {sorted(content)}")
    if not content and response.content:
        found.append(f"{where}: a body ({media_type}), documented none")
    return found


def undocumented_headers(document: dict[str, Any], method: str, path: str, response: requests.Response) -> list[str]:
    """The headers of an answer (HTTP's own aside) that the document does not list for its
    status, and those it marks required that the answer lacks."""
    where = f"{method} {path} -> {response.status_code}"
    documented = document["paths"][path][method.lower()]["responses"].get(str(response.status_code), {})
    headers = {name.lower(): spec for name, spec in documented.get("headers", {}).items()}
    found = [f"{where}: header {name} not documented" for name in response.headers
             if name.lower() not in headers and name.lower() not in _FRAMING_HEADERS]
    return found + [f"{where}: no {name} header, documented as required" for name, spec in headers.items()
                    if _resolve(document, spec).get("required") and name not in response.headers]


def _resolve(document: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI object, or the one its local $ref (#/components/...) names."""
    if "$ref" not in obj:
        return obj
    target: Any = document
    for part in obj["$ref"].removeprefix("#/").split("/"):
        target = target[part]
    return target
