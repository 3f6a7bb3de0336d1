"""PostgreSQL goes away in the middle of a sustained write load, and comes back.

Two faults: `docker compose stop postgres` (a clean, fast shutdown, held down a few seconds, then
`start`), and SIGKILL of the postmaster from the host (State.Pid; the restart policy brings it
back and PostgreSQL runs crash recovery). As many clients as the API has threads for requests
(BLOCKING_THREADS) POST unique items all along and record every answer; RELIABILITY_SCALE runs
more outage cycles. Then (`judge_outages`, `writes_breaches`, `unrestarted_breaches`):

- while PostgreSQL is away, every refused write is a 503 problem+json with Retry-After, given
  within the pool timeout (DB_POOL_TIMEOUT, plus a little slack for this shared machine): no
  client ever times out, and the API itself never drops a connection;
- within 5 s of PostgreSQL being healthy again every write succeeds, and the API was never
  restarted (same StartedAt and RestartCount);
- every acknowledged write (201) is in the table, under its id and exactly as sent, and every
  stored row the clients sent is complete, acknowledged or not (`check_writes`).

Two more tests hold every one of those promises further out: a long outage (20 s: recovery must
not depend on how long PostgreSQL was away), and four times as many clients as threads.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass

import pytest
from reliability_load import WriteLoad, check_writes
from reliability_support import ARTIFACTS, Results, scale
from reliability_verdicts import (
    RECOVERY_BOUND,
    Outage,
    OutageVerdict,
    judge_outages,
    unrestarted_breaches,
    writes_breaches,
)

CLIENT_TIMEOUT = 10  # a request with no answer by then counts as a hang
HOLD = 4.0  # seconds PostgreSQL stays stopped in the main scenario


def _settings(ops) -> tuple[float, int, int]:
    pool_timeout = float(ops.setting("DB_POOL_TIMEOUT", "3"))
    pool_max = int(ops.setting("DB_POOL_MAX", "4"))
    threads = int(ops.setting("BLOCKING_THREADS", str(pool_max)))
    return pool_timeout, pool_max, threads


def _outage(stack, ops, fault: str, hold: float, out: Outage) -> None:
    """One outage: PostgreSQL stopped for `hold` seconds then started, or SIGKILLed; returns once
    it is healthy again, its times in `out`."""
    pg_before = ops.inspect("postgres")
    out.fault = time.monotonic()
    if fault == "stop":
        stack.compose("stop", "postgres", timeout=120)
        out.down = time.monotonic()
        time.sleep(hold)
        out.repair = time.monotonic()
        stack.compose("start", "postgres", timeout=120)
    else:
        ops.sigkill_main_process("postgres")
        out.down = out.repair = out.fault  # the restart policy repairs
    out.healthy = ops.wait_healthy("postgres", started_after=pg_before["State"]["StartedAt"], timeout=120)


def _save(stack, load: WriteLoad, name: str, outages: list[Outage]) -> None:
    load.save_timeline(ARTIFACTS / f"timeline-{name}.json",
                       {f"{k}-{n}": v for n, out in enumerate(outages) for k, v in asdict(out).items() if v})
    log = stack.compose("logs", "--no-color", "--timestamps", "--since", f"{load.wall_started:.0f}",
                        "flask-api", check=False).stdout
    (ARTIFACTS / f"api-log-{name}.txt").write_text(
        "\n".join(line for line in log.splitlines() if '"app.request"' not in line) + "\n")


@dataclass
class OutageRun:
    """One scenario's outages under a write load, and what was broken."""

    fault: str
    hold: float
    clients: int
    pool_timeout: float
    load: WriteLoad
    outages: list[Outage]
    writes: dict
    verdict: OutageVerdict
    api_restarts: int
    breaches: list[str]

    def details(self) -> dict:
        during, away = self.verdict.during, self.verdict.away
        details = {
            "outages": f"{len(self.outages)} × " + (f"{self.hold:g} s stopped" if self.fault == "stop" else "SIGKILL"),
            "PostgreSQL away (fault to healthy)": ", ".join(f"{o.healthy - o.fault:.1f} s" for o in self.outages),
            "answered while away": f"{len(during)} ({len(self.verdict.answered_503)} × 503)",
            "slowest 503": f"{max((o.seconds for o in self.load.outcomes if o.status == 503), default=0):.2f} s "
                           f"(pool timeout {self.pool_timeout:g} s)",
        }
        if self.fault == "stop":
            details["sent while PostgreSQL was stopping or down"] = f"{len(away)}: " + ", ".join(
                f"{k}: {v}" for k, v in sorted(Counter(str(o.status or o.error) for o in away).items()))
            details["slowest of those"] = (f"{max((o.seconds for o in away), default=0):.1f} s (client gives up "
                                           f"at {CLIENT_TIMEOUT} s)")
        return {**details,
                "recovery after healthy": ", ".join("never" if r is None else f"{max(r, 0):.1f} s"
                                                    for r in self.verdict.recoveries),
                "stored, unacknowledged": self.writes["unacked_stored"],
                "half-written": self.writes["half_written"],
                "API restarts": self.api_restarts}

    def recovery(self) -> str:
        known = [r for r in self.verdict.recoveries if r is not None]
        if len(known) != len(self.verdict.recoveries):
            return "never"
        return f"≤ {max(0.0, max(known)):.1f} s after PostgreSQL healthy"

    def row(self, row, title: str, **details) -> dict:
        result = row(title, requests=len(self.load.outcomes), statuses=self.load.statuses(),
                     no_answer=self.load.no_answer(), acked=self.writes["acked"],
                     acked_lost=self.writes["acked_lost"], recovery=self.recovery(),
                     details={"clients": self.clients, **self.details(), **details})
        Results.show(result)
        return result


