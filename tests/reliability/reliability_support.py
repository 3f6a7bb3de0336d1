"""What the reliability tests share: the stack's containers, psql in the database, results.

Kept out of conftest.py so that the subprocess plugin (`reliability_plugin.py`) can import it
too. Nothing here talks to anything but the Docker engine, 127.0.0.1 and the stack's containers.
"""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from tools.docker_cli import DockerError

ROOT = Path(__file__).resolve().parents[2]
ABUSERS = Path(__file__).resolve().parent / "abusers"
ABUSER_IMAGE = "python:3.14-slim-trixie"
# Every client of this suite but the abusers runs on the test host, and the edge sees them all at
# one address (docker-proxy's): at its per-client defaults, the loads of the fault and load
# scenarios would be refused with 429s as one greedy client's. So the suite's edge lets one
# address do anything (the largest values nginx takes); the scenarios about these limits
# (test_rel_12_edge_abuse.py) put the documented defaults back for their run.
ONE_ADDRESS_FOR_EVERYONE = {"EDGE_READ_RATE": "100000", "EDGE_READ_BURST": "100000", "EDGE_WRITE_RATE": "100000",
                            "EDGE_WRITE_BURST": "100000", "EDGE_CLIENT_CONNECTIONS": "65535"}
ARTIFACTS = Path(os.environ.get("RELIABILITY_ARTIFACTS") or ROOT / "test-artifacts" / "reliability")
RESULTS = Path(os.environ.get("RELIABILITY_RESULTS") or ARTIFACTS / "results.json")
PROBLEM = "application/problem+json"

# A digest of the whole items table: count, then md5 over every column of every row.
TABLE_DIGEST = (
    "SELECT count(*) || ' ' || coalesce(md5(string_agg(concat_ws('|', id, name, description, price,"
    " quantity, version, created_at, updated_at), ',' ORDER BY id)), '') FROM app.items WHERE {where}"
)


class KnownFailure(AssertionError):
    """The one failure a strict-xfail test expects (any other error still fails the test)."""


def known(condition: bool, message: str) -> None:
    if not condition:
        raise KnownFailure(message)


def scale() -> float:
    """RELIABILITY_SCALE multiplies durations and sizes: 1 (the CI sizes) by default, 4 for
    `make reliability`; never below 1."""
    value = float(os.environ.get("RELIABILITY_SCALE") or 1)
    if not 1 <= value <= 100:
        raise ValueError(f"RELIABILITY_SCALE must be between 1 and 100, not {value}")
    return value


def scaled(base: float, minimum: float = 0) -> float:
    return max(base * scale(), minimum)


# --------------------------------------------------------------------------- psql in the container


class PsqlError(RuntimeError):
    pass


class Psql:
    """One long-lived `psql` in the postgres container (through `docker exec -i`).

    A query costs well under a millisecond instead of a `docker exec` each (about 0.3 s), so
    tests can take a table digest around every request. When PostgreSQL or the container goes
    away the session dies; the next query opens a new one (in the container `find_container`
    returns then, which may be a new one after `down`/`up`).
    """

    def __init__(self, docker_binary: str, find_container, user: str = "postgres", database: str = "appdb"):
        self.docker_binary = docker_binary
        self.find_container = find_container
        self.user = user
        self.database = database
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def _open(self) -> subprocess.Popen:
        cid = self.find_container()
        self._proc = subprocess.Popen(
            [self.docker_binary, "exec", "-i", cid, "psql", "-U", self.user, "-d", self.database,
             "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            bufsize=1, encoding="utf-8", errors="replace",
        )
        return self._proc

    def _ask(self, sql: str, timeout: float) -> str:
        proc = self._proc if self._proc and self._proc.poll() is None else self._open()
        marker = f"__end_{uuid.uuid4().hex}__"
        proc.stdin.write(sql.rstrip().rstrip(";") + ";\n\\echo " + marker + "\n")
        proc.stdin.flush()
        lines: list[str] = []
        result: dict[str, Any] = {}

        def read() -> None:
            for line in proc.stdout:
                if line.rstrip("\n") == marker:
                    result["done"] = True
                    return
                lines.append(line.rstrip("\n"))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout)
        if not result.get("done"):
            self.close()
            raise PsqlError(f"psql gave no complete answer in {timeout:.0f} s to: {sql[:200]}")
        return "\n".join(lines)

    def query(self, sql: str, timeout: float = 30) -> str:
        """Run one statement as the superuser; its rows as `psql -tA` prints them."""
        with self._lock:
            for attempt in (1, 2):
                try:
                    out = self._ask(sql, timeout)
                    break
                except (BrokenPipeError, OSError, ValueError, PsqlError):
                    self.close()
                    if attempt == 2:
                        raise
            if "ERROR:" in out or "FATAL:" in out:
                raise PsqlError(out)
            return out.strip()

    def json(self, sql: str, timeout: float = 30) -> Any:
        return json.loads(self.query(sql, timeout) or "null")

    def digest(self, where: str = "true") -> str:
        """Count and md5 of every column of every row of app.items (those `where` selects)."""
        return self.query(TABLE_DIGEST.format(where=where))

    def max_id(self) -> int:
        return int(self.query("SELECT coalesce(max(id), 0) FROM app.items"))

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- response bodies


