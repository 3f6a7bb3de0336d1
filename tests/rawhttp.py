"""HTTP on a raw socket: what `requests` would never send, and the answer byte for byte.

The hostile-input tests (tests/api/test_hostile_input.py) and the reliability suite's hostile
scenarios both speak to the server this way: malformed requests, bodies sent while the answer is
read, and half-open HTTP/2 streams. Every socket has a timeout; only 127.0.0.1 (or whatever URL
the caller's server has) is reached.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
import time
from urllib.parse import urlsplit

T = 10  # seconds: the longest one exchange may take


def raw_exchange(server, request: bytes, *, body_chunks=(), timeout: float = T) -> bytes:
    """Send bytes on a raw socket (the body from another thread) and read the whole answer.

    The body is sent in the background so that a server that answers before
    reading the body (413) is seen answering, not stuck behind a full buffer.
    """
    host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.sendall(request)

        def send_body() -> None:
            try:
                for chunk in body_chunks:
                    sock.sendall(chunk)
            except OSError:
                pass  # the server may stop reading and close: that is allowed

        sender = threading.Thread(target=send_body, daemon=True)
        sender.start()
        received = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            except socket.timeout:
                break
            if not data:
                break
            received += data
            head, sep, rest = received.partition(b"\r\n\r\n")
            if sep:
                match = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
                if match and len(rest) >= int(match.group(1)):
                    break
        return received
    finally:
        sock.close()


def read_to_close(sock: socket.socket, timeout: float = T) -> bytes:
    """Everything the server sends until it closes the connection (or `timeout` seconds pass)."""
    received = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not data:
            break
        received += data
    return received


def parse_raw(received: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def _h2_frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def _hpack_literal(name: str, value: str) -> bytes:
    """One header as an HPACK literal without indexing (names and values under 127 bytes)."""
    return b"\x00" + bytes([len(name)]) + name.encode() + bytes([len(value)]) + value.encode()


def h2_partial_posts(server, streams: int = 4, tls: ssl.SSLContext | None = None, key: str = "",
                     request_id: str = "") -> bytes:
    """The attack on HTTP/2: POST streams with part of each body, then hang up. Cleartext with
    prior knowledge, or over TLS with `tls` (a context that offers h2 by ALPN); with an API key
    `key` and an X-Request-ID `request_id` in each stream's headers when given (so that a log can
    tell whether one arrived). The first bytes the server answered (b"" for none)."""
    authorization = (("authorization", f"Bearer {key}"),) if key else ()
    authorization += (("x-request-id", request_id),) if request_id else ()
    host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
    frames = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _h2_frame(0x4, 0, 0, b"")  # preface, SETTINGS
    for n in range(streams):
        stream = 2 * n + 1
        block = b"".join(_hpack_literal(k, v) for k, v in (
            (":method", "POST"), (":scheme", "https" if tls else "http"), (":path", "/items"), (":authority", "x"),
            ("content-type", "application/json"), ("content-length", "1000"), *authorization))
        frames += _h2_frame(0x1, 0x4, stream, block)  # HEADERS, END_HEADERS
        frames += _h2_frame(0x0, 0, stream, b'{"name": ')  # DATA, not the end of the stream
    sock = socket.create_connection((host, port), timeout=5)
    if tls is not None:
        sock = tls.wrap_socket(sock, server_hostname=host)
    with sock:
        sock.sendall(frames)
        try:
            return sock.recv(4096)
        except OSError:
            return b""
