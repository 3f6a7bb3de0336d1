"""The API container goes away under a sustained write load: crashed, or stopped on purpose.

The clients go through the edge, which stays up: where they met refused or dropped connections
before it, the edge now answers for the API, 502 problem+json (504 when it tried an address that
had gone away until its connect timeout), and every request gets an answer.

- SIGKILL of its main process from the host (State.Pid; `docker kill` would count as a manual
  stop and the restart policy would not act): `restart: unless-stopped` brings it back healthy;
  meanwhile clients get 2xx or the edge's 502/504, the latter only during the gap: none before
  the kill, none once it is healthy again (`judge_api_crash`).
- `docker compose stop flask-api`: Granian stops accepting and finishes every request it has
  read, so nothing is answered but 2xx and the edge's 502/504, and only a request sent in the last
  moment before SIGTERM, still unread in its socket, may go unanswered by the API (`UNREAD_BOUND`);
  the workers drain within Granian's kill timeout (app/serve.py) and the container exits cleanly
  within its grace period (stop_grace_period, measured) (`judge_api_stop`). It is started again
  afterwards.

Either way every acknowledged write is stored exactly as sent (`check_writes`).
"""

from __future__ import annotations

import re
import time
from datetime import datetime

from reliability_load import WriteLoad, check_writes
from reliability_support import ARTIFACTS, Results, scaled
from reliability_verdicts import (
    UNREAD_BOUND,
    Stop,
    edge_away,
    judge_api_crash,
    judge_api_stop,
    writes_breaches,
)

from app.serve import WORKERS_KILL_TIMEOUT

CLIENT_TIMEOUT = 10


def test_api_sigkill_under_sustained_writes(stack, ops, bodies, row):
    before = ops.inspect("flask-api")
    clients = int(scaled(4, 4))
    load = WriteLoad(stack.api_url, stack.api_key, bodies, clients=clients, timeout=CLIENT_TIMEOUT,
                     max_seconds=180)
    with load:
        load.wait_acks(20, timeout=30)
        killed, killed_at = time.monotonic(), time.time()
        ops.sigkill_main_process("flask-api")
        healthy = ops.wait_healthy("flask-api", started_after=before["State"]["StartedAt"], timeout=120)
        load.wait_until(lambda os: any(o.acked and o.started >= healthy for o in os), 30,
                        "a write acknowledged after the API was healthy again")
        time.sleep(scaled(2))
    load.save_timeline(ARTIFACTS / "timeline-api-sigkill.json", {"kill": killed, "healthy": healthy})
    log = stack.compose("logs", "--no-color", "--timestamps", "--since", f"{killed_at - 1:.0f}", "flask-api",
                        check=False).stdout
    (ARTIFACTS / "api-log-after-sigkill.txt").write_text(
        "\n".join(line for line in log.splitlines() if '"app.request"' not in line) + "\n")
    writes = check_writes(load, ops.psql)
    after = ops.inspect("flask-api")
    verdict = judge_api_crash(load.outcomes, killed=killed, healthy=healthy)
    result = row(
        "API main process SIGKILLed (from the host) under writes", requests=len(load.outcomes),
        statuses=load.statuses(), no_answer=load.no_answer(), acked=writes["acked"],
        acked_lost=writes["acked_lost"],
        recovery=f"{verdict.back - killed:.1f} s to the first write served" if verdict.back else "never",
        details={"clients": clients, "restart policy": before["HostConfig"]["RestartPolicy"]["Name"],
                 "healthy again after": f"{healthy - killed:.1f} s",
                 "the edge's 502/504": f"{sum(edge_away(o) for o in load.outcomes)}, sent "
                                       f"{_span([o.started - killed for o in load.outcomes if edge_away(o)])} s "
                                       f"after the kill",
                 "restarts": after["RestartCount"] - before["RestartCount"],
                 "stored, unacknowledged": writes["unacked_stored"]},
    )
    Results.show(result)

    breaches = writes_breaches(writes) + verdict.breaches
    assert not breaches, "\n".join(breaches)
    assert after["RestartCount"] == before["RestartCount"] + 1, "the restart policy did not act"
    assert after["State"]["Health"]["Status"] == "healthy" and not after["State"]["OOMKilled"]
    ops.api_ok(30)


def _span(values: list[float]) -> str:
    return f"{min(values):.2f}–{max(values):.2f}" if values else "–"