class BodyScanner:
    """Every response body the suite receives is checked here for the stack's secret values.

    Bodies are scanned as they arrive (no copy kept on disk); hits name the secret, never its
    value. Bodies recorded by subprocesses (the reused hostile corpus, schemathesis) are files,
    scanned with `scan_file`.
    """

    def __init__(self, secrets: dict[str, str]):
        self._needles = {name: value.encode() for name, value in secrets.items()}
        self._lock = threading.Lock()
        self.count = 0
        self.bytes = 0
        self.hits: list[str] = []

    def record(self, body: bytes | str | None, where: str = "a response") -> None:
        if not body:
            return
        data = body if isinstance(body, bytes) else body.encode("utf-8", "replace")
        found = [name for name, value in self._needles.items() if value in data]
        with self._lock:
            self.count += 1
            self.bytes += len(data)
            self.hits.extend(f"{name} in {where}" for name in found)

    def scan_file(self, path: Path, where: str) -> None:
        data = path.read_bytes()
        found = [name for name, value in self._needles.items() if value in data]
        with self._lock:
            self.bytes += len(data)
            self.hits.extend(f"{name} in {where}" for name in found)


def secret_values(stack) -> dict[str, str]:
    """What must never leak, by name: the stack's generated secret values, a line of the edge's
    TLS private key (the second of its PEM body: key material, not the header every key shares),
    and the API keys the suite sends."""
    key = [line for line in (stack.tls_cert.parent / "tls.key").read_text().splitlines()
           if line and not line.startswith("-----")]
    assert stack.api_key and stack.read_key, "the stack has no API keys to look for"
    return {**stack.secrets, "tls_key": key[1], "api_key": stack.api_key, "read_key": stack.read_key}


def bearer(key: str) -> dict[str, str]:
    """The header that carries an API key (every /items request needs one)."""
    return {"Authorization": f"Bearer {key}"}


def bearer_line(key: str) -> str:
    """The same header as a line of a request written byte by byte."""
    return f"Authorization: Bearer {key}\r\n"


# Granian closes a keep-alive connection on which no request has come for its header-read timeout
# (10 s, app/serve.py); a request sent on it just as it closes gets no answer through no fault of
# the server. The recording session never reuses a connection idle for this long.
IDLE_REUSE = 5.0


