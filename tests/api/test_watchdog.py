"""The watchdog: a server that is alive but answers nothing stops itself, to be restarted.

The worker process is stopped with SIGSTOP, as a wedge would leave it: the main process lives
on, nothing answers, and Docker alone would never restart it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
import requests
from support import Database, Server, children, granian_workers, json_records

from app.watchdog import EXIT_WEDGED

TIMEOUT = 5  # WATCHDOG_TIMEOUT in these tests, the smallest it takes


@pytest.fixture
def watched(migrated: Database, tmp_path) -> Iterator[Server]:
    server = Server({**migrated.env(tmp_path), "WATCHDOG_TIMEOUT": str(TIMEOUT)}, tmp_path / "server.log")
    yield server
    for pid in children(server.process.pid) if server.process.poll() is None else []:
        os.kill(pid, signal.SIGCONT)
    server.stop()


def test_a_wedged_worker_makes_the_server_exit_for_a_restart(watched):
    time.sleep(2)  # the watchdog has had its first answer
    for pid in granian_workers(watched.process.pid):
        os.kill(pid, signal.SIGSTOP)
    started = time.monotonic()
    code = watched.process.wait(TIMEOUT + 20)
    assert code == EXIT_WEDGED
    # Silence for TIMEOUT seconds, then Granian's 8 s to stop its workers at most.
    assert time.monotonic() - started < TIMEOUT + 15
    events = [record.get("event") for record in json_records(watched.log_lines())]
    assert "server.wedged" in events


def test_a_busy_but_answering_server_is_left_alone(watched, api_key):
    deadline = time.monotonic() + TIMEOUT * 2
    auth = {"Authorization": f"Bearer {api_key}"}
    while time.monotonic() < deadline:
        assert requests.get(watched.url + "/items", params={"limit": 5}, headers=auth, timeout=5).status_code == 200
    assert watched.process.poll() is None