def _outages_under_writes(stack, ops, bodies, name: str, *, fault: str, hold: float, cycles: int,
                          clients: int) -> OutageRun:
    """`cycles` outages while `clients` write; after each, the load goes on past the recovery
    bound (every write then must succeed). Then the verdict on all of it."""
    pool_timeout = _settings(ops)[0]
    api_before = ops.inspect("flask-api")
    outages: list[Outage] = []
    load = WriteLoad(stack.api_url, stack.api_key, bodies, clients=clients, timeout=CLIENT_TIMEOUT,
                     max_seconds=(120 + hold) * cycles)
    try:
        with load:
            load.wait_acks(20, timeout=30)
            for _ in range(cycles):
                out = Outage()
                outages.append(out)
                _outage(stack, ops, fault, hold, out)
                load.wait_until(lambda os, h=out.healthy: any(o.acked and o.started >= h for o in os), 30,
                                "a write acknowledged after PostgreSQL was healthy")
                end = max(time.monotonic(), out.healthy + RECOVERY_BOUND) + 3
                while time.monotonic() < end:
                    time.sleep(0.1)
                out.end = time.monotonic()
    finally:
        _save(stack, load, name, outages)
    writes = check_writes(load, ops.psql)
    api_after = ops.inspect("flask-api")
    verdict = judge_outages(load.outcomes, outages, fault=fault, pool_timeout=pool_timeout)
    return OutageRun(fault, hold, clients, pool_timeout, load, outages, writes, verdict,
                     api_after["RestartCount"] - api_before["RestartCount"],
                     writes_breaches(writes) + verdict.breaches + unrestarted_breaches(api_before, api_after))


def _restore_api(stack, ops) -> None:
    """The API answers /health 200 again, restarting it if it cannot recover by itself."""
    try:
        ops.api_ok(10)
    except AssertionError:
        stack.compose("restart", "flask-api", timeout=120)
        ops.wait_healthy("flask-api", timeout=120)
        ops.api_ok(60)


@pytest.fixture
def restore_api(stack, ops):
    """After the test (as a teardown), whatever the test left."""
    yield
    _restore_api(stack, ops)


@pytest.mark.parametrize("fault", ["stop", "sigkill"])
def test_postgres_outage_under_sustained_writes(fault, stack, ops, bodies, row):
    threads = _settings(ops)[2]
    pg_restarts = ops.inspect("postgres")["RestartCount"]
    cycles = max(1, round(scale()))
    run = _outages_under_writes(stack, ops, bodies, f"postgres-{fault}", fault=fault, hold=HOLD, cycles=cycles,
                                clients=threads)
    run.row(row, {"stop": "PostgreSQL stopped (`docker compose stop`) under writes",
                  "sigkill": "PostgreSQL SIGKILLed (postmaster, from the host) under writes"}[fault])
    breaches = run.breaches
    assert not breaches, "\n".join(breaches)
    if fault == "sigkill":
        assert ops.inspect("postgres")["RestartCount"] == pg_restarts + cycles, "the restart policy did not act"
    ops.api_ok(30)


def test_a_long_postgres_outage_is_recovered_from(stack, ops, bodies, row, restore_api):
    pool_timeout, pool_max, threads = _settings(ops)
    # Long enough for 4 × pool_max requests to time out on the pool (12 s here), and then some.
    hold = 4 * pool_max * pool_timeout / threads + 8
    run = _outages_under_writes(stack, ops, bodies, "postgres-long-outage", fault="stop", hold=hold, cycles=1,
                                clients=threads)
    run.row(row, f"PostgreSQL stopped for {hold:.0f} s under writes", **{
        "/health after the run": _health(stack, bodies),
        "why this test exists": (
            "psycopg_pool 3.3 keeps a request that timed out waiting for a connection counted "
            "among its waiters until a connection comes back; with a `max_waiting` limit, a long "
            "enough outage under steady traffic made every later request TooManyRequests (503 at "
            "once) and the pool never tried PostgreSQL again. The app sets no `max_waiting` (only "
            "BLOCKING_THREADS requests per worker can wait on the pool), and this test holds "
            "PostgreSQL down long enough to catch the problem if it comes back")})
    breaches = run.breaches
    assert not breaches, "\n".join(breaches)


def _health(stack, bodies) -> str:
    import requests

    try:
        r = requests.get(stack.api_url + "/health", timeout=5)
        bodies.record(r.content, "/health")
        return str(r.status_code)
    except requests.RequestException as e:
        return type(e).__name__


def test_refusals_stay_within_the_pool_timeout_with_more_clients_than_threads(stack, ops, bodies, row,
                                                                              restore_api):
    pool_timeout, _, threads = _settings(ops)
    clients = 4 * threads
    # Two pool timeouts: long enough for a queue in front of the threads.
    run = _outages_under_writes(stack, ops, bodies, "postgres-many-clients", fault="stop", hold=2 * pool_timeout,
                                cycles=1, clients=clients)
    run.row(row, f"PostgreSQL stopped under writes from {clients} clients (4 × BLOCKING_THREADS)", **{
        "why this test exists": (
            "While PostgreSQL is away each request could hold one of the BLOCKING_THREADS "
            "for the whole pool timeout while the others queue in Granian, where no timeout "
            "applies: with 16 clients through a 16 s outage, no answer came within the "
            "clients' 10 s. The pool now waits only a fraction of a second for a connection "
            "once a caller has timed out while connection attempts were failing (app/db.py, "
            "`Pool`), until a connection is had again")})
    breaches = run.breaches
    assert not breaches, "\n".join(breaches)