def recording_session(bodies: BodyScanner, tally: Counter | None = None, base: str = "", key: str = ""):
    """A `requests.Session` whose paths are relative to `base`, with a default timeout, sending
    the API key `key` (if any) on every request; every response is scanned for secrets and
    counted in `tally` (by status, or "timeout"/"connection").

    Every request is sent once: no retries (urllib3 would resend an idempotent request after a
    dropped connection, and neither the tally nor the test would see the first failure). A
    scenario that wants a retry makes it itself, and the failed attempt is counted like any other.
    """
    import requests

    class Session(requests.Session):
        def __init__(self):
            super().__init__()
            self.mount("http://", requests.adapters.HTTPAdapter(max_retries=0))
            self.idle_since = time.monotonic()
            if key:
                self.headers.update(bearer(key))

        def request(self, method, url, *args, **kwargs):  # type: ignore[override]
            kwargs.setdefault("timeout", 10)
            return super().request(method, base + url if url.startswith("/") else url, *args, **kwargs)

        def send(self, request, **kwargs):  # type: ignore[override]
            if time.monotonic() - self.idle_since > IDLE_REUSE:
                for adapter in self.adapters.values():
                    adapter.close()  # the next request opens a fresh connection
            try:
                response = super().send(request, **kwargs)
            except requests.Timeout:
                if tally is not None:
                    tally["timeout"] += 1
                raise
            except requests.ConnectionError:
                if tally is not None:
                    tally["connection"] += 1
                raise
            finally:
                self.idle_since = time.monotonic()
            bodies.record(response.content, f"{request.method} {request.path_url[:60]}")
            if tally is not None:
                tally[response.status_code] += 1
            return response

    return Session()


# --------------------------------------------------------------------------- the stack's containers


def cgroup_memory_file(container_id: str) -> Path | None:
    """Where the host keeps the container's current memory use (cgroup v2 or v1, either driver)."""
    for path in (f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/memory.current",
                 f"/sys/fs/cgroup/docker/{container_id}/memory.current",
                 f"/sys/fs/cgroup/memory/docker/{container_id}/memory.usage_in_bytes",
                 f"/sys/fs/cgroup/memory/system.slice/docker-{container_id}.scope/memory.usage_in_bytes"):
        if Path(path).exists():
            return Path(path)
    return None


def cgroup_anonymous_memory(memory_file: Path) -> int:
    """The container's anonymous memory (its processes' heaps and stacks, no page cache), from the
    memory.stat beside `memory_file`: what an OOM kill is about, since cache is reclaimed first."""
    stat = dict(line.split() for line in (memory_file.parent / "memory.stat").read_text().splitlines())
    return int(stat["anon"] if "anon" in stat else stat["total_rss"])


