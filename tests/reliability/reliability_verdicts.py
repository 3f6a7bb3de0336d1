"""What each fault and load scenario promises, as pure functions of what its clients saw.

docs/RELIABILITY.md says, scenario by scenario, what a run must show. These functions hold those
promises: each takes what a scenario recorded (the outcome of every request, the times of its
faults, what PostgreSQL holds) and returns the promises that were broken, in words, empty when
all were kept. The scenario tests assert that the list is empty; tests/unit/test_reliability_verdicts.py feeds
the same functions doctored records (a 500 instead of a 503, a dropped connection, a lost
write, a connection the server closed) to show that every promise can fail. Nothing here talks
to Docker or HTTP, so those checks run in a second without an engine.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from reliability_load import KeepAliveReport, Outcome

SLACK = 2.0  # seconds over the pool timeout a 503 may take on a busy 2-core machine
RECOVERY_BOUND = 5.0  # seconds after PostgreSQL is healthy by which every write must succeed
# On SIGTERM Granian stops accepting and finishes every request it has read; a connection with
# no request read yet is closed (hyper's graceful shutdown). A request goes unanswered by the API
# (the edge answers 502 for it) only if it was still unread in a socket: sent less than this
# before SIGTERM. The API runs under a CPU
# limit (CFS, 100 ms periods): a throttled container waits at most a period or two to read.
UNREAD_BOUND = 0.2


def _examples(outcomes: Iterable[Outcome], limit: int = 10) -> list[str]:
    """A few outcomes, as status (or failure), problem+json or not, Retry-After, seconds taken."""
    return [f"{o.status or o.error} problem={o.problem} retry-after={o.retry_after} {o.seconds:.2f} s"
            for o in list(outcomes)[:limit]]


# --------------------------------------------------------------------------- acknowledged writes


def writes_breaches(writes: dict[str, Any]) -> list[str]:
    """`check_writes`' comparison of what the clients were told with what PostgreSQL holds."""
    breaches = []
    if writes["acked_lost"]:
        breaches.append(f"acknowledged writes lost: {writes['examples']['lost']}")
    if writes["acked_mismatch"] or writes["wrong_ack"]:
        breaches.append(f"acknowledged writes stored or echoed other than sent: {writes['examples']}")
    if writes["half_written"] or writes["unknown"]:
        breaches.append(f"stored rows half-written or never sent: {writes['examples']}")
    return breaches


def unrestarted_breaches(before: dict, after: dict, service: str = "the API") -> list[str]:
    """Two `docker inspect` records of one container: the same run of it (no restart)."""
    if (after["State"]["StartedAt"], after["RestartCount"]) != (before["State"]["StartedAt"], before["RestartCount"]):
        return [f"{service} was restarted (StartedAt {before['State']['StartedAt']} -> "
                f"{after['State']['StartedAt']}, RestartCount {before['RestartCount']} -> {after['RestartCount']})"]
    return []


# --------------------------------------------------------------------------- PostgreSQL away


@dataclass
class Outage:
    """When one outage's events happened (time.monotonic(), the clock of the outcomes)."""

    fault: float = 0.0  # `docker compose stop` or the SIGKILL
    down: float = 0.0  # stopped (after a SIGKILL: the kill itself)
    repair: float = 0.0  # `start` (after a SIGKILL: the kill; the restart policy repairs)
    healthy: float = 0.0  # PostgreSQL's health check passed again
    end: float = 0.0  # the load went on until then


@dataclass
class OutageVerdict:
    during: list[Outcome] = field(default_factory=list)  # answered while PostgreSQL was away
    away: list[Outcome] = field(default_factory=list)  # sent while it was stopping or down
    recoveries: list[float | None] = field(default_factory=list)  # healthy to writes back, per outage
    breaches: list[str] = field(default_factory=list)

    @property
    def answered_503(self) -> list[Outcome]:
        return [o for o in self.during if o.status == 503]


