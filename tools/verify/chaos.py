"""The --chaos drills: opt-in fault injection against the live stack, Compose or Swarm alike.

Two drills, registered in the check table like any check (so --list-checks
and the docs show them) but run only under --chaos, once, on the API:

- CHAOS-API-KILL SIGKILLs the API's main process from the host and expects
  it back healthy: by the restart policy (Compose) or as a new task (Swarm).
- CHAOS-DB-STOP stops PostgreSQL and expects the API's /health to answer 503
  (not hang, not crash), then 200 once PostgreSQL is back, without the API
  being restarted.

They act through the Target interface (main_pid, identity, stop, start,
refresh), which each orchestrator's target answers in its own terms.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable

from .model import API, FAIL, PASS, POSTGRES, WARN, Finding, Outcome
from .registry import Check, Variant, check, run_check
from .targets import Target

CHAOS_RESTART_BOUND = 90.0  # seconds for a killed API, or a stopped PostgreSQL, to be healthy again
CHAOS_HEALTH_BOUND = 45.0  # seconds for /health to turn 503, and later back to 200


def poll(what: Callable[[], bool], seconds: float, step: float = 1.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(step)
    return what()


def api_health_status(api: Target) -> int | None:
    try:
        return api.http_get("/health")[0]
    except (OSError, ValueError):
        return None


@check("CHAOS-API-KILL", "a crashed API comes back healthy", cis="5.15", services=(API,), live=True,
       drill=True, swarm=Variant(title="a crashed API task is replaced"))
def drill_kill_api(api: Target) -> Outcome:
    """A crash of the API (SIGKILL of its main process, from the host) is undone by the restart policy.

    `docker kill` would not do: the engine treats it as a manual stop and
    never restarts the container. Killing State.Pid from the host is what an
    OOM kill or a segfault looks like to the engine; it needs root on the
    engine's own host. On Swarm, a new task must replace the killed one.
    """
    api = api.refresh()
    refusal, pid = api.crash_refusal(), api.main_pid()
    if refusal:
        return FAIL, refusal
    if pid <= 0:
        return FAIL, "API container not running"
    if os.geteuid() != 0 or not os.path.exists(f"/proc/{pid}"):
        return WARN, "skipped: needs root on the engine's host (a local engine)"
    before, started = api.identity(), time.monotonic()
    os.kill(pid, signal.SIGKILL)
    if poll(lambda: (now := api.refresh()).ready() and now.identity() != before, CHAOS_RESTART_BOUND):
        return PASS, (f"killed pid {pid}; healthy again in {time.monotonic() - started:.0f}s "
                      f"({api.refresh().summary()})")
    return FAIL, (f"killed pid {pid}; not back healthy within {CHAOS_RESTART_BOUND:.0f}s "
                  f"({api.refresh().summary()})")


@check("CHAOS-DB-STOP", "API survives a PostgreSQL outage", services=(API,), live=True, drill=True)
def drill_db_outage(api: Target) -> Outcome:
    """Stop PostgreSQL: /health must say 503 (not hang, not crash), then recover alone, with no API restart.

    The API must ride out the outage without a restart (its container health
    check uses /health/live for that reason), and its pool must reconnect
    once PostgreSQL is back (started again, or replaced by Swarm).
    """
    db = api.stack[POSTGRES]
    before = api.refresh().identity()
    db.stop()
    try:
        saw_503 = poll(lambda: api_health_status(api) == 503, CHAOS_HEALTH_BOUND)
    finally:
        db.start()
    if not poll(lambda: db.refresh().ready(), CHAOS_RESTART_BOUND):
        return FAIL, "PostgreSQL did not come back healthy"
    if not saw_503:
        return FAIL, f"/health did not turn 503 within {CHAOS_HEALTH_BOUND:.0f}s of stopping PostgreSQL"
    if not poll(lambda: api_health_status(api) == 200, CHAOS_HEALTH_BOUND):
        return FAIL, f"/health not back to 200 within {CHAOS_HEALTH_BOUND:.0f}s of PostgreSQL's restart"
    if api.refresh().identity() != before:
        return FAIL, "the API restarted during the outage"
    return PASS, "/health 503 while PostgreSQL was stopped, 200 once it was back, API not restarted"


def run_drills(targets: dict[str, Target], drills: tuple[Check, ...], profile: str,
               out=sys.stderr) -> list[Finding]:
    """Run the drills on the API, after saying what they will do; each needs both services here."""
    api, db = targets.get(API), targets.get(POSTGRES)
    if api is None or db is None or not api.here() or not db.here():
        return [Finding(API, d.id, d.title, d.cis, FAIL, "needs the API and PostgreSQL running on this node")
                for d in drills]
    print(f"chaos: will SIGKILL the main process of {api.label()} from the host and wait up to "
          f"{CHAOS_RESTART_BOUND:.0f}s for it to come back healthy; then stop {db.label()}, expect /health "
          f"503, and 200 once PostgreSQL is back, with no API restart.", file=out, flush=True)
    return [run_check(d, api, profile) for d in drills]
