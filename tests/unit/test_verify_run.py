"""The verifier's shared machinery: the check table, --list-checks, docs/verify.md, waiting, the drills.

No engine: the table is read from the code; the wait loop and the chaos
drills run on scripted targets (the same drills serve Compose and Swarm).
"""

from __future__ import annotations

import io
import json

import pytest

from tools import verify_stack as cli
from tools.verify import chaos
from tools.verify.chaos import drill_db_outage, drill_kill_api, run_drills
from tools.verify.model import API, FAIL, PASS, POSTGRES, SERVICES
from tools.verify.registry import check, table
from tools.verify.report import DOC, documented_table, markdown_table, with_table
from tools.verify.run import COMPOSE, SWARM, Orchestrator, wait
from tools.verify.targets import Target

REGENERATE = "make verify-docs (or .venv/bin/python tools/verify_stack.py --update-docs)"


def infos():
    return [entry.info() for entry in table()]


def test_docs_table_is_the_codes():
    documented = documented_table(DOC.read_text())
    assert documented == markdown_table(infos()), (
        f"docs/verify.md's check table differs from the checks in tools/verify; regenerate it: {REGENERATE}")


def test_markdown_listing_is_the_docs_table(capsys):
    assert cli.main(["--list-checks", "--markdown"]) == 0
    assert capsys.readouterr().out == markdown_table(infos())


def test_text_listing_gives_id_cis_what_and_why_of_every_check(capsys):
    assert cli.main(["--list-checks"]) == 0
    out = capsys.readouterr().out
    for info in infos():
        assert f"{info.id}  CIS {info.cis or '-'};" in out
        assert f"  asks: {info.what}\n" in out and f"  why:  {info.why}\n" in out
    assert "On Swarm, desired tasks running: Swarm keeps" in out


