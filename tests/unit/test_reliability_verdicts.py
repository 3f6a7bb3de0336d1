"""The scenarios' verdicts can fail: each promise, broken on purpose, is caught.

The fault and load scenarios hand what their clients saw to the pure functions of
reliability_verdicts.py. Here those functions get a record of a run that kept every promise
(no breach), then the same record with one thing broken: a 500 instead of a 503, a 503 without
its problem document or Retry-After, a hang, a dropped connection (the edge answers for an API
that is away: 502/504 problem+json), a lost or half-written write, a connection the server
closed, an answer dropped too long before SIGTERM. Each must be named.
No engine needed: these run with the unit tests.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

import pytest
from reliability_load import KeepAliveReport, Outcome, compare_writes
from reliability_verdicts import (
    Outage,
    Stop,
    judge_api_crash,
    judge_api_stop,
    judge_keepalive,
    judge_outages,
    unrestarted_breaches,
    writes_breaches,
)

POOL_TIMEOUT = 3.0


def _outcome(started: float, seconds: float = 0.02, status: int | None = 201, error: str | None = None) -> Outcome:
    name = f"w-{started:.3f}"
    sent = {"name": name, "description": None, "price": "1.50", "quantity": 2}
    o = Outcome(client=0, name=name, sent=sent, started=started, ended=started + seconds, status=status, error=error)
    if status == 201:
        o.item = {"id": int(started * 1000), **sent, "version": 1}
    elif status is not None:
        o.problem, o.retry_after = True, "1"
    return o


def _refused(started: float, seconds: float = 0.3) -> Outcome:
    return _outcome(started, seconds, status=503)


def _ticks(start: float, end: float, step: float = 0.1) -> list[float]:
    return [round(start + i * step, 3) for i in range(int((end - start) / step))]


# --------------------------------------------------------------------------- PostgreSQL away

# Stopped at 10 s (down at 11), started at 15, healthy at 16; the load goes on until 24.
STOP = Outage(fault=10, down=11, repair=15, healthy=16, end=24)


def _outage_run() -> list[Outcome]:
    return ([_outcome(t) for t in _ticks(0, 10)] + [_refused(t) for t in _ticks(10, 16)]
            + [_outcome(t) for t in _ticks(16, 24)])


def _at(outcomes: list[Outcome], t: float) -> Outcome:
    return min(outcomes, key=lambda o: abs(o.started - t))


def _set(t: float, **fields) -> Callable[[list[Outcome]], None]:
    """Change the outcome of the request sent nearest to `t` (`seconds`: how long it took)."""
    def change(outcomes: list[Outcome]) -> None:
        o = _at(outcomes, t)
        o.ended = o.started + fields.get("seconds", o.seconds)
        for k, v in fields.items():
            if k != "seconds":
                setattr(o, k, v)
    return change


def _recovery_late(outcomes: list[Outcome]) -> None:
    for o in outcomes:
        if 16 <= o.started < 22:
            o.status, o.problem, o.retry_after, o.item = 503, True, "1", None


def _never_back(outcomes: list[Outcome]) -> None:
    for o in outcomes:
        if o.started >= 16:
            o.status, o.problem, o.retry_after, o.item = 503, True, "1", None


def _no_refusal_while_stopped(outcomes: list[Outcome]) -> None:
    outcomes[:] = [o for o in outcomes if not 10 <= o.started < 16]


OUTAGE_BREAKS = {
    "a 500 instead of a 503": (_set(12, status=500), "refusals other than a 503"),
    "a 503 without a problem document": (_set(12, problem=False), "refusals other than a 503"),
    "a 503 without Retry-After": (_set(12, retry_after=None), "refusals other than a 503"),
    "a client timeout": (_set(12, status=None, error="timeout", seconds=10), "without an answer"),
    "a dropped connection": (_set(12, status=None, error="connection"), "without an answer"),
    "a 503 slower than the pool timeout": (_set(12, seconds=POOL_TIMEOUT + 2.5), "503s slower"),
    "a write sent while away answered late": (_set(10.5, status=201, seconds=6, problem=False),
                                              "answered after more than"),
    "a write acknowledged while stopped": (_set(12, status=201, problem=False), "other than 503 while PostgreSQL"),
    "no refusal while stopped": (_no_refusal_while_stopped, "no write was refused while"),
    "a write failing after the recovery bound": (_set(22, status=503, problem=True, retry_after="1"),
                                                 "writes failed more than"),
    "writes back only 6 s after healthy": (_recovery_late, "not back within"),
    "writes never back": (_never_back, "not back within"),
}


def test_an_outage_that_kept_its_promises_has_no_breach():
    assert judge_outages(_outage_run(), [STOP], fault="stop", pool_timeout=POOL_TIMEOUT).breaches == []


@pytest.mark.parametrize("broken", list(OUTAGE_BREAKS))
def test_an_outage_breaking_a_promise_is_caught(broken):
    change, expected = OUTAGE_BREAKS[broken]
    outcomes = _outage_run()
    change(outcomes)
    breaches = judge_outages(outcomes, [STOP], fault="stop", pool_timeout=POOL_TIMEOUT).breaches
    assert any(expected in b for b in breaches), breaches


# --------------------------------------------------------------------------- what PostgreSQL holds


def _stored(outcomes: list[Outcome]) -> list[dict]:
    return [{**o.sent, "id": o.item["id"], "version": 1} for o in outcomes if o.acked]


WRITE_BREAKS = {
    "a dropped write": (lambda rows: rows.pop(3), "acknowledged writes lost"),
    "a write stored under another id": (lambda rows: rows[3].update(id=-1), "stored or echoed other than sent"),
    "a half-written row": (lambda rows: rows[3].update(version=2), "half-written"),
    "a row nobody sent": (lambda rows: rows.append({**rows[0], "name": "stranger"}), "never sent"),
}


def test_writes_all_stored_as_sent_have_no_breach():
    outcomes = _outage_run()
    assert writes_breaches(compare_writes(outcomes, _stored(outcomes))) == []


@pytest.mark.parametrize("broken", list(WRITE_BREAKS))
def test_a_write_lost_or_changed_is_caught(broken):
    change, expected = WRITE_BREAKS[broken]
    outcomes = _outage_run()
    rows = _stored(outcomes)
    change(rows)
    breaches = writes_breaches(compare_writes(outcomes, rows))
    assert any(expected in b for b in breaches), breaches


def test_an_api_restart_is_caught():
    before = {"State": {"StartedAt": "2026-01-01T00:00:00Z"}, "RestartCount": 0}
    assert unrestarted_breaches(before, copy.deepcopy(before)) == []
    restarted = {"State": {"StartedAt": "2026-01-01T00:00:09Z"}, "RestartCount": 0}
    assert unrestarted_breaches(before, restarted) != []


# --------------------------------------------------------------------------- the API SIGKILLed

KILLED, HEALTHY = 10.0, 12.0


def _crash_run() -> list[Outcome]:
    """The edge answers 502 problem+json while the API is away (504 for one it could not reach in time)."""
    return ([_outcome(t) for t in _ticks(0, 10)]
            + [_outcome(t, 0.001, status=502) for t in _ticks(10, 11.9)] + [_outcome(11.95, 2, status=504)]
            + [_outcome(t) for t in _ticks(12, 16)])


CRASH_BREAKS = {
    "a 500": (_set(14, status=500), "answers other than 2xx"),
    "a 503": (_set(14, status=503), "answers other than 2xx"),
    "a 502 without a problem document (not the edge's)": (_set(11, problem=False), "answers other than 2xx"),
    "a client timeout": (_set(11, status=None, error="timeout", seconds=10), "without an answer"),
    "a dropped connection": (_set(11, status=None, error="connection"), "without an answer"),
    "a 502 before the kill": (_set(5, status=502, problem=True), "before the kill"),
    "a 502 once healthy again": (_set(13, status=502, problem=True), "after the API was healthy again"),
    "no write served afterwards": (lambda os: os.__setitem__(slice(None), [o for o in os if o.started < 12]),
                                   "no write was served"),
}


def test_a_crash_with_502s_only_in_the_gap_has_no_breach():
    assert judge_api_crash(_crash_run(), killed=KILLED, healthy=HEALTHY).breaches == []


@pytest.mark.parametrize("broken", list(CRASH_BREAKS))
def test_a_crash_breaking_a_promise_is_caught(broken):
    change, expected = CRASH_BREAKS[broken]
    outcomes = _crash_run()
    change(outcomes)
    breaches = judge_api_crash(outcomes, killed=KILLED, healthy=HEALTHY).breaches
    assert any(expected in b for b in breaches), breaches


# --------------------------------------------------------------------------- the API stopped

SIGTERM = 10.0
STOPPED = Stop(stopping=9.8, stopped=10.6, sigterm=SIGTERM, exited=10.3, exit_code=0, oom_killed=False,
               grace=15, drain=8)


def _stop_run() -> list[Outcome]:
    """A request sent 10 ms before SIGTERM, still unread, gets the edge's 502, as does every later one."""
    return ([_outcome(t) for t in _ticks(0, 9.9)]
            + [_outcome(9.95, 0.1), _outcome(9.99, 0.02, status=502)]
            + [_outcome(t, 0.001, status=502) for t in _ticks(10.01, 11)])


