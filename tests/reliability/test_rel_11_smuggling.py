"""Request smuggling at the edge: a message framed two ways is refused, and never reaches the API
as two requests.

Each probe is one raw HTTP/1.1 message whose length is ambiguous (Content-Length with
Transfer-Encoding, two Content-Lengths, a Transfer-Encoding the edge does not take) and whose
body holds a second, complete request: a server that framed it one way while another server
framed it the other would answer that second request, on the next client's connection behind a
proxy. The edge must answer each probe once, 400 (501 for a transfer coding it does not
implement, as RFC 9112 section 6.1 asks) in problem+json, and close the connection. The API's log
(one JSON line per request: request_id, path) must show neither the probe nor the request hidden
in it; the edge's access log must show each probe once. A control message, framed one way only,
with the same hidden request in its body, must reach the API exactly once, as one request: the
log check can see what it looks for.
"""

from __future__ import annotations

import json
import re
import socket
import time
import uuid
from collections import Counter
from urllib.parse import urlsplit

from rawhttp import parse_raw, read_to_close
from reliability_support import PROBLEM, Results, bearer_line

T = 10  # seconds: the longest one exchange may take


def _hidden(mark: str, n: int, key: str) -> bytes:
    return (f"GET /items/smuggled-{mark}-{n} HTTP/1.1\r\nHost: x\r\n{bearer_line(key)}"
            f"X-Request-ID: smuggled-{mark}-{n}\r\n\r\n").encode()


def probes(mark: str, key: str) -> dict[str, tuple[bytes, set[int]]]:
    """What each probe sends (its headers and a valid key, with the hidden request, which has one
    too, in its body), and the statuses allowed for it. Probe n carries X-Request-ID
    probe-<mark>-<n>."""
    def message(n: int, headers: str, body: bytes) -> bytes:
        return (f"POST /items HTTP/1.1\r\nHost: x\r\n{bearer_line(key)}X-Request-ID: probe-{mark}-{n}\r\n"
                f"Content-Type: application/json\r\n{headers}\r\n").encode() + body

    def chunked(n: int) -> bytes:  # a whole chunked body, then the hidden request
        return b"0\r\n\r\n" + _hidden(mark, n, key)

    def in_chunk(n: int) -> bytes:  # the hidden request inside a chunk
        return b"%x\r\n%s\r\n0\r\n\r\n" % (len(_hidden(mark, n, key)), _hidden(mark, n, key))

    def length(n: int) -> int:
        return len(chunked(n))

    return {
        "CL.TE: Content-Length, then chunked": (
            message(0, f"Content-Length: {length(0)}\r\nTransfer-Encoding: chunked\r\n", chunked(0)), {400}),
        "TE.CL: chunked, then Content-Length": (
            message(1, "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", in_chunk(1)), {400}),
        "two equal Content-Lengths": (
            message(2, f"Content-Length: {length(2)}\r\nContent-Length: {length(2)}\r\n", chunked(2)), {400}),
        "two different Content-Lengths": (
            message(3, f"Content-Length: 5\r\nContent-Length: {length(3)}\r\n", chunked(3)), {400}),
        "a Content-Length list": (
            message(4, f"Content-Length: 5, {length(4)}\r\n", chunked(4)), {400}),
        "Transfer-Encoding with a space before its colon": (
            message(5, f"Transfer-Encoding : chunked\r\nContent-Length: {length(5)}\r\n", chunked(5)), {400}),
        "chunked, then a second Transfer-Encoding": (
            message(6, "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", in_chunk(6)), {400}),
        "an unknown transfer coding beside Content-Length": (
            message(7, f"Transfer-Encoding: xchunked\r\nContent-Length: {length(7)}\r\n", chunked(7)), {400, 501}),
        "chunked after a tab, beside Content-Length": (
            message(8, f"Transfer-Encoding:\tchunked\r\nContent-Length: {length(8)}\r\n", chunked(8)), {400, 501}),
        "HTTP/1.0 with chunked": (
            message(9, "Transfer-Encoding: chunked\r\n", chunked(9)).replace(b"HTTP/1.1", b"HTTP/1.0", 1), {400}),
    }


