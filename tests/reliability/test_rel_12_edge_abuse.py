"""Slow and greedy clients at the edge, each from an address of its own, while another client
goes on being served.

The edge sees every client on this host at one address (docker-proxy's), so an abuser there
would be "another client" too. Each abuser is therefore a script of abusers/ in a throwaway
container on the stack's `edge` network (reliability_support.Abuser); the other client is this
test, on the host. The edge runs its documented defaults for this module (the rest of the suite
lifts its per-client limits: conftest.py), and the scenarios read the limits and the client
timeout back from its running configuration (`nginx -T`).

- Slow clients: 256 stalled request bodies and 256 slowloris connections, spread over as many
  addresses as it takes for the edge to hold every one (per address no more stalled bodies than
  its write burst admits at once, nor than its connection limit). Meanwhile the other client's
  `GET /health` and `GET /items/<id>` must each be answered within 1 s, throughout. The edge
  must close every abusive connection, unanswered, within its client timeout (plus slack) and
  not before it was due; none may reach the API (its log names no abuser's address).
- A greedy client floods reads, then writes, then opens more requests at once than its
  connection limit. Everything over its rates and limit must be a 429 problem+json with
  Retry-After, what it is served must fit its burst and rate, and the edge's log must name that
  client alone; the other client's reads and writes meanwhile are all served.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

import pytest
import requests
from reliability_support import (
    ONE_ADDRESS_FOR_EVERYONE,
    Abuser,
    EdgeLimits,
    Results,
    cgroup_memory_file,
    recording_session,
    scaled,
)

STALLED = SLOWLORIS = 256
SLACK = 3.0  # seconds past the edge's client timeout its close may come on a busy machine
BOUND = 1.0  # seconds: the other client's answers, as the issue asks
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def limits(ops) -> EdgeLimits:
    """The edge at its documented defaults for this module (recreated as before afterwards)."""
    with ops.edge_settings(**{name: "" for name in ONE_ADDRESS_FOR_EVERYONE}):
        found = ops.edge_limits()
        yield found


@pytest.fixture(scope="module")
def other(stack, bodies):
    """The well-behaved client, on the host: a session of its own (keep-alive), with a key."""
    with recording_session(bodies, base=stack.api_url, key=stack.api_key) as session:
        yield session


@dataclass
class Probe:
    at: float  # time.monotonic() when sent
    what: str
    status: int | str  # or the exception's name
    seconds: float


def probe_while(busy: Callable[[], bool], sends: dict[str, Callable], *, pause: float, timeout: float,
                sample: Callable[[], None] = lambda: None) -> list[Probe]:
    """Send each request of `sends` (what -> a call that returns a response), then pause, for as
    long as `busy()` says (at most `timeout` seconds); every answer's status and time."""
    probes: list[Probe] = []
    deadline = time.monotonic() + timeout
    while busy() and time.monotonic() < deadline:
        for what, send in sends.items():
            started = time.monotonic()
            try:
                status = send().status_code
            except requests.RequestException as e:  # a timeout or a dropped connection: counted, never retried
                status = type(e).__name__
            probes.append(Probe(started, what, status, time.monotonic() - started))
        sample()
        time.sleep(pause)
    return probes