STOP_BREAKS = {
    "a 500": (_set(5, status=500), "answers other than 2xx"),
    "a 503 to a request in flight": (_set(9.95, status=503), "answered other than 201"),
    "a client timeout": (_set(10.5, status=None, error="timeout", seconds=10), "without an answer"),
    "a dropped connection": (_set(10.5, status=None, error="connection"), "without an answer"),
    "a failure before the stop": (_set(5, status=502, problem=True), "before the stop began"),
    "a request dropped 0.5 s before SIGTERM": (_set(9.5, status=502, problem=True, seconds=0.6), "before SIGTERM got no answer"),
}
STOP_STATE_BREAKS = {
    "no shutdown line": ({"sigterm": None}, "did not log its shutdown"),
    "killed at the end of the grace period": ({"exit_code": 137, "stopped": 25.0}, "exit code 137"),
    "a stop longer than the grace period": ({"stopped": 25.0}, "the stop took"),
    "workers that did not drain in time": ({"exited": 18.5}, "did not drain"),
    "an OOM kill": ({"oom_killed": True}, "OOM-killed: True"),
}


def test_a_stop_that_drained_has_no_breach():
    assert judge_api_stop(_stop_run(), STOPPED).breaches == []


@pytest.mark.parametrize("broken", list(STOP_BREAKS))
def test_a_stop_breaking_a_promise_to_clients_is_caught(broken):
    change, expected = STOP_BREAKS[broken]
    outcomes = _stop_run()
    change(outcomes)
    breaches = judge_api_stop(outcomes, STOPPED).breaches
    assert any(expected in b for b in breaches), breaches


