"""A pytest plugin for running tests/api/test_hostile_input.py against the container stack.

Loaded with `-p reliability_plugin` in the subprocess that test_rel_10_hostile.py starts (with
TEST_API_URL pointing at the container). The tests that must change nothing compare a digest of
the items table before and after (tests/conftest.py, `table_digest`); under TEST_API_URL they ask
for the `served_table_digest` fixture, which this plugin provides: a digest of the container's
items table (psql in the postgres container), the database the requests actually reach. The
plugin counts the tests that compared one and those whose table moved, counts every response by
status, and keeps every response body in a file, for the secret scan at the end of the suite.

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


_digests: dict[str, list[str]] = {}  # test -> the digests it took, in order


@pytest.fixture
def served_table_digest(request: pytest.FixtureRequest):
    """Digests of the container's items table; every test takes one before and one after."""
    def digest() -> str:
        value = _psql.digest()
        _digests.setdefault(request.node.nodeid, []).append(value)
        return value
    return digest


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _psql.close()
    _bodies.close()
    compared = {test: taken for test, taken in _digests.items() if len(taken) >= 2}
    _stats["checked"] = len(compared)
    _stats["changed"] = sorted(test for test, taken in compared.items() if taken[0] != taken[-1])
    with open(os.environ["RELIABILITY_PLUGIN_OUT"], "w") as f:
        json.dump({**_stats, "statuses": dict(_stats["statuses"]), "no_answer": dict(_stats["no_answer"])}, f)