def _sigterm_seen(logs: str) -> float | None:
    """Wall-clock time of Granian's "Shutting down granian" line: when SIGTERM reached it."""
    for line in logs.splitlines():
        if "Shutting down granian" in line:
            match = re.search(r'"timestamp": "([^"]+)"', line)
            if match:
                return datetime.fromisoformat(match.group(1)).timestamp()
    return None


def test_compose_stop_api_under_sustained_writes(stack, ops, bodies, row, results):
    before = ops.inspect("flask-api")
    grace = before["Config"].get("StopTimeout") or 10
    # More clients than the API has threads, without pauses: requests are always in flight or queued.
    clients = min(16, int(scaled(8, 8)))
    load = WriteLoad(stack.api_url, stack.api_key, bodies, clients=clients, timeout=CLIENT_TIMEOUT, pause=0,
                     max_seconds=180)
    try:
        with load:
            load.wait_acks(20, timeout=30)
            stopping = time.monotonic()
            stack.compose("stop", "flask-api", timeout=grace + 60)
            stopped = time.monotonic()
            time.sleep(0.5)  # a moment of the edge answering for an API that is gone
        load.save_timeline(ARTIFACTS / "timeline-api-stop.json", {"stop": stopping, "stopped": stopped})
        state = ops.state("flask-api")
        # stdout and stderr (Granian and Python write tracebacks there), this run of the container only
        logs = stack.compose("logs", "--no-color", "--since", before["State"]["StartedAt"], "flask-api",
                             check=False).stdout
    finally:
        restart = time.monotonic()
        stack.compose("start", "flask-api", timeout=120)
        back = ops.wait_healthy("flask-api", started_after=before["State"]["StartedAt"], timeout=120)
        ops.api_ok(30)
    writes = check_writes(load, ops.psql)

    sigterm_wall = _sigterm_seen(logs)
    sigterm = load.monotonic(sigterm_wall) if sigterm_wall else None
    exited = load.monotonic(_finished(state)) if state.get("FinishedAt", "").startswith("2") else None
    verdict = judge_api_stop(load.outcomes, Stop(
        stopping=stopping, stopped=stopped, sigterm=sigterm, exited=exited, exit_code=state["ExitCode"],
        oom_killed=state["OOMKilled"], grace=grace, drain=WORKERS_KILL_TIMEOUT))
    in_flight = verdict.in_flight
    result = row(
        "API stopped (`docker compose stop flask-api`) under writes", requests=len(load.outcomes),
        statuses=load.statuses(), no_answer=load.no_answer(), acked=writes["acked"],
        acked_lost=writes["acked_lost"],
        recovery=f"exited in {stopped - stopping:.1f} s (grace {grace} s); healthy {back - restart:.1f} s "
                 f"after `start`",
        details={"clients": clients, "exit code": state["ExitCode"],
                 "in flight when Granian got SIGTERM": f"{len(in_flight)}: "
                 f"{sum(o.acked for o in in_flight)} answered 201, {len(verdict.unanswered)} "
                 f"not answered by the API" if sigterm else "(no shutdown line in the log)",
                 "sent before SIGTERM, not answered by the API": (
                     ", ".join(f"{(sigterm - o.started) * 1000:.0f}" for o in verdict.unanswered)
                     + f" ms before (bound {UNREAD_BOUND * 1000:.0f} ms)" if verdict.unanswered else "none"),
                 "stored, unacknowledged": writes["unacked_stored"],
                 "SIGTERM to exit": (f"{exited - sigterm:.1f} s (workers get {WORKERS_KILL_TIMEOUT} s)"
                                     if sigterm and exited else "?"),
                 "traceback in the shutdown log": "yes" if "Traceback" in logs else "no"},
    )
    Results.show(result)
    if "Traceback" in logs:
        results.note("On `docker compose stop flask-api` the API logs a Python traceback while exiting "
                    "(`PythonFinalizationError: cannot join thread at interpreter shutdown` from "
                    "`ConnectionPool.__del__`): the worker's pool is never closed before the interpreter "
                    "shuts down. The exit is still clean (code 0, well within the grace period); closing the "
                    "pool when the worker stops would end its connections politely and keep the log clean.")

    breaches = writes_breaches(writes) + verdict.breaches
    assert not breaches, "\n".join(breaches)


def _finished(state: dict) -> float:
    stamp = state["FinishedAt"]
    head, _, frac = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float("0." + (frac or "0"))
