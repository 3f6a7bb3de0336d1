"""Logs: one JSON line per request on stdout, never a body or a secret."""

from __future__ import annotations

import json
import time
import uuid

import requests

from support import Server, json_records


def request_lines(server, request_id: str) -> list[dict]:
    for _ in range(50):
        lines = json_records(server.log_lines())
        found = [line for line in lines if line.get("request_id") == request_id and line["message"] == "request"]
        if found:
            return found
        time.sleep(0.05)
    return []


def test_every_line_of_the_server_log_is_json(api, server):
    api.get("/health")
    lines = [line for line in server.log_lines() if line.strip()]
    assert lines
    for line in lines:
        json.loads(line)


def test_each_request_logs_one_line_with_the_contract_fields(api, server):
    request_id = f"log-{uuid.uuid4().hex}"
    response = api.get("/items?limit=1", headers={"X-Request-ID": request_id})
    (line,) = request_lines(server, request_id)
    assert {"timestamp", "level", "request_id", "method", "path", "status", "duration_ms"} <= line.keys()
    assert (line["method"], line["path"], line["status"]) == ("GET", "/items", response.status_code)
    assert line["level"] == "INFO"
    assert isinstance(line["duration_ms"], float)


def test_a_request_line_is_written_exactly_as_json_writes_its_fields(api, server):
    """The line is made from a template (app/logs.py): its text is json's own, escapes included."""
    request_id = f"log-{uuid.uuid4().hex}"
    api.get('/items/%C3%A9%22%5C%09%7F%E2%80%A8', headers={"X-Request-ID": request_id})
    assert request_lines(server, request_id)  # written (lines go out in batches)
    (raw,) = [text for text in server.log_lines() if request_id in text and '"request"' in text]
    line = json.loads(raw)
    assert raw == json.dumps(line)
    assert list(line) == ["level", "logger", "message", "client", "method", "path", "status",
                          "duration_ms", "request_id", "timestamp"]
    assert line["path"] == '/items/\u00e9"\\\t\x7f\u2028'


def test_a_direct_client_is_logged_by_its_own_address_whatever_it_forwards(api, server):
    """Without a proxy in front (PROXY_HOPS=0, the default), X-Forwarded-For is the client's own
    claim: the log keeps the peer's address."""
    request_id = f"log-{uuid.uuid4().hex}"
    api.get("/health/live", headers={"X-Request-ID": request_id, "X-Forwarded-For": "203.0.113.7"})
    (line,) = request_lines(server, request_id)
    assert line["client"] == "127.0.0.1"


def test_behind_one_proxy_the_log_names_the_address_it_forwarded(migrated, tmp_path):
    server = Server({**migrated.env(tmp_path), "PROXY_HOPS": "1"}, tmp_path / "server.log")
    request_id = f"hop-{uuid.uuid4().hex}"
    try:
        requests.get(server.url + "/health/live", timeout=5,
                     headers={"X-Request-ID": request_id, "X-Forwarded-For": "198.51.100.1, 203.0.113.7"})
        (line,) = request_lines(server, request_id)
    finally:
        server.stop()
    # One trusted hop: the last address, the one the proxy itself saw; never the first.
    assert line["client"] == "203.0.113.7"


def test_request_bodies_and_passwords_never_reach_the_log(api, server, migrated):
    marker = f"body-secret-{uuid.uuid4().hex}"
    request_id = f"log-{uuid.uuid4().hex}"
    api.post("/items", json={"name": marker, "price": 1}, headers={"X-Request-ID": request_id})
    api.post("/items", data=marker, headers={"Content-Type": "application/json"})
    assert request_lines(server, request_id)
    log = server.log_path.read_text()
    assert marker not in log
    assert migrated.password not in log


def test_a_stopped_server_has_written_the_line_of_every_request_it_answered(migrated, tmp_path):
    server = Server(migrated.env(tmp_path), tmp_path / "server.log")
    request_id = f"stop-{uuid.uuid4().hex}"
    try:
        with requests.Session() as session:
            for _ in range(200):
                session.get(server.url + "/health/live", headers={"X-Request-ID": request_id})
    finally:
        server.stop()
    lines = json_records(server.log_lines())
    assert sum(line.get("request_id") == request_id for line in lines) == 200


def test_a_64_kb_path_makes_a_short_log_line_that_says_it_was_cut(api, server):
    long_path = "/items/" + "a" * 65_000
    assert api.get(long_path, headers={"X-Request-ID": "long-path-1"}, timeout=10).status_code == 404
    (line,) = request_lines(server, "long-path-1")
    assert len(json.dumps(line)) < 2048
    assert line["path"] == long_path[:512] + f"...[{len(long_path) - 512} more characters]"