def test_json_listing_in_table_order(capsys):
    assert cli.main(["--list-checks", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["benchmark"] == "CIS Docker Benchmark 1.6.0"
    checks = {c["id"]: c for c in listed["checks"]}
    assert [c["id"] for c in listed["checks"]] == [e.id for e in table()]
    assert {k: v for k, v in checks["READ-ONLY"].items() if k != "why"} == {
        "id": "READ-ONLY", "cis": "5.13", "what": "root filesystem is read-only",
        "on": ["compose", "swarm"], "profiles": ["prod"], "services": None, "live": False, "chaos": False,
        "swarm": None}
    assert checks["PLACEMENT"]["on"] == ["swarm"]
    assert checks["PLACEMENT"]["services"] == ["postgres", "pgadmin"]
    assert checks["CHAOS-API-KILL"]["chaos"] and checks["CHAOS-API-KILL"]["cis"] == "5.15"
    assert all(c["why"] for c in listed["checks"]), "every check says why"


def test_markdown_goes_only_with_list_checks():
    with pytest.raises(SystemExit) as e:
        cli.parse_args(["--markdown"])
    assert e.value.code == 2


def test_update_docs_rewrites_only_between_the_markers():
    text = "# title\n\nbefore\n<!-- verify-checks:start -->\nold\n<!-- verify-checks:end -->\nafter\n"
    new = with_table(text, "| a |\n")
    assert new == text.replace("old\n", "| a |\n")
    assert documented_table(new) == "| a |\n"
    with pytest.raises(ValueError, match="markers"):
        with_table("no markers here", "| a |\n")


def test_one_table_gives_each_orchestrator_its_checks():
    compose, swarm = [c.id for c in COMPOSE.checks], [c.id for c in SWARM.checks]
    assert compose == [e.id for e in table() if e.compose and not e.drill]
    assert set(swarm) - set(compose) == {"UPDATE-POLICY", "PLACEMENT", "SECRETS-OWNER", "CONN-BUDGET"}
    # A check runs on Swarm where the stack has one of its services (the edge's checks once it has
    # an edge), unless it is for Compose only: the backup service's and the monitoring profile's,
    # which Swarm does not have yet.
    compose_only = {e.id for e in table() if e.compose and not e.drill and not e.swarm}
    assert compose_only == {"BACKUP-STREAMING", "BACKUP-SYNC", "BACKUP-CHECK", "BACKUP-VOLUME", "PROM-TARGETS"}
    assert set(compose) - set(swarm) == compose_only | {c.id for c in COMPOSE.checks
                                                        if not set(c.services) & set(SWARM.services)}
    titles = {c.id: c.title for c in SWARM.checks}
    assert titles["RUNNING"] == "desired tasks running"  # a variant's own title
    assert titles["USER"] == "configured user is set and not root"  # the container check's
    drills = ["CHAOS-API-KILL", "CHAOS-DB-STOP"]
    assert [d.id for d in COMPOSE.drills] == [d.id for d in SWARM.drills] == drills


def test_a_check_id_is_registered_once():
    with pytest.raises(ValueError, match="RUNNING is registered twice"):
        check("RUNNING", "again")(lambda t: (PASS, ""))


class Scripted(Target):
    """A target whose health answers come from a script, one per load."""

    def __init__(self, service, words):
        super().__init__(service, {"State": {"Running": True}})
        self.words = words

    def health(self):
        return self.words[0]


def test_wait_loads_until_every_service_is_ready(monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)
    rounds = iter([["starting", "healthy"], ["healthy", "healthy"]])

    def load(client, name):
        words = next(rounds)
        return {s: Scripted(s, [w]) for s, w in zip((API, POSTGRES), words)}

    on = Orchestrator("compose", "Stack", (API, POSTGRES), "no container", load, lambda: "x",
                      lambda targets: "prod")
    out = io.StringIO()
    targets = wait(on, None, "x", 60, out)
    assert targets[API].ready()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("waiting up to ") and lines[0].endswith(f"{API} starting, {POSTGRES} healthy")
    assert lines[-1].startswith(f"waited: {API} healthy, {POSTGRES} healthy")


def test_drills_need_the_api_and_postgres_here():
    targets = {s: Target(s, {"State": {"Running": True}}) for s in SERVICES}  # no live containers
    out = io.StringIO()
    findings = run_drills(targets, COMPOSE.drills, "prod", out)
    assert [(f.id, f.result) for f in findings] == [("CHAOS-API-KILL", FAIL), ("CHAOS-DB-STOP", FAIL)]
    assert findings[0].detail == "needs the API and PostgreSQL running on this node"
    assert out.getvalue() == ""  # nothing announced, nothing done


class Drilled(Target):
    """A live-looking target with scripted /health answers and identities; records what is done to it.

    The last scripted answer repeats.
    """

    def __init__(self, service, statuses=(200,), identities=("a",), refusal=None):
        super().__init__(service, {"State": {"Running": True, "Pid": 4321}, "Name": f"/{service}-1"})
        self.statuses, self.identities = list(statuses), list(identities)
        self.refusal, self.done = refusal, []

    def refresh(self):
        return self

    def ready(self):
        return True

    def identity(self):
        return self.identities.pop(0) if len(self.identities) > 1 else self.identities[0]

    def http_get(self, path):
        return (self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]), ""

    def crash_refusal(self):
        return self.refusal

    def stop(self):
        self.done.append("stop")

    def start(self):
        self.done.append("start")


@pytest.fixture
def fast_drills(monkeypatch):
    monkeypatch.setattr(chaos, "CHAOS_HEALTH_BOUND", 0.05)
    monkeypatch.setattr(chaos, "CHAOS_RESTART_BOUND", 0.05)
    monkeypatch.setattr(chaos.time, "sleep", lambda s: None)


def outage(api_statuses, api_identities=("a",)):
    api, db = Drilled(API, api_statuses, api_identities), Drilled(POSTGRES)
    api.stack = db.stack = {API: api, POSTGRES: db}
    return drill_db_outage(api), db.done


def test_outage_drill_passes_on_503_then_200_without_an_api_restart(fast_drills):
    assert outage([503, 200]) == (
        (PASS, "/health 503 while PostgreSQL was stopped, 200 once it was back, API not restarted"),
        ["stop", "start"])


def test_outage_drill_fails_when_the_api_restarted(fast_drills):
    assert outage([503, 200], ["a", "b"])[0] == (FAIL, "the API restarted during the outage")


def test_outage_drill_fails_without_503_and_still_brings_postgres_back(fast_drills):
    (result, detail), done = outage([200])
    assert result == FAIL and detail.startswith("/health did not turn 503 within")
    assert done == ["stop", "start"]


def test_kill_drill_kills_nothing_when_the_restart_policy_would_leave_the_api_down(monkeypatch, fast_drills):
    killed = []
    monkeypatch.setattr(chaos.os, "kill", lambda pid, sig: killed.append(pid))
    api = Drilled(API, refusal="restart policy 'no': a crash would leave it down (not killed)")
    assert drill_kill_api(api) == (FAIL, "restart policy 'no': a crash would leave it down (not killed)")
    assert killed == []
