"""BACKUP_SYNC=on with no standby confirming: writes answered 503 within the bound, never hung.

PostgreSQL is told to wait for a synchronous standby named as Barman's receiver, which never
connects here (the backup service's role in the stack), so every commit would wait forever.
The API must bound each write (DB_SYNC_COMMIT_TIMEOUT), answer 503 problem+json, never a 2xx
for a write the standby did not confirm, keep answering reads, and write again by itself once
commits are confirmed (here: the setting cleared; the real backup service coming back is
tests/reliability/test_rel_60_backups.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import support
from pgcluster import Cluster
from support import Api, Server

# Seconds the API waits for the standby in these tests; a 503 must come within it (plus slack).
SYNC_TIMEOUT = 1.0
SLACK = 2.0
STANDBY = "barman_receive_wal"


@pytest.fixture
def sync_stack(tmp_path) -> Iterator[tuple[Cluster, Server, Api]]:
    with support.own_stack(tmp_path, BACKUP_SYNC="on", DB_SYNC_COMMIT_TIMEOUT=str(SYNC_TIMEOUT)) as stack:
        yield stack


def standby(cluster: Cluster, names: str) -> None:
    """Name the synchronous standby (or none), and wait until the server goes by it.

    pg_reload_conf() only signals: the checkpointer, which tells commits whether to wait, and the
    API's sessions re-read the setting on their next turn, so a commit right after it may not."""
    cluster.psql(f"ALTER SYSTEM SET synchronous_standby_names = '{names}'; SELECT pg_reload_conf();",
                 database="postgres")
    deadline = time.monotonic() + 10
    while cluster.psql("SHOW synchronous_standby_names", database="postgres").strip() != names:
        assert time.monotonic() < deadline, "the server did not reload its configuration within 10 s"
        time.sleep(0.05)
    time.sleep(0.5)  # the checkpointer and the API's sessions have each had their turn by then


def timed(call) -> tuple[object, float]:
    start = time.monotonic()
    answer = call()
    return answer, time.monotonic() - start


def test_an_unconfirmed_write_is_a_503_within_the_bound_and_reads_still_work(sync_stack):
    cluster, server, client = sync_stack
    before = client.create()
    standby(cluster, STANDBY)
    answer, seconds = timed(lambda: client.post("/items", json={"name": "unconfirmed", "price": 1}))
    assert answer.status_code == 503, answer.text
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert "may or may not be kept" in answer.json()["detail"]
    assert int(answer.headers["Retry-After"]) >= 1
    assert seconds < SYNC_TIMEOUT + SLACK, f"the 503 took {seconds:.1f} s"
    read, seconds = timed(lambda: client.get(f"/items/{before['id']}"))
    assert read.status_code == 200 and seconds < SLACK


def test_writes_are_refused_at_once_while_paused_then_resume_by_themselves(sync_stack):
    cluster, server, client = sync_stack
    item = client.create()
    standby(cluster, STANDBY)
    assert client.post("/items", json={"name": "first", "price": 1}).status_code == 503
    for _ in range(5):
        answer, seconds = timed(lambda: client.patch(f"/items/{item['id']}", json={"quantity": 7},
                                                     headers={"Content-Type": "application/merge-patch+json"}))
        assert answer.status_code == 503, answer.text
        assert seconds < SYNC_TIMEOUT + SLACK, f"a paused write took {seconds:.1f} s"
    assert client.get("/items").status_code == 200
    standby(cluster, "")
    deadline = time.monotonic() + 10
    while (answer := client.post("/items", json={"name": "after", "price": 1})).status_code != 201:
        assert answer.status_code == 503 and time.monotonic() < deadline, answer.text
        time.sleep(0.2)
    assert client.get(f"/items/{item['id']}").json()["quantity"] == item["quantity"]