class StackOps:
    """Docker-level operations on the fixture's stack, by service name."""

    def __init__(self, stack, bodies: BodyScanner):
        self.stack = stack
        self.docker = stack.docker
        self.bodies = bodies
        self.psql = Psql(stack.docker.binary, lambda: self.container("postgres"))

    def container(self, service: str) -> str:
        """The service's container, whatever its state (running, restarting, exited)."""
        cid = self.stack.compose("ps", "--all", "--quiet", service).stdout.strip()
        assert cid, f"no container for {service}"
        return cid.splitlines()[0]

    def inspect(self, service: str) -> dict:
        return self.docker.inspect(self.container(service))

    def state(self, service: str) -> dict:
        return self.inspect(service)["State"]

    def env(self, service: str) -> dict[str, str]:
        pairs = (e.split("=", 1) for e in self.inspect(service)["Config"]["Env"])
        return {k: v for k, v in pairs}

    def setting(self, name: str, default: str) -> str:
        """An API setting as the container sees it (an empty value means the app's default)."""
        return self.env("flask-api").get(name) or default

    def wait_healthy(self, service: str, *, started_after: str | None = None, timeout: float = 120) -> float:
        """Wait until the service's container runs, is healthy (and was started after
        `started_after`, an inspect StartedAt); returns time.monotonic() when it was seen."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                st = self.state(service)
                last = (st.get("Status"), (st.get("Health") or {}).get("Status"), st.get("StartedAt"))
                if (st.get("Running") and last[1] == "healthy"
                        and (started_after is None or st.get("StartedAt", "") > started_after)):
                    return time.monotonic()
            except (AssertionError, DockerError):
                pass  # no container yet, or it went between `ps` and `inspect`
            assert time.monotonic() < deadline, f"{service} not healthy in {timeout:.0f} s (last: {last})"
            time.sleep(0.2)

    def sigkill_main_process(self, service: str) -> dict:
        """SIGKILL the container's main process from the host (State.Pid).

        `docker kill` would not do: the engine counts it as a manual stop and never applies the
        restart policy. A process killed from outside is what a crash or an OOM kill looks like.
        Needs root on the engine's machine.
        """
        before = self.state(service)
        assert before["Running"] and before["Pid"] > 0, before
        os.kill(before["Pid"], signal.SIGKILL)
        return before

    def stop_workers(self) -> list[int]:
        """SIGSTOP the API's Granian workers from the host, as a wedge leaves them: alive, silent.

        The container's main process is tini (`init: true`), its child Granian's main process,
        whose children are the workers. Returns the stopped pids.
        """
        from support import granian_workers  # not at import: the corpus subprocess loads this as a plugin

        workers = granian_workers(self.state("flask-api")["Pid"])
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)
        return workers

    def api_ok(self, timeout: float = 60) -> float:
        """Wait for the API's /health to answer 200 (database reachable through the pool)."""
        import requests

        deadline = time.monotonic() + timeout
        while True:
            try:
                r = requests.get(self.stack.api_url + "/health", timeout=5)
                self.bodies.record(r.content, "/health")
                if r.status_code == 200:
                    return time.monotonic()
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, f"the API's /health did not return to 200 in {timeout:.0f} s"
            time.sleep(0.2)

    def edge_limits(self) -> EdgeLimits:
        """The edge's per-client limits and client timeout, read from its running configuration."""
        return EdgeLimits.parse(self.docker("exec", self.container("edge"), "nginx", "-T").stdout)

    @contextmanager
    def edge_settings(self, **settings: str) -> Iterator[None]:
        """The edge recreated with these EDGE_* settings ("" for the image's default), and
        recreated as it was afterwards; the other services are left alone."""
        before = {name: self.stack.env.get(name) for name in settings}

        def recreate(values: dict[str, str | None]) -> None:
            for name, value in values.items():
                if value is None:
                    self.stack.env.pop(name, None)
                else:
                    self.stack.env[name] = value
            self.stack.compose("up", "--detach", "--no-deps", "--wait", "--wait-timeout", "60", "edge",
                               timeout=120)

        recreate(dict(settings))
        try:
            yield
        finally:
            recreate(before)

    def request_log(self, since: str, service: str = "flask-api") -> list[dict]:
        """The JSON lines a service logged since `since` (a timestamp `docker logs` takes), parsed;
        the API writes one per request (request_id, method, path, status, client). What is
        logged is not there at once: to wait for it, `stack.logged`."""
        return self.stack.log_lines(service, since)

    def save_logs(self, tag: str) -> Path:
        """`docker compose logs` of every service, kept before containers are removed."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"stack-logs-{tag}.txt"
        out = self.stack.compose("logs", "--no-color", "--timestamps", check=False, timeout=120).stdout
        path.write_text(out)
        return path

    def close(self) -> None:
        self.psql.close()


# --------------------------------------------------------------------------- the edge and its abusers


@dataclass(frozen=True)
class EdgeLimits:
    """What the edge allows one client address, as its running configuration (`nginx -T`) says."""

    client_timeout: int  # seconds: client_header_timeout and client_body_timeout
    read_rate: int  # requests per second, and the burst served at once above it
    read_burst: int
    write_rate: int
    write_burst: int
    connections: int  # requests open at once

    @classmethod
    def parse(cls, config: str) -> EdgeLimits:
        def number(pattern: str) -> int:
            found = set(re.findall(pattern, config))
            assert len(found) == 1, f"the edge's configuration has {found or 'no'} {pattern!r}"
            return int(found.pop())

        header, body = number(r"client_header_timeout\s+(\d+)s;"), number(r"client_body_timeout\s+(\d+)s;")
        assert header == body, f"client_header_timeout {header} s, client_body_timeout {body} s"
        return cls(client_timeout=body,
                   read_rate=number(r"zone=reads:\S+\s+rate=(\d+)r/s;"),
                   read_burst=number(r"limit_req\s+zone=reads\s+burst=(\d+)"),
                   write_rate=number(r"zone=writes:\S+\s+rate=(\d+)r/s;"),
                   write_burst=number(r"limit_req\s+zone=writes\s+burst=(\d+)"),
                   connections=number(r"limit_conn\s+clients\s+(\d+);"))


class Abuser:
    """A script of tests/reliability/abusers/ running in a throwaway container on the stack's
    `edge` network: a client with an address of its own, which every client on this host is not
    (the edge sees them all at docker-proxy's). Used as a context manager; the container is
    removed on the way out, whatever happened. `lines` are the JSON lines it printed so far.
    The stack's write key reaches the script as a mounted file (abuse_http.KEY_FILE), never as
    an argument or an environment variable (`docker inspect` would show either).
    """

    def __init__(self, stack, script: str, *args: str):
        self.stack = stack
        self.name = f"{stack.project}-abuser-{uuid.uuid4().hex[:8]}"
        key_file = stack.tls_cert.parent / "abuser_api_key"  # in the stack's 0700 secrets directory
        if not key_file.exists():  # written once: abusers that run already read it
            key_file.write_text(stack.api_key)
            key_file.chmod(0o644)  # read by uid 65534 in the container
        self.command = [stack.docker.binary, "run", "--rm", "--name", self.name,
                        "--network", f"{stack.project}_edge", "--read-only", "--cap-drop", "ALL",
                        "--security-opt", "no-new-privileges=true", "--user", "65534:65534",
                        "--memory", "256m", "--pids-limit", "64", "--volume", f"{ABUSERS}:/abusers:ro",
                        "--volume", f"{key_file}:/run/secrets/api_key:ro",
                        ABUSER_IMAGE, "python", "-u", f"/abusers/{script}", "edge", "8080", *args]
        self.lines: list[dict] = []
        self.errors = ""
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> Self:
        self._proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env=self.stack.env)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        for line in self._proc.stdout:
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                self.lines.append({"unparsed": line[:500]})

    def line(self, key: str) -> dict | None:
        """The first line that has `key`, if it came."""
        return next((line for line in self.lines if key in line), None)

    def running(self) -> bool:
        return self._proc.poll() is None

    def wait_for(self, key: str, timeout: float) -> dict:
        """Wait for the line that has `key`; fails when the script ended or the time is up first."""
        deadline = time.monotonic() + timeout
        while (found := self.line(key)) is None:
            if not self.running() or time.monotonic() > deadline:
                self.__exit__()
                if (found := self.line(key)) is not None:
                    return found
                raise AssertionError(f"{self.name}: no {key!r} line in {timeout:.0f} s (exit "
                                     f"{self._proc.poll()}): {self.lines[-3:]} {self._proc.stderr.read()[-2000:]}")
            time.sleep(0.05)
        return found

    def __exit__(self, *exc) -> None:
        if self.running():
            self.stack.docker("rm", "--force", self.name, check=False, timeout=60)
        self._proc.wait(30)
        self._reader.join(5)


# --------------------------------------------------------------------------- results


class Results:
    """The figures each scenario prints, collected for docs/RELIABILITY.md (JSON on disk)."""

    def __init__(self, path: Path = RESULTS):
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self.meta: dict[str, Any] = {}
        self.notes: list[str] = []

    def add(self, row: dict[str, Any]) -> dict[str, Any]:
        """A row of the table; `row["test"]` is the node id (or id prefix) of the tests it sums up."""
        row.setdefault("outcome", "running")
        self.rows.append(row)
        return row

    @staticmethod
    def show(row: dict[str, Any]) -> None:
        print("\n[reliability] " + format_row(row), flush=True)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def write(self, started: float) -> None:
        if not self.rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "suite_seconds": round(time.monotonic() - started, 1),
            "scale": scale(),
            "host": {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version()},
            **self.meta,
            "rows": self.rows,
            "notes": self.notes,
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
        tmp.replace(self.path)


def format_statuses(statuses: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items(), key=lambda kv: str(kv[0]))) or "-"


def format_row(row: dict[str, Any]) -> str:
    errors = row.get("no_answer") or {}
    parts = [
        f"{row['scenario']}: {row.get('requests', 0)} requests",
        f"responses {format_statuses(row.get('statuses') or {})}",
        f"no answer {format_statuses(errors)}",
    ]
    if row.get("acked") is not None:
        parts.append(f"acknowledged writes {row['acked']}, lost {row.get('acked_lost')}")
    if row.get("recovery"):
        parts.append(f"recovery {row['recovery']}")
    if row.get("details"):
        parts.append("; ".join(f"{k} {v}" for k, v in row["details"].items()))
    return " | ".join(parts)


def count_statuses(statuses) -> dict[str, int]:
    return dict(sorted(Counter(str(s) for s in statuses).items()))
