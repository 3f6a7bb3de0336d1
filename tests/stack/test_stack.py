"""The whole stack from compose.yaml + compose.prod.yaml, as a user starts it (fixture `stack`).

The API contract over 127.0.0.1, the database role the API uses, the runtime hardening of every
container, secrets kept out of environments and image history, pgAdmin in a real browser, and
data that survives `down` + `up`. The last test restarts the stack, so it comes last.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"  # git-ignored

# service -> (uid the processes run as, Config.User compose sets)
USERS = {"flask-api": ("10001", "10001:10001"), "postgres": ("999", "999:999"),
         "pgadmin": ("5050", "5050:5050"), "edge": ("101", "101:101"), "backup": ("999", "999:999")}
# A write to the root filesystem, in each container's own tools.
WRITE_PROBE = {"flask-api": ["python", "-c", "open('/probe', 'w')"],
               "postgres": ["sh", "-c", ": > /probe"], "pgadmin": ["sh", "-c", ": > /probe"],
               "edge": ["sh", "-c", ": > /probe"], "backup": ["sh", "-c", ": > /probe"]}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def psql(stack, sql: str) -> str:
    r = stack.compose("exec", "-T", "postgres", "psql", "-U", "postgres", "-d", "appdb",
                      "-v", "ON_ERROR_STOP=1", "-tA", "-c", sql)
    return r.stdout.strip()


# The HTTP contract suite: what a client sees of items, listing and the OpenAPI document.
CONTRACT_TESTS = ("tests/api/test_items.py", "tests/api/test_listing.py", "tests/api/test_openapi.py")


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_api_contract_through_the_edge(stack, scheme: str) -> None:
    """The HTTP contract tests pointed at the edge (TEST_API_URL), over plain HTTP and over
    HTTPS (checked against the stack's own certificate). The listing tests that compare the
    table with the database skip: they need the local cluster."""
    url = stack.api_tls_url if scheme == "https" else stack.api_url
    r = subprocess.run(
        [sys.executable, "-m", "pytest", *CONTRACT_TESTS, "-q", "-p", "no:cacheprovider", "-rs"],
        cwd=ROOT, env={**os.environ, "TEST_API_URL": url, "REQUESTS_CA_BUNDLE": str(stack.tls_cert),
                       "TEST_API_KEY": stack.api_key, "TEST_API_READ_KEY": stack.read_key},
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    skipped = [line for line in r.stdout.splitlines() if line.startswith("SKIPPED")]
    assert all("digest of that server's table" in line for line in skipped), skipped


def test_api_role_is_least_privilege(stack) -> None:
    row = psql(stack, "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, "
                      "rolcanlogin FROM pg_roles WHERE rolname = 'app'")
    assert row == "f|f|f|f|f|t"
    assert psql(stack, "SELECT nspowner::regrole FROM pg_namespace WHERE nspname = 'app'") == "app"
    # ...and the API's connections really are that role.
    requests.get(stack.api_url + "/health", timeout=5).raise_for_status()
    users = psql(stack, "SELECT DISTINCT usename FROM pg_stat_activity WHERE application_name = 'items-api'")
    assert users == "app"


def test_backup_role_may_replicate_and_nothing_more(stack) -> None:
    row = psql(stack, "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, "
                      "rolcanlogin FROM pg_roles WHERE rolname = 'backup'")
    assert row == "f|f|f|t|f|t"
    assert psql(stack, "SELECT has_database_privilege('backup', 'appdb', 'CONNECT'), "
                       "has_schema_privilege('backup', 'app', 'USAGE')") == "f|f"
    # ...and the backup service really streams as that role.
    streaming = psql(stack, "SELECT usename FROM pg_stat_replication WHERE application_name = 'barman_receive_wal'")
    assert streaming == "backup"


def test_containers_run_as_non_root_on_read_only_roots_with_limits(stack) -> None:
    for service, (uid, user) in USERS.items():
        cid = stack.container(service)
        c = stack.docker.inspect(cid)
        host = c["HostConfig"]
        assert c["Config"]["User"] == user, service
        uids = {line.split(None, 1)[0] for line in
                stack.docker("top", cid, "-o", "uid,pid").stdout.splitlines()[1:] if line.strip()}
        assert uids == {uid}, f"{service} processes run as {uids}"
        assert host["ReadonlyRootfs"] is True, service
        probe = stack.docker("exec", cid, *WRITE_PROBE[service], check=False)
        assert probe.returncode != 0 and "Read-only file system" in probe.stderr, (service, probe.stderr)
        assert host["CapDrop"] == ["ALL"] and not host["CapAdd"], service
        assert "no-new-privileges:true" in host["SecurityOpt"], service
        assert not host["Privileged"], service
        assert host["Memory"] > 0 and host["NanoCpus"] > 0 and host["PidsLimit"] > 0, service
        assert host["RestartPolicy"]["Name"] == "unless-stopped", service
        assert host["LogConfig"]["Type"] == "json-file" and host["LogConfig"]["Config"].get("max-size")
        assert c["State"]["Health"]["Status"] == "healthy", service
        bindings = [b for bs in (host["PortBindings"] or {}).values() for b in bs]
        if service in ("postgres", "flask-api", "backup"):
            assert not bindings, f"{service} must not be published (clients reach the API through the edge)"
        else:
            assert bindings and all(b["HostIp"] == "127.0.0.1" for b in bindings), bindings


def test_no_secret_in_any_environment_or_image_history(stack) -> None:
    # The passwords, the body of the edge's TLS key (its base64 lines) and the API keys.
    key_lines = [line for line in (stack.tls_cert.parent / "tls.key").read_text().splitlines()
                 if line and not line.startswith("-----")]
    values = [*stack.secrets.values(), *key_lines, stack.api_key, stack.read_key]
    for service in USERS:
        c = stack.docker.inspect(stack.container(service))
        env = "\n".join(c["Config"]["Env"])
        assert not any(v in env for v in values), f"a secret is in {service}'s environment"
        assert not any(v in json.dumps(c) for v in values), f"a secret is in `docker inspect` of {service}"
        names = [e.split("=", 1)[0] for e in c["Config"]["Env"]]
        assert not [n for n in names if n.endswith("PASSWORD")], names
    for service in ("flask-api", "edge"):
        image = stack.docker.inspect(stack.container(service))["Image"]
        history = stack.docker("history", "--no-trunc", image).stdout
        assert not any(v in history for v in values), f"a secret is in {service}'s image history"
    assert not any(v in json.dumps(stack.docker.inspect(image)) for v in values)


def test_pgadmin_shows_appdb_in_a_real_browser(stack) -> None:
    """Log in, expand the pre-registered server, answer its password prompt, see `appdb`;
    the page asks nothing of any other host (no Gravatar avatar, no upgrade check)."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(30_000)
        pgadmin_host = urlsplit(stack.pgadmin_url).netloc
        outside: list[str] = []
        page.on("request", lambda r: outside.append(r.url)
                if urlsplit(r.url).scheme in ("http", "https") and urlsplit(r.url).netloc != pgadmin_host
                else None)
        try:
            page.goto(stack.pgadmin_url + "/login")
            page.get_by_placeholder("Email Address / Username").fill(stack.pgadmin_email)
            page.get_by_placeholder("Password").fill(stack.secrets["pgadmin_password"])
            page.get_by_role("button", name="Login").click()

            tree = page.locator(".file-name")
            server = tree.get_by_text("appdb (postgres)", exact=True)
            prompt = page.locator("[role=dialog]", has_text="Connect to Server")
            # Double-clicking "Servers" expands it and pgAdmin then opens the server, which asks
            # for its password. The tree may still be loading: try again until it reacts.
            deadline = time.monotonic() + 60
            while not prompt.is_visible():
                assert time.monotonic() < deadline, "no password prompt for the server"
                target = server if server.is_visible() else tree.get_by_text("Servers", exact=True)
                if target.is_visible():
                    target.dblclick()
                page.wait_for_timeout(1500)
            prompt.locator("input[type=password]").fill(stack.secrets["postgres_password"])
            prompt.locator("button", has_text="OK").click()

            # Once connected, pgAdmin may expand "Databases" by itself; if not, expand it.
            databases = tree.filter(has_text="Databases").first
            appdb = tree.get_by_text("appdb", exact=True)
            expect(databases).to_be_visible()
            page.wait_for_timeout(1500)
            if not appdb.is_visible():
                databases.dblclick()
            expect(appdb).to_be_visible()
            page.screenshot(path=ARTIFACTS / "pgadmin-appdb.png")
            assert outside == [], f"pgAdmin's page asked other hosts: {outside}"
        except Exception:
            page.screenshot(path=ARTIFACTS / "pgadmin-failure.png")
            raise
        finally:
            browser.close()


def test_data_survives_down_and_up(stack) -> None:
    name = f"persist-{uuid.uuid4().hex[:12]}"
    r = requests.post(stack.api_url + "/items", json={"name": name, "price": 12.5, "quantity": 3},
                      headers={"Authorization": f"Bearer {stack.api_key}"},
                      timeout=5)
    assert r.status_code == 201, r.text
    location = r.headers["Location"]
    stack.down()  # no --volumes
    stack.up()
    r = requests.get(requests.compat.urljoin(stack.api_url, location), timeout=5,
                     headers={"Authorization": f"Bearer {stack.api_key}"})
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["price"], r.json()["quantity"]) == (name, 12.5, 3)
