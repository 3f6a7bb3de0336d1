"""256 concurrent keep-alive connections against the API under its prod limits (compose.prod.yaml).

The API must not be OOM-killed or restarted, and PostgreSQL must never see more connections from
the app role than the configured budget, WORKERS × DB_POOL_MAX: the pool, not the number of
clients, bounds the database's load. `pg_stat_activity` is sampled all along (psql in the postgres
container), and so is the container's memory (its cgroup, read from the host).

Three requests in four are listings of 100 items (sorted by price), one in four a write. Load the
pool cannot take may be shed as 503 problem+json with Retry-After; anything else is a failure,
and so is any connection the server refuses or closes, or a request that times out
(`judge_keepalive`).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from reliability_load import keepalive_load
from reliability_support import Results, bearer_line, cgroup_memory_file, scaled
from reliability_verdicts import judge_keepalive

CONNECTIONS = 256


def _requests(stack, host: str) -> Callable[[int, int], bytes]:
    """Request n of connection `index`: a listing of 100 items, every fourth one a write."""
    prefix = f"relconn-{uuid.uuid4().hex[:10]}-"
    listing = (f"GET /items?limit=100&sort=-price HTTP/1.1\r\nHost: {host}\r\n"
               f"{bearer_line(stack.read_key)}\r\n").encode()

    def make_request(index: int, n: int) -> bytes:
        if n % 4:
            return listing
        body = json.dumps({"name": f"{prefix}{index}-{n}", "price": 1.5, "quantity": n}).encode()
        return (f"POST /items HTTP/1.1\r\nHost: {host}\r\n{bearer_line(stack.api_key)}"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    return make_request


@contextmanager
def sampling(ops, memory_file: Path | None) -> Iterator[tuple[list[int], list[int]]]:
    """Every 0.2 s while the block runs: the app role's connections in pg_stat_activity, and the
    API's cgroup memory when the host can read it."""
    samples: list[int] = []
    memory: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            samples.append(int(ops.psql.query(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'", timeout=10)))
            if memory_file is not None:
                memory.append(int(memory_file.read_text()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield samples, memory
    finally:
        stop.set()
        sampler.join(15)


def test_256_keepalive_connections_stay_within_memory_and_pool_budget(stack, ops, bodies, row):
    api = ops.inspect("flask-api")
    budget = int(ops.setting("WORKERS", "1")) * int(ops.setting("DB_POOL_MAX", "4"))
    limit = api["HostConfig"]["Memory"]
    assert limit > 0, "the API has no memory limit: run the prod stack (compose.prod.yaml)"
    port = urlsplit(stack.api_url).port
    make_request = _requests(stack, f"127.0.0.1:{port}")
    seconds = scaled(10)
    with sampling(ops, cgroup_memory_file(api["Id"])) as (samples, memory):
        report = keepalive_load("127.0.0.1", port, connections=CONNECTIONS, seconds=seconds,
                                make_request=make_request, bodies=bodies, timeout=15)
    after = ops.inspect("flask-api")
    ops.api_ok(30)

    statuses = {str(k): v for k, v in sorted(report.statuses.items())}
    result = row(
        f"{CONNECTIONS} keep-alive connections under the prod memory limit", requests=report.requests,
        statuses=statuses, no_answer=dict(report.no_answer),
        recovery="no restart needed",
        details={
            "seconds": round(seconds, 1),
            "connections open at once": report.max_open,
            "connections refused or closed by the server": sum(report.no_answer[k] for k in ("connect", "closed"))
                                                           + report.closed_after_answer,
            "latency p50 / p99": f"{report.percentile(50) * 1000:.0f} / {report.percentile(99) * 1000:.0f} ms",
            "app connections in pg_stat_activity": f"max {max(samples, default=0)} of budget {budget} "
                                                   f"({len(samples)} samples)",
            "API memory": (f"max {max(memory) / 2**20:.0f} MiB of {limit / 2**20:.0f} MiB (cgroup, with page cache)"
                           if memory else f"limit {limit / 2**20:.0f} MiB (cgroup not readable here)"),
            "OOM-killed": after["State"]["OOMKilled"],
            "API restarts": after["RestartCount"] - api["RestartCount"],
        },
    )
    Results.show(result)

    assert not after["State"]["OOMKilled"], "the API was OOM-killed"
    assert after["RestartCount"] == api["RestartCount"] and after["State"]["StartedAt"] == api["State"]["StartedAt"]
    breaches = judge_keepalive(report, budget=budget, samples=samples)
    assert not breaches, "\n".join(breaches)
