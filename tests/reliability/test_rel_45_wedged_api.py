"""A wedged API (process alive, answering nothing) is restarted by itself within 90 s.

Docker restarts containers whose main process exits, never unhealthy ones, and no container has
the Docker socket. The API's watchdog (app/watchdog.py) is what acts: Granian's main process
probes its own /health/live and, after WATCHDOG_TIMEOUT seconds without an answer, stops the
server and exits, and `restart: unless-stopped` starts it again. The drill wedges the API from the
host by SIGSTOPping its Granian workers, then times how long until /health/live answers again.
"""

from __future__ import annotations

import time

import pytest
import requests
from reliability_support import Results

BOUND = 90  # seconds from the wedge to service again


def _first_answer(url: str, within: float) -> float | None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/health/live", timeout=2).status_code == 200:
                return time.monotonic()
        except requests.RequestException:
            pass
        time.sleep(0.2)
    return None


def test_a_wedged_api_is_restarted_within_90_s(stack, ops, row):
    before = ops.inspect("flask-api")
    assert _first_answer(stack.api_url, 30), "the API does not answer before the drill"
    time.sleep(2)  # the watchdog has had an answer since the API started
    wedged = time.monotonic()
    stopped = ops.stop_workers()
    try:
        silent = requests.get(stack.api_url + "/health/live", timeout=2)
        pytest.fail(f"the wedged API still answered {silent.status_code}")
    except requests.RequestException:
        pass
    back = _first_answer(stack.api_url, BOUND + 30)
    after = ops.inspect("flask-api")
    healthy = ops.wait_healthy("flask-api", timeout=120)
    result = row("API wedged (its workers SIGSTOPped from the host)", requests=None, statuses={},
                 no_answer={}, recovery=f"{back - wedged:.1f} s to /health/live answering" if back else "never",
                 details={"stopped workers": len(stopped),
                          "watchdog timeout": f"{ops.setting('WATCHDOG_TIMEOUT', '30')} s",
                          "restarts": after["RestartCount"] - before["RestartCount"],
                          "healthy again after": f"{healthy - wedged:.1f} s"})
    Results.show(result)
    assert back is not None and back - wedged < BOUND, f"no answer within {BOUND} s of the wedge"
    assert after["RestartCount"] == before["RestartCount"] + 1, "the container was not restarted"
