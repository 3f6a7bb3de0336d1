"""`docker compose down` then `up` (volumes kept): every item is still there, and so is what was
configured in pgAdmin.

Before `down`: a digest of the whole items table (psql in the postgres container), a batch of
items written through the API, and a server registered in pgAdmin through its own HTTP API
(logged in as a person would, with its CSRF token). After `up`: the same digest, every item of
the batch readable through the API, and the server still listed after a fresh login. The
stack's logs are saved before `down` removes the containers, for the secret scan at the end.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter

import requests
from reliability_support import Results, recording_session, scaled


class PgAdmin:
    """pgAdmin's web API, as its own front end uses it."""

    def __init__(self, url: str, bodies, tally: Counter):
        self.session = recording_session(bodies, tally, url)
        self.token = ""

    def login(self, email: str, password: str) -> None:
        page = self.session.get("/login", timeout=30)
        match = re.search(r'"csrfToken"\s*:\s*"([^"]+)"', page.text) or re.search(
            r'name="csrf_token"[^>]*value="([^"]+)"', page.text)
        assert page.status_code == 200 and match, f"no CSRF token on pgAdmin's login page ({page.status_code})"
        self.token = match.group(1)
        r = self.session.post("/authenticate/login", data={"email": email, "password": password,
                                                           "csrf_token": self.token},
                              headers={"X-pgA-CSRFToken": self.token}, allow_redirects=False, timeout=30)
        assert r.status_code == 302 and "/login" not in r.headers.get("Location", ""), (
            f"pgAdmin login failed: {r.status_code} {r.headers.get('Location')}")

    def _json(self, method: str, path: str, **kwargs) -> dict:
        r = self.session.request(method, path, headers={"X-pgA-CSRFToken": self.token}, timeout=30, **kwargs)
        assert r.status_code == 200, f"{method} {path}: {r.status_code} {r.text[:300]}"
        return r.json()

    def groups(self) -> list[str]:
        return [g["_id"] for g in self._json("GET", "/browser/server_group/nodes/")["data"]]

    def servers(self) -> dict[str, dict]:
        found = {}
        for group in self.groups():
            for server in self._json("GET", f"/browser/server/nodes/{group}/")["result"]:
                found[server["label"]] = server
        return found

    def add_server(self, name: str) -> None:
        group = self.groups()[0]
        self._json("POST", f"/browser/server/obj/{group}/", json={
            "name": name, "host": "postgres", "port": 5432, "db": "appdb", "username": "app",
            "connect_now": False, "sslmode": "prefer", "comment": "registered before `down`"})


def test_down_then_up_keeps_every_item_and_pgadmin_configuration(stack, ops, bodies, row):
    tally: Counter = Counter()
    api = recording_session(bodies, tally, stack.api_url, stack.api_key)  # the key outlives `down` too
    prefix = f"reldown-{uuid.uuid4().hex[:10]}-"
    created = []
    for n in range(int(scaled(50))):
        r = api.post("/items", json={"name": f"{prefix}{n}", "description": "before down", "price": n + 0.25,
                                     "quantity": n})
        assert r.status_code == 201, r.text
        created.append(r.json())
    before = ops.psql.digest()
    server = f"rel-{uuid.uuid4().hex[:10]}"
    pgadmin = PgAdmin(stack.pgadmin_url, bodies, tally)
    pgadmin.login(stack.pgadmin_email, stack.secrets["pgadmin_password"])
    pgadmin.add_server(server)
    assert server in pgadmin.servers()
    volumes_before = {m["Name"] for s in ("postgres", "pgadmin") for m in ops.inspect(s)["Mounts"]
                      if m["Type"] == "volume"}

    ops.save_logs("before-down")
    ops.psql.close()
    started = time.monotonic()
    stack.down()  # no --volumes
    down = time.monotonic()
    stack.up()
    up = time.monotonic()
    ops.api_ok(60)

    after = ops.psql.digest()
    missing = []
    for item in created:
        try:
            r = api.get(f"/items/{item['id']}")
        except requests.RequestException as e:
            missing.append(f"{item['id']}: {e!r}")
            continue
        if r.status_code != 200 or r.json() != item:
            missing.append(f"{item['id']}: {r.status_code}")
    fresh = PgAdmin(stack.pgadmin_url, bodies, tally)
    fresh.login(stack.pgadmin_email, stack.secrets["pgadmin_password"])
    servers = fresh.servers()
    volumes_after = {m["Name"] for s in ("postgres", "pgadmin") for m in ops.inspect(s)["Mounts"]
                     if m["Type"] == "volume"}
    lost = len(missing) + (0 if after == before else 1)
    result = row(
        "`docker compose down` then `up` (volumes kept)", requests=sum(tally.values()),
        statuses={str(k): v for k, v in sorted(tally.items(), key=str) if isinstance(k, int)},
        no_answer={k: v for k, v in tally.items() if isinstance(k, str)},
        acked=len(created), acked_lost=len(missing),
        recovery=f"down {down - started:.1f} s, up (healthy) {up - down:.1f} s",
        details={"items table": f"{before.split()[0]} rows, digest {'unchanged' if after == before else 'CHANGED'}",
                 "pgAdmin server registered before down": "present" if server in servers else "MISSING",
                 "volumes": ", ".join(sorted(volumes_after))},
    )
    Results.show(result)

    assert after == before, "the items table is not what it was before `down`"
    assert not missing, missing[:10]
    assert server in servers, f"pgAdmin lost the server registered before `down`: {sorted(servers)}"
    assert "appdb (postgres)" in servers, sorted(servers)
    assert volumes_after == volumes_before, (volumes_before, volumes_after)
    assert lost == 0