def judge_outages(outcomes: Sequence[Outcome], outages: Sequence[Outage], *, fault: str,
                  pool_timeout: float) -> OutageVerdict:
    """The promises of a PostgreSQL outage under writes (`fault` "stop" or "sigkill").

    - every refused write is a 503 problem+json with Retry-After, none slower than the pool
      timeout plus SLACK; no request goes without an answer (no client timeout, no dropped
      connection); every request sent while PostgreSQL was stopping or down is answered within
      that bound too, and (stopped) what was answered while it was down was all 503s;
    - within RECOVERY_BOUND of PostgreSQL being healthy writes succeed again, and every write
      sent after that succeeds.
    """
    outcomes = sorted(outcomes, key=lambda o: o.started)
    bound = pool_timeout + SLACK
    verdict = OutageVerdict()
    late: list[Outcome] = []
    for out in outages:
        in_cycle = [o for o in outcomes if out.fault <= o.started < out.end]
        # Answered while PostgreSQL was away: after it was down and before it was started again
        # (or, after the crash, before it was healthy: a restarted PostgreSQL may serve before its
        # health check says so, and those answers may be 201s).
        until = out.repair if fault == "stop" else out.healthy
        verdict.during += [o for o in in_cycle if out.down < o.ended <= until]
        verdict.away += [o for o in in_cycle if o.started <= out.repair]
        last_failure = max((o.started for o in in_cycle if o.status != 201), default=out.fault)
        back = min((o.ended for o in in_cycle if o.acked and o.started >= last_failure), default=None)
        verdict.recoveries.append(back - out.healthy if back is not None else None)
        late += [o for o in in_cycle if o.started >= out.healthy + RECOVERY_BOUND and not o.acked]

    breaches = verdict.breaches
    bad = [o for o in outcomes if o.status not in (None, 201) and not (o.status == 503 and o.problem and o.retry_after)]
    if bad:
        breaches.append(f"refusals other than a 503 problem+json with Retry-After: {_examples(bad)}")
    no_answer = Counter(o.error for o in outcomes if o.error)
    if no_answer:
        breaches.append(f"requests without an answer (hangs or dropped connections): {dict(no_answer)}")
    slow = [o for o in outcomes if o.status == 503 and o.seconds > bound]
    if slow:
        breaches.append(f"503s slower than the pool timeout: {[round(o.seconds, 2) for o in slow][:10]}")
    slow_away = [o for o in verdict.away if o.seconds > bound]
    if slow_away:
        breaches.append(f"requests sent while PostgreSQL was away answered after more than {bound:g} s: "
                        f"{[round(o.seconds, 2) for o in slow_away][:10]}")
    if fault == "stop" and not verdict.during:
        breaches.append("no write was refused while PostgreSQL was stopped")
    if fault == "stop" and [o for o in verdict.during if o.status != 503]:
        breaches.append("writes answered other than 503 while PostgreSQL was stopped: "
                        f"{_examples(o for o in verdict.during if o.status != 503)}")
    if late:
        breaches.append(f"{len(late)} writes failed more than {RECOVERY_BOUND:g} s after PostgreSQL was healthy: "
                        f"{_examples(late)}")
    known = [r for r in verdict.recoveries if r is not None]
    if len(known) != len(verdict.recoveries) or max(known, default=0) > RECOVERY_BOUND:
        breaches.append(f"writes not back within {RECOVERY_BOUND:g} s of PostgreSQL healthy: {verdict.recoveries}")
    return verdict


# --------------------------------------------------------------------------- the API away

# Behind the edge a client keeps its connection when the API goes away: the edge answers for the
# API, 502 problem+json (not reachable) or 504 (no answer in time: a connection to the address of
# a container that is gone waits for the edge's connect timeout). The API never sends either.
EDGE_AWAY = {502, 504}


def edge_away(o: Outcome) -> bool:
    """The edge's answer for an API that is away."""
    return o.status in EDGE_AWAY and o.problem


def _unanswered(outcomes: Iterable[Outcome]) -> list[str]:
    """The promise that every request is answered: the edge answers even for an API that is away."""
    errors = Counter(o.error for o in outcomes if o.error)
    return [f"requests without an answer (the edge answers every one): {dict(errors)}"] if errors else []



@dataclass
class CrashVerdict:
    back: float | None  # when the first write after the last failure was served
    breaches: list[str]


def judge_api_crash(outcomes: Sequence[Outcome], *, killed: float, healthy: float) -> CrashVerdict:
    """The API's main process SIGKILLed at `killed`, healthy again at `healthy`: clients may get the
    edge's 502/504 problem+json during that gap only (none before the kill, none once the API is
    healthy), every request is answered, and nothing else than 2xx; and writes are served again."""
    away = [o for o in outcomes if edge_away(o)]
    # Back: the first write served after the last failed one (the gap may start a few ms after the
    # kill: the kernel takes a moment to end every process of the container).
    last_away = max((o.started for o in away), default=killed)
    back = min((o.ended for o in outcomes if o.acked and o.started >= last_away), default=None)
    breaches = _unanswered(outcomes)
    other = [o for o in outcomes if o.status is not None and not 200 <= o.status < 300 and not edge_away(o)]
    if other:
        breaches.append(f"answers other than 2xx and the edge's 502/504 problem+json: {_examples(other)}")
    before = [o for o in away if o.ended < killed]
    if before:
        breaches.append(f"{len(before)} 502/504s before the kill: {_examples(before)}")
    after = [o for o in away if o.started >= healthy]
    if after:
        breaches.append(f"{len(after)} 502/504s on requests sent after the API was healthy again: "
                        f"{_examples(after)}")
    if back is None:
        breaches.append("no write was served after the last 502/504")
    return CrashVerdict(back, breaches)


