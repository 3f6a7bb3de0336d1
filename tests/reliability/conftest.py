"""Fixtures for the reliability suite: the real Compose stack, its containers, psql, results.

The stack is built as the container suite's is (tests/compose_stack.py: compose.yaml +
compose.prod.yaml, free loopback ports, secrets of its own, leftovers removed first, everything
removed at the end), under another project name (`items-rel`, or $RELIABILITY_PROJECT) so both
suites can run in one session. One difference: the edge's per-client limits are lifted, since
every client on this host is one address to it (reliability_support.ONE_ADDRESS_FOR_EVERYONE);
the scenarios about those limits restore the defaults. Without a Docker engine the tests skip,
except under CI=true, where they fail (the `docker` fixture of tests/conftest.py).

Tests that damage the stack (stop or kill a service, `down`) restore it before they return, so
the modules run in any subset; they are numbered in the order the full run wants: hostile input
first, faults next, exposure last (it scans everything the run produced).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import pytest
from compose_stack import Stack, new_stack, running_stack
from reliability_support import (
    ARTIFACTS,
    ONE_ADDRESS_FOR_EVERYONE,
    BodyScanner,
    Results,
    StackOps,
    secret_values,
)

from tools.docker_cli import Docker

_STARTED = [time.monotonic()]  # reset when the stack starts: the suite's own time


@pytest.fixture(scope="session")
def stack(docker: Docker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    settings = new_stack(docker, tmp_path_factory.mktemp("reliability-stack"), label="reliability",
                         project=os.environ.get("RELIABILITY_PROJECT", "items-rel"))
    settings.env.update(ONE_ADDRESS_FOR_EVERYONE)
    _STARTED[0] = time.monotonic()
    with running_stack(settings) as s:
        yield s


@pytest.fixture(scope="session")
def bodies(stack) -> BodyScanner:
    """Every response body the suite reads goes through here (checked for secret values)."""
    return BodyScanner(secret_values(stack))


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
