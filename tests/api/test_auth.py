"""Authentication, as the contract's "Authentication" section states it: bearer API keys with
scopes, over real HTTP against the real server, keys made by ``python -m app keys``."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
import requests
from conftest import create_key
from support import Api, Database, Server, json_records, run_cli

T = 10
INVALID = 'Bearer realm="items", error="invalid_token"'


@pytest.fixture
def anonymous(server: Server) -> Iterator[Api]:
    with Api(server.url) as session:
        yield session


def keys(migrated: Database, tmp_path, *args: str) -> subprocess.CompletedProcess:
    return run_cli("keys", *args, env=migrated.env(tmp_path))


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_401(response: requests.Response, challenge: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["WWW-Authenticate"] == challenge
    assert response.json()["title"] == "Unauthorized"


def test_no_key_is_401_with_the_bare_challenge(anonymous):
    assert_401(anonymous.get("/items", timeout=T), 'Bearer realm="items"')


def test_another_scheme_is_401_with_the_bare_challenge(anonymous):
    response = anonymous.get("/items", headers={"Authorization": "Basic dXNlcjpwYXNz"}, timeout=T)
    assert_401(response, 'Bearer realm="items"')


@pytest.mark.parametrize("token", ["", "itm_", "not-a-key", "itm_0123456789ab_short", "Bearer"])
def test_a_malformed_key_is_401_invalid_token(anonymous, token):
    assert_401(anonymous.get("/items", headers=bearer(token), timeout=T), INVALID)


def test_an_unknown_key_is_401_invalid_token(anonymous):
    unknown = f"itm_{uuid.uuid4().hex[:12]}_{'A' * 43}"
    assert_401(anonymous.get("/items", headers=bearer(unknown), timeout=T), INVALID)


def test_a_wrong_secret_for_a_known_id_is_401(anonymous, api_key):
    forged = api_key[:-43] + ("B" if api_key[-43] != "B" else "C") + api_key[-42:]
    assert_401(anonymous.get("/items", headers=bearer(forged), timeout=T), INVALID)


def test_the_scheme_name_is_case_insensitive(anonymous, api_key):
    response = anonymous.get("/items", headers={"Authorization": f"bearer {api_key}"}, timeout=T)
    assert response.status_code == 200


def test_an_expired_key_is_401(anonymous, migrated, tmp_path):
    key = create_key(migrated, tmp_path, "write", "--expires-in", "1")
    key_id = key.split("_")[1]
    # A day has passed (the clock of the database, which set the expiry).
    migrated.cluster.psql(f"UPDATE app.api_keys SET created_at = now() - interval '2 days',"
                          f" expires_at = now() - interval '1 second' WHERE id = '{key_id}'")
    assert_401(anonymous.get("/items", headers=bearer(key), timeout=T), INVALID)


def test_a_revoked_key_stops_working_within_5_seconds(anonymous, migrated, tmp_path):
    key = create_key(migrated, tmp_path, "write")
    assert anonymous.get("/items", headers=bearer(key), timeout=T).status_code == 200
    name = [row for row in keys(migrated, tmp_path, "list").stdout.splitlines() if key.split("_")[1] in row]
    assert keys(migrated, tmp_path, "revoke", name[0].split()[0]).returncode == 0
    revoked_at = time.monotonic()
    time.sleep(5)
    assert_401(anonymous.get("/items", headers=bearer(key), timeout=T), INVALID)
    assert time.monotonic() - revoked_at < 6


def test_revocation_reaches_every_worker_within_5_seconds(migrated, tmp_path):
    server = Server({**migrated.env(tmp_path), "WORKERS": "2"}, tmp_path / "server.log")
    name = f"workers-{uuid.uuid4().hex[:8]}"
    try:
        key = keys(migrated, tmp_path, "create", "--name", name, "--scope", "read").stdout.strip()
        with Api(server.url, key) as client:
            # Many connections, so that both workers have seen (and cached) the key.
            assert all(requests.get(server.url + "/items", headers=bearer(key), timeout=T).status_code == 200
                       for _ in range(40))
            assert keys(migrated, tmp_path, "revoke", name).returncode == 0
            time.sleep(5)
            statuses = {requests.get(server.url + "/items", headers=bearer(key), timeout=T).status_code
                        for _ in range(40)}
            assert client.get("/health/live", timeout=T).status_code == 200
    finally:
        server.stop()
    assert statuses == {401}


def test_a_read_key_on_a_write_is_403_insufficient_scope(anonymous, read_key):
    response = anonymous.post("/items", json={"name": f"r-{uuid.uuid4().hex}", "price": 1},
                              headers=bearer(read_key), timeout=T)
    assert response.status_code == 403, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="items", error="insufficient_scope", scope="write"')


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_a_read_key_cannot_change_an_item(api, anonymous, read_key, method):
    item = api.create()
    response = anonymous.request(method, f"/items/{item['id']}", json={"name": "changed", "price": 2},
                                 headers=bearer(read_key), timeout=T)
    assert response.status_code == 403
    assert api.get(f"/items/{item['id']}", timeout=T).json() == item


def test_a_read_key_reads(api, anonymous, read_key):
    item = api.create()
    assert anonymous.get(f"/items/{item['id']}", headers=bearer(read_key), timeout=T).status_code == 200
    assert anonymous.head("/items", headers=bearer(read_key), timeout=T).status_code == 200


def test_a_write_key_reads(api):
    item = api.create()
    assert api.get(f"/items/{item['id']}", timeout=T).status_code == 200


@pytest.mark.parametrize("path", ["/health", "/health/live", "/health/ready", "/openapi.json"])
def test_public_endpoints_need_no_key(anonymous, path):
    assert anonymous.get(path, timeout=T).status_code == 200


def test_unknown_paths_are_still_404_without_a_key(anonymous):
    assert anonymous.get("/nothing-here", timeout=T).status_code == 404


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/items", b'{"name": '),  # malformed JSON
    ("POST", "/items", b'{"name": "x", "price": -1}'),  # invalid item
    ("GET", "/items/0", None),  # an id that names nothing
    ("GET", "/items/1?x=1", None),  # any query
    ("PATCH", "/items/1", b"not json"),  # another media type
    ("DELETE", "/items", None),  # a method the path lacks
])
def test_authentication_comes_before_anything_else(anonymous, method, path, body):
    response = anonymous.request(method, path, data=body, timeout=T,
                                 headers={"Content-Type": "application/json", "If-Match": '"9"'})
    assert_401(response, 'Bearer realm="items"')
    assert set(response.json()) == {"type", "title", "status", "detail"}


def test_a_write_key_on_a_method_the_path_lacks_is_405(api):
    assert api.delete("/items", timeout=T).status_code == 405


def test_no_error_body_or_log_line_repeats_the_key(anonymous, server, api_key):
    forged = api_key[:-1] + ("x" if api_key[-1] != "x" else "y")
    response = anonymous.get("/items", headers=bearer(forged), timeout=T)
    assert forged not in response.text and forged[4:16] not in response.text
    log = "\n".join(server.log_lines())
    assert api_key not in log and forged not in log


def test_create_prints_the_key_alone_on_stdout(migrated, tmp_path):
    result = keys(migrated, tmp_path, "create", "--name", f"cli-{uuid.uuid4().hex[:8]}", "--scope", "read")
    assert result.returncode == 0
    assert result.stdout.count("\n") == 1 and result.stdout.startswith("itm_")
    assert "shown once" in result.stderr and result.stdout.strip() not in result.stderr


def secret_of(key: str) -> str:
    """The secret part of `itm_<id>_<secret>`: everything after the id (it may hold `_` itself)."""
    return key.split("_", 2)[2]


def test_list_shows_names_and_status_never_a_secret(migrated, tmp_path):
    name = f"listed-{uuid.uuid4().hex[:8]}"
    key = keys(migrated, tmp_path, "create", "--name", name, "--scope", "write").stdout.strip()
    listing = keys(migrated, tmp_path, "list").stdout
    [row] = [line for line in listing.splitlines() if line.startswith(name)]
    assert row.split()[1] == key.split("_")[1] and "write" in row and row.endswith("active")
    assert secret_of(key)[:20] not in listing


def test_a_second_live_key_with_the_same_name_is_refused(migrated, tmp_path):
    name = f"twice-{uuid.uuid4().hex[:8]}"
    assert keys(migrated, tmp_path, "create", "--name", name, "--scope", "read").returncode == 0
    again = keys(migrated, tmp_path, "create", "--name", name, "--scope", "read")
    assert again.returncode == 1 and "revoke it first" in again.stderr and again.stdout == ""


@pytest.mark.parametrize("args", [["revoke", "no-such-key"], ["create", "--name", "x", "--scope", "read",
                                                              "--expires-in", "0"]])
def test_refused_commands_exit_1_with_a_reason(migrated, tmp_path, args):
    result = keys(migrated, tmp_path, *args)
    assert result.returncode == 1 and result.stderr.startswith("keys ") and result.stdout == ""


def test_the_database_holds_no_key_in_clear(migrated, tmp_path, api_key, read_key):
    if migrated.cluster is None:
        pytest.skip("needs the throwaway cluster to dump")
    dump = migrated.cluster.pg_dump("--data-only")
    assert "COPY app.api_keys" in dump
    for key in (api_key, read_key):
        assert key not in dump and secret_of(key) not in dump


def test_last_use_is_recorded_but_not_on_every_request(api, migrated):
    key_id = api.headers["Authorization"].split("_")[1]
    for _ in range(5):
        api.get("/items", params={"limit": 1}, timeout=T)
    first = migrated.cluster.psql(f"SELECT last_used_at FROM app.api_keys WHERE id = '{key_id}'").strip()
    for _ in range(5):
        api.get("/items", params={"limit": 1}, timeout=T)
    assert first and first == migrated.cluster.psql(
        f"SELECT last_used_at FROM app.api_keys WHERE id = '{key_id}'").strip()


def test_auth_off_serves_items_without_a_key_and_says_so_loudly(migrated, tmp_path):
    server = Server({**migrated.env(tmp_path), "API_AUTH": "off"}, tmp_path / "server.log")
    try:
        assert requests.get(server.url + "/items", timeout=T).status_code == 200
        warnings = [r for r in json_records(server.log_lines()) if r.get("event") == "auth.off"]
    finally:
        server.stop()
    assert warnings and warnings[0]["level"] == "WARNING"
