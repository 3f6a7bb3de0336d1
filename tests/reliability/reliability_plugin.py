"""A pytest plugin for running tests/test_hostile_input.py against the container stack.

Loaded with `-p reliability_plugin` in the subprocess that test_rel_10_hostile.py starts (with
TEST_API_URL pointing at the container). That module's `unchanged` fixture compares the test
session's own throwaway cluster, which the container never writes to; this plugin adds the real
check: around every test that uses `unchanged`, a digest of the container's items table (psql in
the postgres container) must not move. It also counts every response by status and keeps every
response body in a file, for the secret scan at the end of the suite.

Environment: RELIABILITY_DOCKER (docker binary), RELIABILITY_PG_CONTAINER (container id),
RELIABILITY_PLUGIN_OUT (JSON summary written at the end), RELIABILITY_BODY_FILE (bodies).
"""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest
import requests
from reliability_support import Psql

_psql = Psql(os.environ["RELIABILITY_DOCKER"], lambda: os.environ["RELIABILITY_PG_CONTAINER"])
_stats: dict = {"requests": 0, "statuses": Counter(), "no_answer": Counter(), "checked": 0, "changed": []}
_bodies = open(os.environ["RELIABILITY_BODY_FILE"], "ab")  # noqa: SIM115 (closed at session finish)
_send = requests.Session.send


def _recording_send(self, request, **kwargs):
    _stats["requests"] += 1
    try:
        response = _send(self, request, **kwargs)
    except requests.Timeout:
        _stats["no_answer"]["timeout"] += 1
        raise
    except requests.ConnectionError:
        _stats["no_answer"]["connection"] += 1
        raise
    _stats["statuses"][str(response.status_code)] += 1
    _bodies.write(response.content + b"\n")
    return response


requests.Session.send = _recording_send


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    if "unchanged" not in item.fixturenames:
        return (yield)
    before = _psql.digest()
    result = yield  # a failing test raises here, and is reported as it is
    after = _psql.digest()
    _stats["checked"] += 1
    if after != before:
        _stats["changed"].append(item.nodeid)
        raise AssertionError(f"the container's items table changed: {before} -> {after}")
    return result


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _psql.close()
    _bodies.close()
    with open(os.environ["RELIABILITY_PLUGIN_OUT"], "w") as f:
        json.dump({**_stats, "statuses": dict(_stats["statuses"]), "no_answer": dict(_stats["no_answer"])}, f)
