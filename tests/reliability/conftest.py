"""Fixtures for the reliability suite: the real Compose stack, its containers, psql, results.

The stack is the e2e suite's (tests/e2e/conftest.py: compose.yaml + compose.prod.yaml, free
loopback ports, secrets of its own, leftovers removed first, everything removed at the end),
started under another project name (`items-rel`, or $RELIABILITY_PROJECT) so both suites can run
in one session. Without a Docker engine the tests skip, except under CI=true, where they fail.

Tests that damage the stack (stop or kill a service, `down`) restore it before they return, so
the modules run in any subset; they are numbered in the order the full run wants: hostile input
first, faults next, exposure last (it scans everything the run produced).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator

import pytest
from reliability_support import ARTIFACTS, BodyScanner, Results, StackOps, load_e2e_fixtures

_e2e = load_e2e_fixtures()
docker = _e2e.docker  # the docker CLI and an answering engine (fails under CI=true without one)
ca_bundle = _e2e.ca_bundle
_STARTED = [time.monotonic()]  # reset when the stack starts: the suite's own time


@pytest.fixture(scope="session")
def stack(docker, ca_bundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    tmp = tmp_path_factory.mktemp("reliability-stack")
    secrets_dir = tmp / "secrets"
    secrets_dir.mkdir(mode=0o700)
    values = {}
    for name in _e2e.SECRET_NAMES:
        values[name] = secrets.token_urlsafe(32)
        path = secrets_dir / name
        path.write_text(values[name] + "\n")
        path.chmod(0o644)  # bind-mounted: read by uids 999, 10001 and 5050
    api_port, pgadmin_port = _e2e.free_port(), _e2e.free_port()
    env_file = tmp / "reliability.env"
    env_file.write_text("")  # a user's .env must not change the stack under test
    env = {**os.environ, "SECRETS_DIR": str(secrets_dir), "API_PORT": str(api_port),
           "PGADMIN_PORT": str(pgadmin_port), "PGADMIN_DEFAULT_EMAIL": "reliability@example.com"}
    for name in ("COMPOSE_PROJECT_NAME", "COMPOSE_FILE", "COMPOSE_PROFILES"):
        env.pop(name, None)
    if ca_bundle is not None:
        env["EXTRA_CA_BUNDLE"] = str(ca_bundle)
    s = _e2e.Stack(
        docker=docker,
        project=os.environ.get("RELIABILITY_PROJECT", "items-rel"),
        env_file=env_file,
        env=env,
        api_url=f"http://127.0.0.1:{api_port}",
        pgadmin_url=f"http://127.0.0.1:{pgadmin_port}",
        pgadmin_email="reliability@example.com",
        secrets=values,
    )
    _STARTED[0] = time.monotonic()
    s.down("--volumes")  # leftovers of an earlier run
    try:
        started = time.monotonic()
        s.up()
        print(f"\n[reliability] stack {s.project} healthy in {time.monotonic() - started:.1f} s "
              f"(API {s.api_url}, pgAdmin {s.pgadmin_url})")
        yield s
    finally:
        s.down("--volumes")


@pytest.fixture(scope="session")
def bodies(stack) -> BodyScanner:
    """Every response body the suite reads goes through here (checked for secret values)."""
    return BodyScanner(stack.secrets)


@pytest.fixture(scope="session")
def ops(stack, bodies) -> Iterator[StackOps]:
    o = StackOps(stack, bodies)
    yield o
    o.close()


@pytest.fixture(scope="session")
def results(request: pytest.FixtureRequest, docker) -> Iterator[Results]:
    """Rows for docs/RELIABILITY.md, written to test-artifacts/reliability/results.json."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("stack-logs-*.txt"):  # an earlier run's, not this stack's
        old.unlink()
    r = Results()
    r.meta["engine"] = docker("version", "--format", "{{.Server.Version}}", check=False).stdout.strip()
    git = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ARTIFACTS.parents[1],
                         capture_output=True, text=True, check=False)
    r.meta["revision"] = git.stdout.strip() or "unknown"
    request.config.stash[_RESULTS] = r
    yield r
    r.write(_STARTED[0])


@pytest.fixture
def row(results: Results, request: pytest.FixtureRequest):
    """Start this test's row in the results table (its outcome is filled in by the hook below)."""
    def make(scenario: str, **fields) -> dict:
        return results.add({"scenario": scenario, "test": request.node.nodeid, **fields})
    return make


_RESULTS = pytest.StashKey[Results]()
_RANK = {"running": 0, "passed": 1, "xfailed": 2, "xpassed": 3, "failed": 4}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    """Each row gets the worst outcome of the tests it sums up (rows match by node id prefix)."""
    report = yield
    results = item.config.stash.get(_RESULTS, None)
    if results is not None and (report.when == "call" or report.failed):
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else ("xpassed" if report.passed else "failed")
        else:
            outcome = report.outcome
        for r in results.rows:
            if item.nodeid.startswith(r.get("test", "\0")) and _RANK.get(outcome, 0) > _RANK[r["outcome"]]:
                r["outcome"] = outcome
    return report