def exchange(url: str, data: bytes) -> bytes:
    """Send the bytes and read until the server closes the connection (or T seconds)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=T) as sock:
        sock.sendall(data)
        return read_to_close(sock, T)


def answers(received: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Every answer in what one connection received: status, headers (lower-case names), body."""
    found = []
    while received.startswith(b"HTTP/"):
        status, headers, rest = parse_raw(received)
        size = int(headers.get("content-length", "0"))
        found.append((status, headers, rest[:size]))
        received = rest[size:]
    return found


def refusal(answered: list, allowed: set[int]) -> str | None:
    """None when the connection got exactly one answer, an allowed status in problem+json that
    closes the connection; otherwise what is wrong."""
    if len(answered) != 1:
        return f"{len(answered)} answers: {[a[0] for a in answered]}"
    status, headers, body = answered[0]
    if status not in allowed:
        return f"status {status}: {body[:200]!r}"
    if headers.get("content-type", "").split(";")[0].strip() != PROBLEM or json.loads(body).get("status") != status:
        return f"{status} without a problem document: {headers} {body[:200]!r}"
    if headers.get("connection", "").lower() != "close":
        return f"{status} without Connection: close"
    return None


def test_ambiguous_framing_is_refused_at_the_edge_and_never_reaches_the_api(stack, bodies, row):
    mark = uuid.uuid4().hex[:12]
    since = f"{time.time() - 1:.3f}"
    sent = probes(mark, stack.api_key)
    failures, statuses = [], Counter()
    for what, (data, allowed) in sent.items():
        answered = answers(exchange(stack.api_url, data))
        for status, _, body in answered:
            statuses[str(status)] += 1
            bodies.record(body, f"smuggling probe {what}")
        if problem := refusal(answered, allowed):
            failures.append(f"{what}: {problem}")
    hidden = _hidden(mark, 99, stack.api_key).replace(b"\r\n", b" ")
    control_body = b'{"name": "x", "price": "' + hidden + b'"}'
    control = answers(exchange(stack.api_url, (
        f"POST /items HTTP/1.1\r\nHost: x\r\n{bearer_line(stack.api_key)}X-Request-ID: control-{mark}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(control_body)}\r\nConnection: close\r\n\r\n").encode() + control_body))
    statuses.update(str(a[0]) for a in control)

    def marked(line: dict) -> bool:
        return mark in json.dumps(line)

    # The edge logs every probe and the control, the API the control alone. The edge's lines first
    # (it writes its log every second, the API every half second): that gives the line of any
    # smuggled request at the API the time to show too.
    edge_log = stack.logged("edge", lambda line: line.get("logger") == "edge.access" and marked(line),
                            len(sent) + 1, since=since)
    api_log = stack.logged("flask-api", marked, since=since)
    at_api = Counter(re.sub(rf"-{mark}.*", "", line.get("request_id", "?")) for line in api_log)
    at_edge = Counter(line["request_id"] for line in edge_log)
    result = row("Request smuggling: messages framed two ways, at the edge", requests=len(sent) + 1,
                 statuses=dict(statuses), no_answer={},
                 details={"probes": len(sent),
                          "API log lines of probes / hidden requests / the control": (
                              f"{at_api['probe']} / {at_api['smuggled']} / {at_api['control']}"),
                          "edge access log lines of probes": sum(v for k, v in at_edge.items() if k.startswith("probe"))})
    Results.show(result)
    assert not failures, "\n".join(failures)
    assert len(control) == 1 and control[0][0] == 422, f"the control was not answered as one request: {control}"
    assert at_api == Counter({"control": 1}), f"the API logged {dict(at_api)}: {api_log[:5]}"
    assert all(at_edge[f"probe-{mark}-{n}"] == 1 for n in range(len(sent))), at_edge
    assert not [k for k in at_edge if k.startswith("smuggled")], at_edge
