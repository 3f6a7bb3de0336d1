"""Load for the reliability tests: sustained writes that remember every acknowledgement, and
many keep-alive connections at once.

`WriteLoad`: a few client threads, each with its own `requests` session, POST items with unique
names and record every outcome (status, body, time, or the kind of failure). Every request has
a timeout; the run is bounded in time and in count. `check_writes` then compares what the
clients were told with what PostgreSQL holds.

`keepalive_load`: N keep-alive HTTP/1.1 connections on asyncio (one thread), each sending its
next request as soon as the previous answer arrived, for a bounded time.
"""

from __future__ import annotations

import asyncio
import json
import random
import string
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Self

import requests
from reliability_support import PROBLEM, BodyScanner, bearer

# Text the items carry, so that a row written in part would differ from what was sent.
_ALPHABET = string.ascii_letters + string.digits + " .,-éß中😀"


@dataclass
class Outcome:
    client: int
    name: str
    sent: dict[str, Any]  # name, description, price (decimal text), quantity
    started: float  # time.monotonic()
    ended: float
    status: int | None = None
    error: str | None = None  # "connection" or "timeout" when there was no answer
    problem: bool = False  # the body is application/problem+json
    retry_after: str | None = None
    item: dict[str, Any] | None = None  # the 201 body

    @property
    def acked(self) -> bool:
        return self.status == 201

    @property
    def seconds(self) -> float:
        return self.ended - self.started


def new_item(name: str, rng: random.Random) -> dict[str, Any]:
    description = None
    if rng.random() < 0.7:
        description = "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(1, 120)))
    cents = rng.randint(0, 10**8)
    return {"name": name, "description": description, "price": f"{cents // 100}.{cents % 100:02d}",
            "quantity": rng.randint(0, 2**31 - 1)}


def item_body(item: dict[str, Any]) -> bytes:
    # The price goes out as the JSON number it is, never through a float.
    return (f'{{"name": {json.dumps(item["name"])}, "description": {json.dumps(item["description"])}, '
            f'"price": {item["price"]}, "quantity": {int(item["quantity"])}}}').encode()


