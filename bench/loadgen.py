#!/usr/bin/env python3
"""A fixed-rate (open-loop) HTTP/1.1 load generator that accounts for coordinated omission.

Request i is due at ``start + i / rate``, whatever happened to the requests
before it. Worker threads take the next due request in order, wait for its time,
send it on a keep-alive connection of their own (reconnecting when the server
closes), and record latency from the *intended* send time, not from when the
request actually left. A server that stalls therefore shows every request that
should have been sent meanwhile as late, as wrk2 and HdrHistogram's corrected
mode do, instead of the closed-loop generator quietly waiting for it.

If all workers are busy, due requests queue and their wait counts as latency.
Requests due in the first ``--warmup`` seconds are sent but not recorded.

With BENCH_API_KEY in the environment every request carries ``Authorization:
Bearer <key>`` (the key stays off the command line, where `ps` shows it).

Standard library only; prints one JSON object on stdout.

    python3 bench/loadgen.py --port 5000 --rate 800 --duration 10 --scenario get
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sys
import threading
import time

MIX = (("get", 70), ("list", 15), ("patch", 10), ("post", 5))


class Scenario:
    """Builds request bytes the way bench/wrk/bench.lua does."""

    def __init__(self, name: str, host: str, id_min: int, id_max: int, tag: str, api_key: str = ""):
        self.name, self.host, self.id_min, self.id_max, self.tag = name, host, id_min, id_max, tag
        self.auth = f"Authorization: Bearer {api_key}\r\n" if api_key else ""
        self.counter = 0
        self.lock = threading.Lock()
        self.weights = [w for _, w in MIX]

    def _req(self, method: str, path: str, body: bytes | None = None) -> bytes:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.auth}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        return (head + "\r\n").encode() + (body or b"")

    def request(self, rng: random.Random) -> bytes:
        kind = self.name
        if kind == "mix":
            kind = rng.choices([k for k, _ in MIX], self.weights)[0]
        if kind == "get":
            return self._req("GET", f"/items/{rng.randint(self.id_min, self.id_max)}")
        if kind == "list":
            return self._req("GET", "/items?limit=20")
        if kind == "patch":
            body = json.dumps({"quantity": rng.randint(0, 100000)}).encode()
            return self._req("PATCH", f"/items/{rng.randint(self.id_min, self.id_max)}", body)
        if kind == "post":
            with self.lock:
                self.counter += 1
                n = self.counter
            body = json.dumps(
                {"name": f"{self.tag}-{n}", "description": "made by the benchmark",
                 "price": rng.randint(100, 99999) / 100, "quantity": rng.randint(0, 1000)}
            ).encode()
            return self._req("POST", "/items", body)
        if kind == "ready":
            return self._req("GET", "/health/ready")
        raise ValueError(f"unknown scenario {kind}")


class Connection:
    """One keep-alive connection with just enough HTTP/1.1 parsing (Content-Length bodies)."""

    def __init__(self, host: str, port: int, timeout: float):
        self.addr, self.timeout = (host, port), timeout
        self.sock: socket.socket | None = None
        self.buf = b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buf = None, b""

    def roundtrip(self, data: bytes) -> int:
        if self.sock is None:
            self.sock = socket.create_connection(self.addr, timeout=self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(data)
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length, close = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
            elif name == b"transfer-encoding":
                raise OSError("chunked responses are not supported")
        while len(self.buf) < length:
            self._fill()
        self.buf = self.buf[length:]
        if close or lines[0].startswith(b"HTTP/1.0"):
            self.close()
        return status

    def _fill(self) -> None:
        assert self.sock is not None
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


class Schedule:
    """The open-loop plan (request i is due at start + i / rate) and what its requests saw."""

    def __init__(self, args: argparse.Namespace):
        self.total = int(args.rate * (args.warmup + args.duration))
        self.warm = int(args.rate * args.warmup)
        self.interval = 1.0 / args.rate
        self.start = time.perf_counter() + 0.1
        self.deadline = self.start + args.warmup + args.duration + args.timeout + 5
        self.latencies: list[float] = []
        self.lags: list[float] = []
        self.statuses: dict[int, int] = {}
        self.socket_errors = 0
        self._next = 0
        self._lock = threading.Lock()

    def take(self) -> int | None:
        """The next request's index, or None when the plan (or its time) is used up."""
        with self._lock:
            i, self._next = self._next, self._next + 1
        return None if i >= self.total or time.perf_counter() > self.deadline else i

    def due(self, i: int) -> float:
        return self.start + i * self.interval

    def record(self, i: int, status: int | None, sent: float, done: float) -> None:
        if i < self.warm:
            return
        with self._lock:
            if status is None:
                self.socket_errors += 1
            else:
                self.statuses[status] = self.statuses.get(status, 0) + 1
            self.latencies.append(done - self.due(i))
            self.lags.append(sent - self.due(i))