@pytest.mark.parametrize("broken", list(STOP_STATE_BREAKS))
def test_a_stop_breaking_a_promise_about_the_container_is_caught(broken):
    fields, expected = STOP_STATE_BREAKS[broken]
    breaches = judge_api_stop(_stop_run(), replace(STOPPED, **fields)).breaches
    assert any(expected in b for b in breaches), breaches


# --------------------------------------------------------------------------- 256 keep-alive connections


def _keepalive_report() -> KeepAliveReport:
    return KeepAliveReport(connections=256, seconds=10, requests=4000, statuses=Counter({200: 3000, 201: 990, 503: 10}),
                           max_open=256)


KEEPALIVE_BREAKS = {
    "a connection closed by the server": ({"no_answer": Counter(closed=1)}, "without an answer"),
    "a connection refused": ({"no_answer": Counter(connect=1)}, "without an answer"),
    "a request that timed out": ({"no_answer": Counter(timeout=1)}, "without an answer"),
    "a connection closed after an answer": ({"closed_after_answer": 1}, "closed by the server after an answer"),
    "a 500": ({"statuses": Counter({200: 3000, 201: 990, 500: 1})}, "other than 200, 201 and 503"),
    "a 503 without problem+json": ({"bad_503": 1}, "without problem+json"),
    "connections never all open": ({"max_open": 200}, "were open at once"),
}


def test_a_keepalive_run_that_kept_its_promises_has_no_breach():
    assert judge_keepalive(_keepalive_report(), budget=4, samples=[1, 2, 4, 4, 3]) == []


@pytest.mark.parametrize("broken", list(KEEPALIVE_BREAKS))
def test_a_keepalive_run_breaking_a_promise_is_caught(broken):
    fields, expected = KEEPALIVE_BREAKS[broken]
    breaches = judge_keepalive(replace(_keepalive_report(), **fields), budget=4, samples=[1, 2, 4, 4, 3])
    assert any(expected in b for b in breaches), breaches


def test_more_database_connections_than_the_budget_are_caught():
    breaches = judge_keepalive(_keepalive_report(), budget=4, samples=[1, 2, 5, 4, 3])
    assert any("budget 4" in b for b in breaches), breaches