@dataclass
class StopVerdict:
    in_flight: list[Outcome]  # sent before Granian got SIGTERM, ended (answered or not) after
    breaches: list[str]

    @property
    def unanswered(self) -> list[Outcome]:
        """In flight at SIGTERM and not answered by the API: the edge said it was away."""
        return [o for o in self.in_flight if o.error or edge_away(o)]


@dataclass
class Stop:
    """What `docker compose stop flask-api` took (time.monotonic() unless said otherwise)."""

    stopping: float  # `stop` issued
    stopped: float  # `stop` returned
    sigterm: float | None  # Granian's "Shutting down" log line
    exited: float | None  # the container's FinishedAt
    exit_code: int
    oom_killed: bool
    grace: float  # stop_grace_period
    drain: float  # Granian's workers_kill_timeout: how long workers get to finish


def judge_api_stop(outcomes: Sequence[Outcome], stop: Stop) -> StopVerdict:
    """`docker compose stop` of the API under writes: every request answered, with 2xx or, once
    the API takes no more, the edge's 502/504 problem+json; every request in flight at SIGTERM
    answered 201 by the API, except one sent less than UNREAD_BOUND before it; no failure before
    the stop; the container exits with 0 within its grace period, the workers having drained
    within their kill timeout."""
    in_flight = [o for o in outcomes if stop.sigterm and o.started < stop.sigterm < o.ended]
    verdict = StopVerdict(in_flight, _unanswered(outcomes))
    breaches = verdict.breaches
    other = [o for o in outcomes if o.status is not None and not 200 <= o.status < 300 and not edge_away(o)]
    if other:
        breaches.append(f"answers other than 2xx and the edge's 502/504 problem+json: {_examples(other)}")
    early = [o for o in outcomes if (o.error or edge_away(o)) and o.ended < stop.stopping]
    if early:
        breaches.append(f"requests failed before the stop began: {_examples(early)}")
    if stop.sigterm is None:
        breaches.append("Granian did not log its shutdown")
    wrong = [o for o in in_flight if o.status is not None and not o.acked and not edge_away(o)]
    if wrong:
        breaches.append(f"requests in flight at SIGTERM answered other than 201: {_examples(wrong)}")
    dropped = [o for o in verdict.unanswered if stop.sigterm - o.started > UNREAD_BOUND]
    if dropped:
        breaches.append(f"{len(dropped)} requests sent more than {UNREAD_BOUND * 1000:.0f} ms before SIGTERM got no "
                        f"answer from the API: sent {[round(stop.sigterm - o.started, 3) for o in dropped]} s before")
    if stop.stopped - stop.stopping >= stop.grace:
        breaches.append(f"the stop took {stop.stopped - stop.stopping:.1f} s (grace {stop.grace:g} s)")
    if stop.exit_code != 0 or stop.oom_killed:
        breaches.append(f"exit code {stop.exit_code} (137: killed), OOM-killed: {stop.oom_killed}")
    if stop.sigterm is not None and (stop.exited is None or stop.exited - stop.sigterm >= stop.drain):
        breaches.append(f"the workers did not drain within their {stop.drain:g} s: SIGTERM to exit "
                        f"{'?' if stop.exited is None else round(stop.exited - stop.sigterm, 1)} s")
    return verdict


# --------------------------------------------------------------------------- many connections


def judge_keepalive(report: KeepAliveReport, *, budget: int, samples: Sequence[int]) -> list[str]:
    """256 keep-alive connections: all open at once, each kept (the server never closes or refuses
    one, nor lets a request time out), only 200, 201 and 503 problem+json with Retry-After, and
    PostgreSQL never sees more app connections than the pool budget."""
    breaches = []
    if report.max_open != report.connections:
        breaches.append(f"only {report.max_open} of {report.connections} connections were open at once")
    if report.no_answer:
        breaches.append(f"requests without an answer (connect: refused, closed: closed by the server, "
                        f"timeout: a hang): {dict(report.no_answer)}")
    if report.closed_after_answer:
        breaches.append(f"{report.closed_after_answer} connections closed by the server after an answer")
    if not set(report.statuses) <= {200, 201, 503}:
        breaches.append(f"answers other than 200, 201 and 503: {dict(report.statuses)}")
    if report.bad_503:
        breaches.append(f"{report.bad_503} 503s without problem+json and Retry-After")
    if not (report.statuses[200] > 0 and report.statuses[201] > 0):
        breaches.append(f"no listing or no write was served: {dict(report.statuses)}")
    if len(samples) < 5:
        breaches.append(f"too few pg_stat_activity samples ({len(samples)})")
    elif max(samples) > budget:
        breaches.append(f"{max(samples)} app connections, budget {budget}")
    return breaches