def _worker(args: argparse.Namespace, scenario: Scenario, plan: Schedule, seed: int) -> None:
    rng = random.Random(seed)
    conn = Connection(args.host, args.port, args.timeout)
    while (i := plan.take()) is not None:
        delay = plan.due(i) - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        data = scenario.request(rng)
        sent = time.perf_counter()
        try:
            status = conn.roundtrip(data)
        except (OSError, ValueError, IndexError):
            conn.close()
            status = None
        plan.record(i, status, sent, time.perf_counter())
    conn.close()


def run(args: argparse.Namespace) -> dict:
    sys.setswitchinterval(0.0005)  # let a thread whose response arrived run promptly
    scenario = Scenario(args.scenario, f"{args.host}:{args.port}", args.id_min, args.id_max, args.tag,
                        os.environ.get("BENCH_API_KEY", ""))
    plan = Schedule(args)
    threads = [threading.Thread(target=_worker, args=(args, scenario, plan, n), daemon=True)
               for n in range(args.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return summary(args, plan, time.perf_counter() - plan.start - args.warmup)


def summary(args: argparse.Namespace, plan: Schedule, elapsed: float) -> dict:
    latencies, lags = sorted(plan.latencies), sorted(plan.lags)
    non_2xx = sum(n for s, n in plan.statuses.items() if not 200 <= s < 400)
    ms = 1000.0
    return {
        "scenario": args.scenario,
        "rate": args.rate,
        "duration_s": args.duration,
        "connections": args.connections,
        "count": len(latencies),
        "achieved_rps": len(latencies) / elapsed if elapsed > 0 else 0.0,
        "statuses": {str(k): v for k, v in sorted(plan.statuses.items())},
        "errors": plan.socket_errors + non_2xx,
        "socket_errors": plan.socket_errors,
        "non_2xx": non_2xx,
        "p50_ms": percentile(latencies, 50) * ms,
        "p90_ms": percentile(latencies, 90) * ms,
        "p99_ms": percentile(latencies, 99) * ms,
        "p999_ms": percentile(latencies, 99.9) * ms,
        "max_ms": (latencies[-1] if latencies else float("nan")) * ms,
        "mean_ms": (sum(latencies) / len(latencies) if latencies else float("nan")) * ms,
        # How late the generator itself sent requests (its own scheduling noise).
        "send_lag_p50_ms": percentile(lags, 50) * ms,
        "send_lag_p99_ms": percentile(lags, 99) * ms,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rate", type=float, required=True, help="requests per second")
    p.add_argument("--duration", type=float, default=10.0, help="recorded seconds")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds sent but not recorded")
    p.add_argument("--connections", type=int, default=64, help="worker threads, one connection each")
    p.add_argument("--timeout", type=float, default=5.0, help="socket timeout, seconds")
    p.add_argument("--scenario", default="get", choices=["get", "list", "post", "patch", "mix", "ready"])
    p.add_argument("--id-min", type=int, default=1)
    p.add_argument("--id-max", type=int, default=10000)
    p.add_argument("--tag", default=f"lat-{int(time.time())}")
    args = p.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        p.error("load goes to loopback only")
    if args.rate <= 0:
        p.error("--rate must be positive")
    print(json.dumps(run(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
