"""The monitoring profile's check: Prometheus scrapes every target it is configured for.

An alert rule is silent about what Prometheus cannot scrape: a target down (an exporter
stopped, a renamed service, a metrics port gone) blinds every alert built on it. So when the
profile runs, the verifier asks Prometheus itself, on its published port, for its active
targets and their last scrape. The container checks (user, read-only, limits ...) apply to
Prometheus and the exporters as to every service (checks.py). Registered after edge.py's.
"""

from __future__ import annotations

import json

from .checks import get
from .model import FAIL, PROMETHEUS, Outcome, result
from .registry import check
from .targets import Target


def down_targets(answer: dict) -> tuple[int, list[str]]:
    """(how many active targets, "job instance: error" for each whose last scrape failed) of
    Prometheus' /api/v1/targets answer."""
    active = answer["data"]["activeTargets"]
    down = [f"{t['labels'].get('job')} {t['labels'].get('instance')}: {t.get('lastError') or t['health']}"
            for t in active if t.get("health") != "up"]
    return len(active), down


@check("PROM-TARGETS", "every Prometheus target is up", services=(PROMETHEUS,), live=True, swarm=None)
def check_prometheus_targets(t: Target) -> Outcome:
    """A target Prometheus cannot scrape blinds every alert built on its metrics."""
    status, body = get(t, "/api/v1/targets?state=active")
    if status != 200:
        return FAIL, body if status is None else f"/api/v1/targets answered {status}"
    try:
        count, down = down_targets(json.loads(body))
    except (ValueError, KeyError, TypeError) as e:
        return FAIL, f"unreadable /api/v1/targets answer: {e}"
    if not count:
        return FAIL, "no active target"
    return result(not down, f"{count} targets up", "; ".join(down)[:200])