class WriteLoad:
    """`clients` threads POSTing unique items to `base_url` with the write key `key` until stopped
    (bounded anyway)."""

    def __init__(self, base_url: str, key: str, bodies: BodyScanner, *, clients: int = 4, timeout: float = 10,
                 pause: float = 0.01, max_seconds: float = 120, max_requests: int = 200_000):
        self.base_url = base_url.rstrip("/")
        self.headers = {"Content-Type": "application/json", **bearer(key)}
        self.bodies = bodies
        self.clients = clients
        self.timeout = timeout
        self.pause = pause
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self.prefix = f"rel-{uuid.uuid4().hex[:10]}-"
        self.outcomes: list[Outcome] = []
        self.in_flight: dict[int, tuple[float, str]] = {}  # client -> (started, name)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.started = 0.0
        self.wall_started = 0.0  # time.time() at `started`: to place log timestamps on this clock

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self.started, self.wall_started = time.monotonic(), time.time()
        for n in range(self.clients):
            t = threading.Thread(target=self._client, args=(n,), name=f"writer-{n}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 5)
        assert not any(t.is_alive() for t in self._threads), "a load client did not stop"

    def _client(self, n: int) -> None:
        rng = random.Random(f"{self.prefix}{n}")
        deadline = self.started + self.max_seconds
        with requests.Session() as session:
            seq = 0
            while not self._stop.is_set() and time.monotonic() < deadline:
                with self._lock:
                    if len(self.outcomes) >= self.max_requests:
                        return
                seq += 1
                item = new_item(f"{self.prefix}{n}-{seq}", rng)
                started = time.monotonic()
                with self._lock:
                    self.in_flight[n] = (started, item["name"])
                outcome = self._post(session, n, item, started)
                with self._lock:
                    self.in_flight.pop(n, None)
                    self.outcomes.append(outcome)
                # Refused connections come back at once: do not spin while the API is away.
                self._stop.wait(self.pause if outcome.status is not None else 0.05)

    def _post(self, session: requests.Session, n: int, item: dict, started: float) -> Outcome:
        outcome = Outcome(client=n, name=item["name"], sent=item, started=started, ended=started)
        try:
            r = session.post(self.base_url + "/items", data=item_body(item), timeout=self.timeout,
                             headers=self.headers)
        except requests.Timeout:
            outcome.error = "timeout"
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
            # Refused, reset, or cut off in the middle of the body (the API killed while it
            # answered): no answer either way. Uncaught, the last one ended the client's thread
            # and lost its outcome, so a row it had stored counted as never sent.
            outcome.error = "connection"
            session.close()  # start the next request on a fresh connection
        else:
            self.bodies.record(r.content, "a write-load response")
            outcome.status = r.status_code
            outcome.problem = r.headers.get("Content-Type", "").split(";")[0].strip() == PROBLEM
            outcome.retry_after = r.headers.get("Retry-After")
            if r.status_code == 201:
                outcome.item = json.loads(r.text, parse_float=Decimal)
        outcome.ended = time.monotonic()
        return outcome

    # ----------------------------------------------------------------------- while running

    def snapshot(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)

    def in_flight_at(self) -> list[tuple[int, float, str]]:
        with self._lock:
            return [(n, started, name) for n, (started, name) in self.in_flight.items()]

    def wait_until(self, predicate: Callable[[list[Outcome]], bool], timeout: float, what: str) -> float:
        deadline = time.monotonic() + timeout
        while not predicate(self.snapshot()):
            assert time.monotonic() < deadline, f"load: {what} did not happen in {timeout:.0f} s"
            assert any(t.is_alive() for t in self._threads), "load: every client has stopped"
            time.sleep(0.05)
        return time.monotonic()

    def wait_acks(self, count: int, after: float = 0.0, timeout: float = 30) -> float:
        """Wait until `count` writes that started after `after` were acknowledged."""
        return self.wait_until(lambda os: sum(o.acked and o.started >= after for o in os) >= count,
                               timeout, f"{count} acknowledged writes")

    # ----------------------------------------------------------------------- afterwards

    def monotonic(self, wall: float) -> float:
        """A wall-clock time (a log timestamp) on the time.monotonic() clock of the outcomes."""
        return self.started + (wall - self.wall_started)

    def first_ack_after(self, t: float) -> float | None:
        times = [o.ended for o in self.outcomes if o.acked and o.started >= t]
        return min(times) if times else None

    def save_timeline(self, path, marks: dict[str, float]) -> None:
        """Every request as (start, end, status or error), in seconds from the load's start, with
        the scenario's marks (fault, healthy...): for reading a failure after the fact."""
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [[round(o.started - self.started, 3), round(o.ended - self.started, 3), o.client,
                 o.status if o.status is not None else o.error] for o in sorted(self.outcomes, key=lambda o: o.started)]
        path.write_text(json.dumps({"marks": {k: round(v - self.started, 3) for k, v in marks.items()},
                                    "requests": rows}, indent=0))

    def statuses(self) -> dict[str, int]:
        return dict(sorted(Counter(str(o.status) for o in self.outcomes if o.status is not None).items()))

    def no_answer(self) -> dict[str, int]:
        return dict(sorted(Counter(o.error for o in self.outcomes if o.error).items()))


STORED_ROWS = (
    "SELECT coalesce(jsonb_agg(jsonb_build_object('id', id, 'name', name, 'description', description,"
    " 'price', price::text, 'quantity', quantity, 'version', version))::text, '[]')"
    " FROM app.items WHERE starts_with(name, '{prefix}')"
)


def _same(sent: dict[str, Any], stored: dict[str, Any]) -> bool:
    return (stored["name"] == sent["name"] and stored["description"] == sent["description"]
            and Decimal(str(stored["price"])) == Decimal(sent["price"])
            and stored["quantity"] == sent["quantity"])


def check_writes(load: WriteLoad, psql) -> dict[str, Any]:
    """What the clients were told against what PostgreSQL holds, for the load's names."""
    return compare_writes(load.outcomes, json.loads(psql.query(STORED_ROWS.format(prefix=load.prefix), timeout=60)))


def compare_writes(outcomes: list[Outcome], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The clients' outcomes against the stored rows (STORED_ROWS) of their names:

    - every acknowledged item (201) is stored, under the id it was given, exactly as sent;
    - every stored item is one the clients sent, complete (every field as sent, version 1),
      whether its POST was acknowledged, refused (503) or never answered;
    - the acknowledgements themselves echoed what was sent.
    """
    stored = {r["name"]: r for r in rows}
    sent = {o.name: o for o in outcomes}
    acked = [o for o in outcomes if o.acked]
    lost = [o.name for o in acked if o.name not in stored]
    wrong_ack = [o.name for o in acked if not (_same(o.sent, o.item) and o.item["version"] == 1)]
    acked_mismatch = [o.name for o in acked if o.name in stored and
                      (stored[o.name]["id"] != o.item["id"] or not _same(o.sent, stored[o.name]))]
    unknown = [name for name in stored if name not in sent]
    half_written = [name for name, row in stored.items() if name in sent and
                    (not _same(sent[name].sent, row) or row["version"] != 1)]
    unacked_stored = [name for name in stored if name in sent and not sent[name].acked]
    return {
        "acked": len(acked),
        "acked_lost": len(lost),
        "acked_mismatch": len(acked_mismatch),
        "wrong_ack": len(wrong_ack),
        "stored": len(stored),
        "unacked_stored": len(unacked_stored),
        "half_written": len(half_written),
        "unknown": len(unknown),
        "examples": {"lost": lost[:5], "acked_mismatch": acked_mismatch[:5], "half_written": half_written[:5],
                     "unknown": unknown[:5], "wrong_ack": wrong_ack[:5]},
    }


# --------------------------------------------------------------------------- many keep-alive connections


@dataclass
class KeepAliveReport:
    connections: int
    seconds: float
    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    no_answer: Counter = field(default_factory=Counter)  # connect, closed, timeout
    reconnects: int = 0
    closed_after_answer: int = 0  # answers with Connection: close (the server ends the connection)
    max_open: int = 0
    latencies: list[float] = field(default_factory=list)
    bad_503: int = 0  # 503s that were not problem+json with Retry-After

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = b""
    return status, headers, body


async def _keepalive(host: str, port: int, connections: int, seconds: float,
                     make_request: Callable[[int, int], bytes], bodies: BodyScanner,
                     timeout: float) -> KeepAliveReport:
    report = KeepAliveReport(connections, seconds)
    deadline = time.monotonic() + seconds
    open_now = 0

    async def connection(index: int) -> None:
        nonlocal open_now
        n = 0
        reader = writer = None
        while time.monotonic() < deadline:
            if writer is None:
                try:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
                except (TimeoutError, OSError):
                    report.no_answer["connect"] += 1
                    await asyncio.sleep(0.1)
                    continue
                open_now += 1
                report.max_open = max(report.max_open, open_now)
            n += 1
            report.requests += 1
            started = time.monotonic()
            try:
                writer.write(make_request(index, n))
                await writer.drain()
                status, headers, body = await asyncio.wait_for(_read_response(reader), timeout)
            except TimeoutError:
                report.no_answer["timeout"] += 1
                status = None
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                report.no_answer["closed"] += 1
                status = None
            if status is None or headers.get("connection", "").lower() == "close":
                report.closed_after_answer += status is not None
                writer.close()
                writer = None
                open_now -= 1
                report.reconnects += 1
                if status is None:
                    continue
            report.latencies.append(time.monotonic() - started)
            report.statuses[status] += 1
            if status != 200 or n % 25 == 0:
                bodies.record(body, "a keep-alive load response")
            if status == 503 and not (headers.get("content-type", "").startswith(PROBLEM)
                                      and headers.get("retry-after")):
                report.bad_503 += 1
        if writer is not None:
            writer.close()
            open_now -= 1

    await asyncio.gather(*(connection(i) for i in range(connections)))
    return report


def keepalive_load(host: str, port: int, *, connections: int, seconds: float,
                   make_request: Callable[[int, int], bytes], bodies: BodyScanner,
                   timeout: float = 15) -> KeepAliveReport:
    """`connections` keep-alive connections for `seconds`, each request `timeout`-bounded."""
    return asyncio.run(_keepalive(host, port, connections, seconds, make_request, bodies, timeout))
