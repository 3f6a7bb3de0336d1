"""PostgreSQL goes away in the middle of a sustained write load, and comes back.

Two faults: `docker compose stop postgres` (a clean, fast shutdown, held down a few seconds, then
`start`), and SIGKILL of the postmaster from the host (State.Pid; the restart policy brings it
back and PostgreSQL runs crash recovery). As many clients as the API has threads for requests
(BLOCKING_THREADS) POST unique items all along and record every answer; RELIABILITY_SCALE runs
more outage cycles. Then:

- while PostgreSQL is away, every refused write is a 503 problem+json with Retry-After, given
  within the pool timeout (DB_POOL_TIMEOUT, plus a little slack for this shared machine): no
  client ever times out, and the API itself never drops a connection;
- within 5 s of PostgreSQL being healthy again every write succeeds, and the API was never
  restarted (same StartedAt and RestartCount);
- every acknowledged write (201) is in the table, under its id and exactly as sent, and every
  stored row the clients sent is complete, acknowledged or not (`check_writes`).

A long outage (20 s) checks that recovery does not depend on how long PostgreSQL was away. One
more test holds the same promise with four times as many clients as threads.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from reliability_load import WriteLoad, check_writes
from reliability_support import ARTIFACTS, Results, scale

pytestmark = pytest.mark.e2e

CLIENT_TIMEOUT = 10  # a request with no answer by then counts as a hang
SLACK = 2.0  # seconds over the pool timeout a 503 may take on a busy 2-core machine
RECOVERY_BOUND = 5.0  # seconds after PostgreSQL is healthy by which every write must succeed
HOLD = 4.0  # seconds PostgreSQL stays stopped (longer ones: the known failure below)


def _settings(ops) -> tuple[float, int, int]:
    pool_timeout = float(ops.setting("DB_POOL_TIMEOUT", "3"))
    pool_max = int(ops.setting("DB_POOL_MAX", "4"))
    threads = int(ops.setting("BLOCKING_THREADS", str(pool_max)))
    return pool_timeout, pool_max, threads


def _outage(stack, ops, fault: str, hold: float, marks: dict[str, float]) -> None:
    """One outage: PostgreSQL stopped for `hold` seconds then started, or SIGKILLed; returns once
    it is healthy again. `marks` gets fault, down, repair and healthy (time.monotonic())."""
    pg_before = ops.inspect("postgres")
    marks["fault"] = time.monotonic()
    if fault == "stop":
        stack.compose("stop", "postgres", timeout=120)
        marks["down"] = time.monotonic()
        time.sleep(hold)
        marks["repair"] = time.monotonic()
        stack.compose("start", "postgres", timeout=120)
    else:
        ops.sigkill_main_process("postgres")
        marks["down"] = marks["repair"] = marks["fault"]  # the restart policy repairs
    marks["healthy"] = ops.wait_healthy("postgres", started_after=pg_before["State"]["StartedAt"], timeout=120)


def _save(stack, load: WriteLoad, name: str, marks: dict[str, float]) -> None:
    load.save_timeline(ARTIFACTS / f"timeline-{name}.json", marks)
    log = stack.compose("logs", "--no-color", "--timestamps", "--since", f"{load.wall_started:.0f}",
                        "flask-api", check=False).stdout
    (ARTIFACTS / f"api-log-{name}.txt").write_text(
        "\n".join(line for line in log.splitlines() if '"app.request"' not in line) + "\n")


def _restore_api(stack, ops) -> None:
    """The API answers /health 200 again, restarting it if it cannot recover by itself."""
    try:
        ops.api_ok(10)
    except AssertionError:
        stack.compose("restart", "flask-api", timeout=120)
        ops.wait_healthy("flask-api", timeout=120)
        ops.api_ok(60)


@pytest.mark.parametrize("fault", ["stop", "sigkill"])
def test_postgres_outage_under_sustained_writes(fault, stack, ops, bodies, row):
    pool_timeout, _, threads = _settings(ops)
    api_before = ops.inspect("flask-api")
    pg_restarts = ops.inspect("postgres")["RestartCount"]
    cycles = max(1, round(scale()))
    clients = threads
    cycle_marks: list[dict[str, float]] = []
    load = WriteLoad(stack.api_url, bodies, clients=clients, timeout=CLIENT_TIMEOUT, max_seconds=120 * cycles)
    try:
        with load:
            load.wait_acks(20, timeout=30)
            for _ in range(cycles):
                marks: dict[str, float] = {}
                cycle_marks.append(marks)
                _outage(stack, ops, fault, HOLD, marks)
                load.wait_until(lambda os, m=marks: any(o.acked and o.started >= m["healthy"] for o in os), 30,
                                "a write acknowledged after PostgreSQL was healthy")
                # Keep writing well past the recovery bound: every write then must succeed.
                end = max(time.monotonic(), marks["healthy"] + RECOVERY_BOUND) + 3
                while time.monotonic() < end:
                    time.sleep(0.1)
                marks["end"] = time.monotonic()
    finally:
        _save(stack, load, f"postgres-{fault}",
              {f"{k}-{n}": v for n, m in enumerate(cycle_marks) for k, v in m.items()})
    writes = check_writes(load, ops.psql)
    api_after = ops.inspect("flask-api")
    pg_after = ops.inspect("postgres")

    outcomes = sorted(load.outcomes, key=lambda o: o.started)
    failed = [o for o in outcomes if o.status != 201]
    answered_503 = [o for o in failed if o.status == 503]
    bad = [o for o in failed if o.status is not None and not (o.status == 503 and o.problem and o.retry_after)]
    slow_503 = [o for o in answered_503 if o.seconds > pool_timeout + SLACK]
    recoveries, during, late = [], [], []
    for marks in cycle_marks:
        in_cycle = [o for o in outcomes if marks["fault"] <= o.started < marks["end"]]
        # Answered while PostgreSQL was away: after it was down and before it was started again
        # (or, after the crash, before it was healthy: a restarted PostgreSQL may serve before its
        # health check says so, and those answers may be 201s).
        until = marks["repair"] if fault == "stop" else marks["healthy"]
        during += [o for o in in_cycle if marks["down"] < o.ended <= until]
        last_failure = max((o.started for o in in_cycle if o.status != 201), default=marks["fault"])
        back = min((o.ended for o in in_cycle if o.acked and o.started >= last_failure), default=None)
        recoveries.append(back - marks["healthy"] if back is not None else None)
        late += [o for o in in_cycle if o.started >= marks["healthy"] + RECOVERY_BOUND and not o.acked]
    known = [r for r in recoveries if r is not None]

    title = {"stop": "PostgreSQL stopped (`docker compose stop`) under writes",
             "sigkill": "PostgreSQL SIGKILLed (postmaster, from the host) under writes"}[fault]
    result = row(
        title, requests=len(outcomes), statuses=load.statuses(), no_answer=load.no_answer(),
        acked=writes["acked"], acked_lost=writes["acked_lost"],
        recovery=(f"≤ {max(0.0, max(known)):.1f} s after PostgreSQL healthy" if len(known) == len(recoveries)
                  else "never"),
        details={
            "clients": f"{clients} (BLOCKING_THREADS)",
            "outages": f"{cycles} × " + (f"{HOLD:g} s stopped" if fault == "stop" else "SIGKILL"),
            "PostgreSQL away (fault to healthy)": ", ".join(f"{m['healthy'] - m['fault']:.1f} s" for m in cycle_marks),
            "answered while away": f"{len(during)} ({sum(o.status == 503 for o in during)} × 503)",
            "slowest 503": f"{max((o.seconds for o in answered_503), default=0):.2f} s "
                           f"(pool timeout {pool_timeout:g} s)",
            "recovery after healthy": ", ".join("never" if r is None else f"{max(r, 0):.1f} s" for r in recoveries),
            "stored, unacknowledged": writes["unacked_stored"],
            "half-written": writes["half_written"],
            "API restarts": api_after["RestartCount"] - api_before["RestartCount"],
        },
    )
    Results.show(result)

    assert writes["acked_lost"] == 0, f"acknowledged writes lost: {writes['examples']['lost']}"
    assert writes["acked_mismatch"] == 0 and writes["wrong_ack"] == 0, writes["examples"]
    assert writes["half_written"] == 0 and writes["unknown"] == 0, writes["examples"]
    assert not bad, f"non-503 or non-problem refusals: {[(o.status, o.problem, o.retry_after) for o in bad][:10]}"
    assert not load.no_answer(), f"requests without an answer (hangs or dropped connections): {load.no_answer()}"
    assert not slow_503, f"503s slower than the pool timeout: {[round(o.seconds, 2) for o in slow_503][:10]}"
    if fault == "stop":
        assert during and all(o.status == 503 for o in during), "no refused write seen while PostgreSQL was stopped"
    else:
        assert pg_after["RestartCount"] == pg_restarts + cycles, "the restart policy did not act"
    assert not late, f"{len(late)} writes failed more than {RECOVERY_BOUND:g} s after PostgreSQL was healthy"
    assert len(known) == len(recoveries) and max(known) <= RECOVERY_BOUND, f"recoveries: {recoveries}"
    assert api_after["State"]["StartedAt"] == api_before["State"]["StartedAt"], "the API was restarted"
    assert api_after["RestartCount"] == api_before["RestartCount"], "the API was restarted"
    ops.api_ok(30)


@pytest.fixture
def restore_api(stack, ops):
    """After the test (as a teardown, so that a failure here is never taken for the known one)."""
    yield
    _restore_api(stack, ops)


def test_a_long_postgres_outage_is_recovered_from(stack, ops, bodies, results, request, restore_api):
    pool_timeout, pool_max, threads = _settings(ops)
    # Long enough for 4 × pool_max requests to time out on the pool (12 s here), and then some.
    hold = 4 * pool_max * pool_timeout / threads + 8
    marks: dict[str, float] = {}
    health, back = "?", None
    result = results.add({"scenario": f"PostgreSQL stopped for {hold:.0f} s under writes", "test": request.node.nodeid})
    load = WriteLoad(stack.api_url, bodies, clients=threads, timeout=CLIENT_TIMEOUT, max_seconds=120)
    try:
        with load:
            load.wait_acks(20, timeout=30)
            _outage(stack, ops, "stop", hold, marks)
            deadline = marks["healthy"] + RECOVERY_BOUND + 5
            while time.monotonic() < deadline and back is None:
                time.sleep(0.2)
                back = load.first_ack_after(marks["healthy"])
            health = _health(stack, bodies)
    finally:
        _save(stack, load, "postgres-long-outage", marks)
        result.update(
            requests=len(load.outcomes), statuses=load.statuses(), no_answer=load.no_answer(),
            recovery=(f"{back - marks['healthy']:.1f} s after PostgreSQL healthy" if back
                      else f"none {RECOVERY_BOUND + 5:.0f} s after PostgreSQL healthy"),
            details={
                "clients": f"{threads} (BLOCKING_THREADS)",
                "/health after PostgreSQL was back": health,
                "why this test exists": (
                    "psycopg_pool 3.3 keeps a request that timed out waiting for a connection counted "
                    "among its waiters until a connection comes back; with a `max_waiting` limit, a long "
                    "enough outage under steady traffic made every later request TooManyRequests (503 at "
                    "once) and the pool never tried PostgreSQL again. The app sets no `max_waiting` (only "
                    "BLOCKING_THREADS requests per worker can wait on the pool), and this test holds "
                    "PostgreSQL down long enough to catch the problem if it comes back."),
            })
        Results.show(result)
    assert back is not None and back - marks["healthy"] <= RECOVERY_BOUND, "the API did not recover"


def _health(stack, bodies) -> str:
    import requests

    try:
        r = requests.get(stack.api_url + "/health", timeout=5)
        bodies.record(r.content, "/health")
        return str(r.status_code)
    except requests.RequestException as e:
        return type(e).__name__


def test_refusals_stay_within_the_pool_timeout_with_more_clients_than_threads(stack, ops, bodies, results,
                                                                              request, restore_api):
    pool_timeout, _, threads = _settings(ops)
    clients = 4 * threads
    marks: dict[str, float] = {}
    result = results.add({"scenario": f"PostgreSQL stopped under writes from {clients} clients "
                                      f"(4 × BLOCKING_THREADS)", "test": request.node.nodeid})
    load = WriteLoad(stack.api_url, bodies, clients=clients, timeout=CLIENT_TIMEOUT, max_seconds=120)
    try:
        with load:
            load.wait_acks(20, timeout=30)
            # Two pool timeouts: long enough for a queue, short enough not to wedge the pool (above).
            _outage(stack, ops, "stop", 2 * pool_timeout, marks)
            load.wait_until(lambda os: any(o.acked and o.started >= marks["healthy"] for o in os), 30,
                            "a write acknowledged after PostgreSQL was healthy")
    finally:
        _save(stack, load, "postgres-many-clients", marks)
        # Sent from the stop on and before the start: each must be answered within the pool timeout.
        away = [o for o in load.outcomes if marks.get("fault", 0) <= o.started <= marks.get("repair", 0)]
        slowest = max((o.seconds for o in away), default=0.0)
        result.update(requests=len(load.outcomes), statuses=load.statuses(), no_answer=load.no_answer(),
                      details={
                          "clients": clients,
                          "sent while PostgreSQL was stopping or down": f"{len(away)}: " + ", ".join(
                              f"{k}: {v}" for k, v in sorted(Counter(str(o.status or o.error) for o in away).items())),
                          "slowest of those": f"{slowest:.1f} s (pool timeout "
                                                                          f"{pool_timeout:g} s, client gives up at "
                                                                          f"{CLIENT_TIMEOUT} s)",
                          "why this test exists": (
                              "While PostgreSQL is away each request could hold one of the BLOCKING_THREADS "
                              "for the whole pool timeout while the others queue in Granian, where no timeout "
                              "applies: with 16 clients through a 16 s outage, no answer came within the "
                              "clients' 10 s. The pool now waits only a fraction of a second for a connection "
                              "once a caller has timed out while connection attempts were failing (app/db.py, "
                              "`Pool`), until a connection is had again."),
                      })
        Results.show(result)
    assert not load.no_answer(), f"requests without an answer: {load.no_answer()}"
    assert slowest <= pool_timeout + SLACK, f"a refusal took {slowest:.1f} s"
