"""One connection must never take the API down: worst-case bodies and cleartext HTTP/2.

- Worst-case bodies: as many clients as the API has threads for requests (BLOCKING_THREADS) send,
  over and over, the most expensive bodies the limits allow: an object full of unknown members, JSON
  nested as deep as the body allows, a price of thousands of digits, a description of escaped
  astral characters. Every one must be refused (4xx), the container must not be OOM-killed or
  restarted, and another client's `/health/live` must answer within 1 s throughout. The container's
  memory (its cgroup, from the host) is sampled all along: that is the figure the README quotes.
- HTTP/2 streams dropped half-sent: a client opens POST streams, sends part of each body and hangs
  up. On the edge's plain port, with prior knowledge: it speaks HTTP/1.1 there, so the preface is
  refused (400). Over TLS, where the edge speaks HTTP/2: it takes the streams and buffers their
  bodies, so none reaches the API. Either way nothing leaks and every endpoint keeps answering.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import uuid
from collections import Counter
from types import SimpleNamespace

import requests
from rawhttp import h2_partial_posts
from reliability_support import PROBLEM, Results, bearer, cgroup_anonymous_memory, cgroup_memory_file, scaled

MIB = 1024 * 1024


def worst_case_bodies(limit: int) -> dict[str, bytes]:
    """The costliest bodies that fit within `limit` bytes, one per way of making work."""
    members = b", ".join(b'"k%05d": 1' % i for i in range(limit // 12))
    return {
        "unknown members": b"{" + members[: limit - 2].rpartition(b",")[0] + b"}",
        "deep nesting": b"[" * (limit - 1),
        "long number": b'{"name": "n", "price": 1' + b"0" * (limit - 40) + b"}",
        "escaped astral text": b'{"name": "n", "price": 1, "description": "'
        + b"\\ud83d\\ude00" * ((limit - 60) // 12) + b'"}',
    }


def _hammer(url: str, key: str, bodies: dict[str, bytes], until: float, tally: Counter,
            failures: list) -> None:
    with requests.Session() as session:
        session.headers.update(bearer(key))  # a valid key: the API parses what it is sent
        while time.monotonic() < until:
            for what, body in bodies.items():
                try:
                    r = session.post(url + "/items", data=body, timeout=10,
                                     headers={"Content-Type": "application/json"})
                    tally[r.status_code] += 1
                    if not 400 <= r.status_code < 500 or r.headers.get("Content-Type") != PROBLEM:
                        failures.append(f"{what}: {r.status_code} {r.headers.get('Content-Type')}")
                except requests.RequestException as e:
                    tally["no answer"] += 1
                    failures.append(f"{what}: {type(e).__name__}")


def _watch(url: str, memory_file, until: float, live: list[float], memory: list[tuple[int, int]]) -> None:
    while time.monotonic() < until:
        started = time.monotonic()
        try:
            ok = requests.get(url + "/health/live", timeout=5).status_code == 200
        except requests.RequestException:
            ok = False
        live.append(time.monotonic() - started if ok else float("inf"))
        if memory_file is not None:  # (with page cache, anonymous only)
            memory.append((int(memory_file.read_text()), cgroup_anonymous_memory(memory_file)))
        time.sleep(0.1)


def test_worst_case_bodies_from_every_thread_are_refused_within_memory(stack, ops, row):
    before = ops.inspect("flask-api")
    limit = before["HostConfig"]["Memory"]
    assert limit > 0, "the API has no memory limit: run the prod stack (compose.prod.yaml)"
    clients = int(ops.setting("BLOCKING_THREADS", ops.setting("DB_POOL_MAX", "4")))
    bodies = worst_case_bodies(int(ops.setting("MAX_BODY_BYTES", "65536")))
    until = time.monotonic() + scaled(10)
    tally, failures, live, memory = Counter(), [], [], []
    threads = [threading.Thread(target=_hammer,
                                args=(stack.api_url, stack.api_key, bodies, until, tally, failures))
               for _ in range(clients)]
    threads.append(threading.Thread(target=_watch, args=(
        stack.api_url, cgroup_memory_file(before["Id"]), until, live, memory)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(scaled(10) + 30)
    after = ops.inspect("flask-api")
    result = row(
        "Hostile input: worst-case bodies from every request thread", requests=sum(tally.values()),
        statuses={str(k): v for k, v in sorted(tally.items(), key=str) if k != "no answer"},
        no_answer={"timeout": tally["no answer"]} if tally["no answer"] else {},
        details={"clients": clients, "bodies": ", ".join(f"{k} ({len(v) // 1024} KiB)" for k, v in bodies.items()),
                 "/health/live": f"{len(live)} probes, slowest {max(live, default=0) * 1000:.0f} ms",
                 "API memory": (f"max {max((a for _, a in memory), default=0) // MIB} MiB anonymous, "
                                f"{max((c for c, _ in memory), default=0) // MIB} MiB with page cache, of {limit // MIB} MiB"),
                 "OOM-killed": after["State"]["OOMKilled"],
                 "API restarts": after["RestartCount"] - before["RestartCount"]},
    )
    Results.show(result)
    assert not failures, failures[:10]
    assert sum(tally.values()) >= clients * len(bodies), "too few requests to prove anything"
    assert max(live) < 1.0, f"/health/live took {max(live):.2f} s while the bodies were refused"
    assert not after["State"]["OOMKilled"] and after["RestartCount"] == before["RestartCount"]
    assert memory, "the container's memory was not sampled"
    anonymous = max(a for _, a in memory)
    assert anonymous < limit / 2, f"{anonymous // MIB} MiB: not well inside the {limit // MIB} MiB limit"


def test_dropped_http2_streams_neither_leak_nor_stop_the_api(stack, ops, row):
    before = ops.inspect("flask-api")
    server = SimpleNamespace(url=stack.api_url)
    answers = [h2_partial_posts(server, streams=4, key=stack.api_key) for _ in range(int(scaled(5, 5)))]
    spoken = [a for a in answers if len(a) >= 9 and a[3] == 0x4]
    started = time.monotonic()
    statuses = Counter(requests.get(stack.api_url + path, timeout=5,
                                    headers=bearer(stack.read_key)).status_code
                       for path in ("/health/live", "/items?limit=1", "/health") for _ in range(5))
    slowest = time.monotonic() - started
    after = ops.inspect("flask-api")
    result = row("Hostile input: cleartext HTTP/2 streams dropped half-sent", requests=len(answers) + 15,
                 statuses={str(k): v for k, v in statuses.items()}, no_answer={},
                 details={"connections": len(answers), "streams each": 4,
                          "answered as HTTP/2": len(spoken),
                          "first answer": json.dumps(answers[0][:40].decode("latin-1")),
                          "15 requests afterwards took": f"{slowest:.2f} s",
                          "API restarts": after["RestartCount"] - before["RestartCount"]})
    Results.show(result)
    assert not spoken, "the edge spoke HTTP/2 on its plain port"
    assert all(a.startswith(b"HTTP/1.1 400 ") for a in answers), answers[0][:200]
    assert statuses == Counter({200: 15}), statuses
    assert slowest < 3
    assert after["RestartCount"] == before["RestartCount"]


def test_dropped_http2_streams_over_tls_never_reach_the_api(stack, ops, row):
    before = ops.inspect("edge")
    tls = ssl.create_default_context(cafile=str(stack.tls_cert))
    tls.set_alpn_protocols(["h2"])
    server = SimpleNamespace(url=stack.api_tls_url)
    since = f"{time.time() - 1:.3f}"
    # The streams' own request id: the API's log may hold other tests' POSTs of the same second.
    marker = f"h2-dropped-{uuid.uuid4().hex}"
    answers = [h2_partial_posts(server, streams=4, tls=tls, key=stack.api_key, request_id=marker)
               for _ in range(int(scaled(5, 5)))]
    spoken = [a for a in answers if len(a) >= 9 and a[3] == 0x4]
    started = time.monotonic()
    statuses = Counter(requests.get(stack.api_tls_url + path, timeout=5, verify=str(stack.tls_cert),
                                    headers=bearer(stack.read_key)).status_code
                       for path in ("/health/live", "/items?limit=1", "/health") for _ in range(5))
    slowest = time.monotonic() - started
    posts = [line for line in ops.request_log(since) if line.get("request_id") == marker]
    after = ops.inspect("edge")
    result = row("Hostile input: HTTP/2 streams over TLS dropped half-sent", requests=len(answers) * 4 + 15,
                 statuses={str(k): v for k, v in statuses.items()}, no_answer={},
                 details={"connections": len(answers), "streams each": 4,
                          "answered as HTTP/2": len(spoken),
                          "POSTs in the API's log": len(posts),
                          "15 HTTPS requests afterwards took": f"{slowest:.2f} s",
                          "edge restarts": after["RestartCount"] - before["RestartCount"]})
    Results.show(result)
    assert len(spoken) == len(answers), "the edge did not speak HTTP/2 over TLS"
    assert not posts, f"half-sent bodies reached the API: {posts[:5]}"
    assert statuses == Counter({200: 15}), statuses
    assert slowest < 3
    assert after["RestartCount"] == before["RestartCount"]