def _shares(total: int, parts: int) -> list[int]:
    return [total // parts + (n < total % parts) for n in range(parts)]


# --------------------------------------------------------------------------- slow clients


@dataclass
class SlowRun:
    """What the slow clients and the other client saw."""

    probes: list[Probe]  # the other client's requests
    reports: list[dict]  # each abuser's last line: its address and its connections
    ready: float | None  # when every abusive connection was open
    finished: float  # when the last abuser was done
    memory: list[int]  # the edge's memory (cgroup), sampled with the probes


def hold_slow_clients(stack, ops, other, shares: list[tuple[int, int]], give_up: float) -> SlowRun:
    """One abuser per (stalled, slowloris) share, all at once; the other client probes until the
    last abuser is done."""
    item = other.post("/items", json={"name": f"relslow-{uuid.uuid4().hex[:10]}", "price": 1}).json()
    memory_file, memory, ready = cgroup_memory_file(ops.inspect("edge")["Id"]), [], []
    with ExitStack() as running:
        abusers = [running.enter_context(Abuser(
            stack, "slow_clients.py", "--stalled", str(stalled), "--slowloris", str(slow),
            "--body-bytes", ops.setting("MAX_BODY_BYTES", "65536"), "--interval", "3", "--give-up", str(give_up)))
            for stalled, slow in shares]

        def busy() -> bool:
            if not ready and all(a.line("ready") for a in abusers):
                ready.append(time.monotonic())
            return not all(a.line("connections") for a in abusers) and any(a.running() for a in abusers)

        def sample() -> None:
            if memory_file is not None:
                memory.append(int(memory_file.read_text()))

        probes = probe_while(busy, {"GET /health": lambda: other.get("/health", timeout=5),
                                    "GET /items/<id>": lambda: other.get(f"/items/{item['id']}", timeout=5)},
                             pause=0.1, timeout=give_up + 60, sample=sample)
        finished = time.monotonic()
        reports = [a.wait_for("connections", 30) for a in abusers]
    return SlowRun(probes, reports, ready[0] if ready else None, finished, memory)


def test_slow_clients_neither_hold_the_edge_nor_stay(stack, ops, limits, other, row):
    per_address = min(limits.write_burst + 1, limits.connections)
    assert per_address >= 8, f"the edge admits {per_address} stalled bodies per address: too few to try"
    addresses = math.ceil(STALLED / per_address)
    edge = ops.inspect("edge")
    since = f"{time.time() - 1:.3f}"
    run = hold_slow_clients(stack, ops, other, list(zip(_shares(STALLED, addresses), _shares(SLOWLORIS, addresses),
                                                        strict=True)), give_up=limits.client_timeout + SLACK + 10)
    probes, reports, ready, finished, memory = run.probes, run.reports, run.ready, run.finished, run.memory
    seen = {r["address"] for r in reports}
    connections = [c for r in reports for c in r["connections"]]
    reached_api = [line for line in ops.request_log(since) if line.get("client") in seen]
    after = ops.inspect("edge")

    kinds = Counter((kind, status, end) for kind, status, _, end in connections)
    closes = [seconds for _, _, seconds, _ in connections if seconds is not None]
    due = limits.client_timeout
    early = [c for c in connections if c[2] is not None and c[2] < due - 1]
    late = [c for c in connections if c[2] is None or c[2] > due + SLACK]
    during = [p for p in probes if ready and p.at >= ready]
    slow = [p for p in probes if p.status != 200 or p.seconds >= BOUND]
    result = row(
        f"Slow clients: {STALLED} stalled bodies and {SLOWLORIS} slowloris connections at the edge",
        requests=len(probes), statuses={str(k): v for k, v in Counter(p.status for p in probes).items()},
        no_answer={},
        details={"abuser addresses": f"{len(seen)} (each at most {per_address} stalled bodies: the write burst "
                                     f"+ 1 and the connection limit {limits.connections})",
                 "abusive connections": ", ".join(f"{k} {s or 'unanswered'} {e}: {n}"
                                                  for (k, s, e), n in sorted(kinds.items(), key=str)),
                 "closed by the edge after": f"{min(closes, default=0):.1f}–{max(closes, default=0):.1f} s "
                                             f"(client timeout {due} s)",
                 "other client": f"{len(probes)} requests, {len(during)} while all were held, slowest "
                                 f"{max((p.seconds for p in probes), default=0) * 1000:.0f} ms",
                 "API log lines from the abusers": len(reached_api),
                 "edge memory": f"max {max(memory, default=0) / MIB:.0f} MiB of "
                                f"{edge['HostConfig']['Memory'] / MIB:.0f} MiB (cgroup, with page cache)",
                 "edge restarts": after["RestartCount"] - edge["RestartCount"],
                 "hold": f"{finished - ready:.1f} s" if ready else "never all ready"})
    Results.show(result)
    assert ready is not None, "the abusers never had every connection open"
    assert len(seen) == addresses, f"the abusers came from {seen}"
    assert len(connections) == STALLED + SLOWLORIS
    assert not slow, f"the other client waited or failed: {slow[:10]}"
    assert len(during) >= finished - ready, f"not one probe a second while the abusers held on: {len(during)}"
    assert not [c for c in connections if c[1] is not None], f"abusive connections answered: {kinds}"
    assert not late, f"connections the edge did not close within {due} + {SLACK:g} s: {late[:10]}"
    assert not early, f"connections closed before the client timeout (not held): {early[:10]}"
    assert not reached_api, f"abusive requests reached the API: {reached_api[:5]}"
    assert after["RestartCount"] == edge["RestartCount"] and not after["State"]["OOMKilled"]


# --------------------------------------------------------------------------- a greedy client


def served_within(served: int, burst: int, rate: int, seconds: float) -> bool:
    """As many answers as the burst at least, and no more than the burst and the rate allow."""
    return burst + 1 <= served <= burst + 1 + rate * (seconds + 1)


def test_a_client_over_its_limits_gets_429_and_another_is_served(stack, ops, limits, other, row):
    item = other.post("/items", json={"name": f"relgreedy-{uuid.uuid4().hex[:10]}", "price": 1}).json()
    extra = 8
    since = f"{time.time() - 1:.3f}"
    with Abuser(stack, "greedy_client.py", "--seconds", f"{scaled(3):g}", "--connections", "8",
                "--held", str(limits.connections + extra), "--pace", f"{1.5 / limits.write_rate:.3f}") as greedy:
        names = iter(range(1_000_000))
        probes = probe_while(
            lambda: greedy.running() and not greedy.line("held"),
            {"GET /items/<id>": lambda: other.get(f"/items/{item['id']}", timeout=5),
             "POST /items": lambda: other.post("/items", timeout=5, json={
                 "name": f"relother-{uuid.uuid4().hex[:8]}-{next(names)}", "price": 2})},
            pause=0.2, timeout=scaled(3) * 2 + 60)
        reads, writes, held = (greedy.wait_for(phase, 30)[phase] for phase in ("reads", "writes", "held"))
        address = greedy.wait_for("address", 5)["address"]
    edge_log = [line for line in ops.docker("logs", "--since", since, ops.container("edge")).stderr.splitlines()
                if "limiting " in line]
    limited = Counter((m.group(1), m.group(2)) for line in edge_log
                      if (m := re.search(r'limiting (requests|connections).* by zone "(\w+)", client: ([\d.]+)', line))
                      and m.group(3) == address)
    others_limited = [line for line in edge_log if f"client: {address}," not in line]

    other_statuses = Counter(str(p.status) for p in probes)
    result = row(
        "Greedy client: reads, writes and open requests over its limits, and another client",
        requests=sum(sum(p["statuses"].values()) for p in (reads, writes, held)) + len(probes),
        statuses={}, no_answer={},
        details={"limits": f"reads {limits.read_rate}/s burst {limits.read_burst}, writes {limits.write_rate}/s "
                           f"burst {limits.write_burst}, {limits.connections} open requests",
                 "greedy reads": f"{reads['statuses']} in {reads['seconds']} s",
                 "greedy writes": f"{writes['statuses']} in {writes['seconds']} s",
                 f"greedy open requests ({limits.connections + extra})": f"{held['statuses']} (None: held, unanswered)",
                 "429s without problem+json and Retry-After": reads["improper_429"] + writes["improper_429"]
                 + held["improper_429"],
                 "edge log, greedy client limited": ", ".join(
                     f"{kind} by {zone}: {n}" for (kind, zone), n in sorted(limited.items())),
                 "edge log, any other client limited": len(others_limited),
                 "other client": ", ".join(f"{k}: {v}" for k, v in sorted(other_statuses.items()))})
    Results.show(result)
    assert set(reads["statuses"]) == {"200", "429"}, reads
    assert served_within(reads["statuses"]["200"], limits.read_burst, limits.read_rate, reads["seconds"]), reads
    assert set(writes["statuses"]) == {"422", "429"}, writes
    assert served_within(writes["statuses"]["422"], limits.write_burst, limits.write_rate, writes["seconds"]), writes
    assert held["statuses"] == {"None": limits.connections, "429": extra}, held
    assert reads["improper_429"] == writes["improper_429"] == held["improper_429"] == 0
    assert limited[("connections", "clients")] == extra, limited
    assert limited[("requests", "reads")] > 0 and limited[("requests", "writes")] > 0, limited
    assert not others_limited, others_limited[:5]
    assert set(other_statuses) == {"200", "201"}, other_statuses
    assert len(probes) >= 20, "the other client sent too few requests to tell"
