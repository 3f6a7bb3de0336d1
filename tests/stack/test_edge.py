"""The edge (nginx, build/edge) as clients and operators meet it in the prod stack (fixture `stack`).

Only the edge is published; HTTPS speaks HTTP/2 and sends HSTS; what the edge answers by itself is
problem+json without a server version; bodies reach the API whole (chunked ones too); the edge
and the API log the same request id, and the API logs the address the edge saw, never one the
client wrote. The rendered configuration passes `nginx -t`, and a bad setting stops the edge
with a message that names it. The abuse scenarios (slow clients, rate limits, smuggling) are in
tests/reliability; the contract suite through the edge is in test_stack.py.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
import requests

from rawhttp import parse_raw, raw_exchange

EDGE_IMAGE = "items-edge:local"


def about(request_id: str) -> Callable[[dict], bool]:
    """Picks the log lines (the edge's access log, the API's request log) about one request."""
    return lambda line: line.get("request_id") == request_id


def assert_edge_problem(url: str, request: bytes, status: int) -> dict[str, str]:
    """Send `request` raw to `url`'s port: the edge's own problem+json answer; its headers."""
    answer = raw_exchange(SimpleNamespace(url=url), request)
    got, headers, body = parse_raw(answer)
    assert got == status, answer[:300]
    assert headers["content-type"] == "application/problem+json", headers
    assert headers["server"] == "nginx", "the edge must not name its version"
    problem = json.loads(body)
    assert problem["status"] == status and problem["title"] and problem["detail"], problem
    return headers


def test_only_the_edge_is_published(stack) -> None:
    assert stack.compose("port", "flask-api", "5000", check=False).stdout.strip() in ("", ":0")
    for port, url in (("8080", stack.api_url), ("8443", stack.api_tls_url)):
        published = stack.compose("port", "edge", port).stdout.strip()
        assert published == f"127.0.0.1:{urlsplit(url).port}", published


def test_https_speaks_http2_and_sends_hsts(stack) -> None:
    r = subprocess.run(["curl", "-sS", "--http2", "--cacert", str(stack.tls_cert), "-o", "/dev/null",
                        "-D", "-", stack.api_tls_url + "/health/live"],
                       capture_output=True, text=True, timeout=30, check=True)
    status, *lines = r.stdout.splitlines()
    assert status.startswith("HTTP/2 200"), status
    headers = dict(line.split(": ", 1) for line in lines if ": " in line)
    assert headers["strict-transport-security"] == "max-age=63072000; includeSubDomains"


def test_plain_http_carries_no_hsts(stack) -> None:
    r = requests.get(stack.api_url + "/health/live", timeout=5)
    assert r.status_code == 200 and "Strict-Transport-Security" not in r.headers


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_below_1_2_is_refused(stack) -> None:
    context = ssl.create_default_context(cafile=str(stack.tls_cert))
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # this client would offer TLS 1.0/1.1; the edge must not take it
    with socket.create_connection(("127.0.0.1", urlsplit(stack.api_tls_url).port), timeout=5) as sock:
        with pytest.raises(ssl.SSLError, match="(?i)protocol.version|unsupported.protocol"):
            context.wrap_socket(sock, server_hostname="localhost")


EDGE_ERRORS = {
    "body over the limit": (b"POST /items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                            b"Content-Length: 70000\r\nConnection: close\r\n\r\n", 413),
    "request line over 8 KiB": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    "header field over 8 KiB": (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
    "TRACE": (b"TRACE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405),
    "two Host headers": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n", 400),
}


@pytest.mark.parametrize("case", EDGE_ERRORS)
def test_edge_made_errors_are_problem_json(stack, case: str) -> None:
    request, status = EDGE_ERRORS[case]
    headers = assert_edge_problem(stack.api_url, request, status)
    assert headers.get("x-request-id"), "the edge's own answers carry a request id too"


def test_plain_http_on_the_https_port_is_a_problem_json_400(stack) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert_edge_problem(stack.api_tls_url.replace("localhost", "127.0.0.1"), request, 400)


def test_a_chunked_body_reaches_the_api_whole(stack) -> None:
    """The edge reads the whole body before the API sees it, so chunked uploads work (the API
    alone refuses them with 411: its server cannot tell a cut body from a whole one)."""
    name = f"chunked-{uuid.uuid4().hex[:8]}"
    parts = [b'{"name": "', name.encode(), b'", "price": 2.5, "quantity": 4}']
    r = requests.post(stack.api_url + "/items", data=iter(parts), timeout=10,
                      headers={"Content-Type": "application/json", "Authorization": f"Bearer {stack.api_key}"})
    assert r.status_code == 201, r.text
    assert r.json()["name"] == name and r.json()["quantity"] == 4


def test_edge_and_api_log_the_same_request_id(stack) -> None:
    request_id = f"trace-{uuid.uuid4().hex}"
    r = requests.get(stack.api_url + "/items", params={"limit": 1}, timeout=5,
                     headers={"X-Request-ID": request_id, "Authorization": f"Bearer {stack.read_key}"})
    assert r.headers["X-Request-ID"] == request_id
    edge, api = stack.logged("edge", about(request_id)), stack.logged("flask-api", about(request_id))
    assert len(edge) == 1 and edge[0]["status"] == 200 and edge[0]["request"].startswith("GET /items?limit=1 ")
    assert len(api) == 1 and api[0]["path"] == "/items" and api[0]["status"] == 200


def test_the_edge_passes_the_key_on_and_never_logs_it(stack) -> None:
    request_id = f"key-{uuid.uuid4().hex}"
    r = requests.get(stack.api_tls_url + "/items", params={"limit": 1}, verify=str(stack.tls_cert), timeout=5,
                     headers={"X-Request-ID": request_id, "Authorization": f"Bearer {stack.read_key}"})
    assert r.status_code == 200
    unauthorized = requests.get(stack.api_url + "/items", timeout=5)
    assert unauthorized.status_code == 401 and unauthorized.headers["WWW-Authenticate"] == 'Bearer realm="items"'
    assert stack.logged("edge", about(request_id)) and stack.logged("flask-api", about(request_id))
    logs = stack.compose("logs", "--no-color", "edge", "flask-api").stdout
    assert stack.read_key not in logs and stack.api_key not in logs


def test_a_malformed_request_id_is_replaced_at_the_edge(stack) -> None:
    r = requests.get(stack.api_url + "/health/live", headers={"X-Request-ID": "bad id!"}, timeout=5)
    assert r.headers["X-Request-ID"] != "bad id!" and len(r.headers["X-Request-ID"]) == 32


def test_the_api_logs_the_address_the_edge_saw_not_the_clients_claim(stack) -> None:
    request_id = f"xff-{uuid.uuid4().hex}"
    requests.get(stack.api_url + "/health/live", timeout=5,
                 headers={"X-Request-ID": request_id, "X-Forwarded-For": "203.0.113.7"})
    [edge], [api] = stack.logged("edge", about(request_id)), stack.logged("flask-api", about(request_id))
    assert api["client"] == edge["client"] != "203.0.113.7"
    upstream_host = edge["upstream"].rsplit(":", 1)[0]
    assert api["client"] != upstream_host, "the API logged the edge, not the client"


def test_the_running_configuration_passes_nginx_t(stack) -> None:
    r = stack.compose("exec", "-T", "edge", "nginx", "-t", check=False)
    assert r.returncode == 0, r.stderr
    assert "syntax is ok" in r.stderr and "test is successful" in r.stderr


@pytest.mark.parametrize(("name", "value", "message"), [
    ("EDGE_READ_RATE", "fast", "EDGE_READ_RATE must be a whole number, got 'fast'"),
    ("EDGE_CLIENT_TIMEOUT", "0", "EDGE_CLIENT_TIMEOUT must be between 1 and 3600, got 0"),
    ("EDGE_UPSTREAM", "api;evil", "EDGE_UPSTREAM must be host:port, got 'api;evil'"),
])
def test_a_bad_setting_stops_the_edge_with_its_name(stack, name: str, value: str, message: str) -> None:
    r = stack.docker("run", "--rm", "-e", f"{name}={value}", "-e", "NGINX_ENTRYPOINT_QUIET_LOGS=1",
                     EDGE_IMAGE, check=False, timeout=60)
    assert r.returncode == 78 and message in r.stderr, (r.returncode, r.stderr)
