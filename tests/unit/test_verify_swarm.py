"""Unit tests for the Swarm side (verify_stack.py --swarm, tools/swarm.py), no engine.

tests/unit/data/swarm/stack.json was captured from the real stack (`make swarm-up`,
stack items-swarm, a single-node swarm on this machine's engine 28.5): per
service the `docker service inspect` record (with ServiceStatus), its running
tasks and one failed one, the trimmed inspect records of the task containers
on this node with their `docker top` under `_top`, and the image's health
check; under `facts` the node, docker_gwbridge (bound to 127.0.0.1), the
networks and the engine's security options. tests/unit/data/swarm/rendered.json is
`docker compose config --format json` of the three compose files, host paths
rewritten to /srv/items. Each test weakens a copy in one place. The edge's
live checks meet local servers replaying a real edge's answers and its
`nginx -T` (edge_doubles.py), never what this machine runs on the captured ports.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from edge_doubles import DUMP, edge_ports

from tools import swarm
from tools import verify_stack as cli
from tools.verify import budget, checks, engine, values
from tools.verify import tls as verify_tls
from tools.verify.model import API, EDGE, FAIL, PASS, PGADMIN, POSTGRES, SWARM_SERVICES, WARN, Finding
from tools.verify.registry import run_check
from tools.verify.report import render
from tools.verify.run import SWARM, verify
from tools.verify.targets import HOST_BINDING, SwarmTarget

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data" / "swarm"
CAPTURED = json.loads((DATA / "stack.json").read_text())
RENDERED = json.loads((DATA / "rendered.json").read_text())
class FakeSwarmTarget(SwarmTarget):
    """A SwarmTarget whose exec and HTTP answers are scripted (and recorded), the edge's ports local servers."""

    edge_ports: dict[int, int] = {}  # the edge's target ports -> the local servers standing in (edge_here)

    def __init__(self, *args, http=(200, '{"checks": {"database": "ok"}}'), execs=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.http = http
        self.execs = execs
        self.commands = []

    def exec(self, cmd, user=""):
        self.need_local()
        self.commands.append(cmd)
        if self.execs is not None:
            return self.execs.pop(0)
        text = " ".join(cmd)
        if cmd[0] == "psql" and "pg_settings" in text:
            return 0, "max_connections=100\nreserved_connections=0\nsuperuser_reserved_connections=3"
        if cmd[0] == "psql":
            return 0, "f"
        if cmd[:2] == ["nginx", "-T"]:
            return 0, DUMP
        return 0, ""  # reading a secret file works

    def http_get(self, path):
        if isinstance(self.http, Exception):
            raise self.http
        return self.http

    def published(self, port=None):
        if self.service == EDGE and port in self.edge_ports:
            return "127.0.0.1", self.edge_ports[port]
        return super().published(port)


@pytest.fixture(scope="module", autouse=True)
def edge_here(tmp_path_factory):
    with edge_ports(tmp_path_factory.mktemp("edge")) as ports:
        FakeSwarmTarget.edge_ports = ports
        yield ports


def captured(**changes) -> dict:
    """A deep copy of the captured stack; `changes` maps a service to a function that weakens it."""
    data = copy.deepcopy(CAPTURED)
    for name, change in changes.items():
        change(data["services"][name], data["facts"])
    return data


def targets(data: dict | None = None, cls=FakeSwarmTarget) -> dict[str, SwarmTarget]:
    data = data or captured()
    out: dict[str, SwarmTarget] = {}
    for name, s in data["services"].items():
        out[name] = cls(name, s["record"], s["tasks"], s["local"], [], data["facts"], s["image"], out)
    return out


def spec(service: dict) -> dict:
    return service["record"]["Spec"]


def container_spec(service: dict) -> dict:
    return spec(service)["TaskTemplate"]["ContainerSpec"]


def findings(data: dict | None = None, profile: str = "prod") -> list[Finding]:
    return verify(targets(data), profile, SWARM)


def failing(data: dict) -> set[tuple[str, str]]:
    return {(f.service, f.id) for f in findings(data) if f.result == FAIL}


def one(check_id: str, service: str, data: dict | None = None) -> tuple[str, str]:
    check = next(c for c in SWARM.checks if c.id == check_id)
    f = run_check(check, targets(data)[service], "prod")
    return f.result, f.detail


# --- the captured stack ------------------------------------------------------------------------


def test_captured_stack_passes_with_one_warning_per_service():
    result = findings()
    assert {(f.service, f.id) for f in result if f.result == FAIL} == set()
    warnings = {(f.service, f.id) for f in result if f.result == WARN}
    assert warnings == {(s, "NO-NEW-PRIVS") for s in SWARM_SERVICES}
    assert {(f.service, f.id) for f in result} == {(s, c.id) for c in SWARM.checks for s in c.services}


def test_spec_reads_like_a_container_record():
    t = targets()[POSTGRES]
    assert t.config["User"] == "999:999"
    assert t.host_config["ReadonlyRootfs"] is True and t.host_config["CapDrop"] == ["ALL"]
    assert t.host_config["Memory"] == 512 * 2**20 and t.host_config["NanoCpus"] == 10**9
    assert t.host_config["PidsLimit"] == 200
    assert t.host_config["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}}
    mounts = {m["Destination"]: m for m in t.attrs["Mounts"]}
    assert mounts["/var/lib/postgresql"]["Name"] == "items-swarm_pgdata"
    assert mounts["/run/secrets/postgres_password"] == {
        "Type": "secret", "Name": mounts["/run/secrets/postgres_password"]["Name"], "Source": "",
        "Destination": "/run/secrets/postgres_password", "RW": False}
    # the API has no HEALTHCHECK in its spec: the image's is used
    api = targets()[API]
    assert api.config["Healthcheck"]["Test"][-1] == "/app/app/healthcheck.py"


def test_human_output_names_the_swarm_stack():
    text = render(findings(), "items-swarm", "prod", kind="Swarm stack")
    assert text.splitlines()[0] == ("Swarm stack 'items-swarm', profile prod, "
                                    "checks mapped to CIS Docker Benchmark 1.6.0")
    assert "edge" in text.splitlines() and text.splitlines()[-1].endswith(", 4 warnings, 0 failed")


# --- replicas and health -----------------------------------------------------------------------


def test_running_counts_desired_against_running_tasks():
    assert one("RUNNING", API) == (PASS, "3/3 tasks running, 1 failed in history")

    def pending(s, facts):
        task = s["tasks"][0]
        task["Status"].update(State="pending", Err="no suitable node (scheduling constraints)")
    result, detail = one("RUNNING", API, captured(**{API: pending}))
    assert result == FAIL and detail.startswith("2/3 tasks running") and "no suitable node" in detail

    def scaled_to_zero(s, facts):
        spec(s)["Mode"]["Replicated"]["Replicas"] = 0
        s["tasks"] = []
    assert one("RUNNING", API, captured(**{API: scaled_to_zero}))[0] == FAIL


def test_global_service_desired_from_service_status():
    t = targets()[EDGE]
    assert "Global" in t.spec["Mode"] and t.desired() == 1


def test_healthy_reads_this_nodes_containers():
    assert one("HEALTHY", API) == (PASS, "3/3 healthy here")

    def unhealthy(s, facts):
        s["local"][1]["State"]["Health"]["Status"] = "unhealthy"
    result, detail = one("HEALTHY", API, captured(**{API: unhealthy}))
    assert (result, detail) == (FAIL, "2/3 healthy here: unhealthy")

    def elsewhere(s, facts):
        s["local"] = s["local"][:1]
    assert one("HEALTHY", API, captured(**{API: elsewhere})) == (
        PASS, "1/1 healthy here, 2 running elsewhere")


def test_no_health_check_fails_healthy_and_healthcheck():
    def none(s, facts):
        s["image"]["Config"]["Healthcheck"] = None
        container_spec(s).pop("Healthcheck", None)
    data = captured(**{API: none})
    assert one("HEALTHY", API, data)[0] == FAIL
    assert one("HEALTHCHECK", API, data) == (FAIL, "none defined")


# --- hardening ---------------------------------------------------------------------------------


def test_no_new_privileges_warns_unless_the_spec_engine_or_containers_set_it():
    result, detail = one("NO-NEW-PRIVS", API)
    assert result == WARN and "daemon.json" in detail

    def in_spec(s, facts):
        container_spec(s)["Privileges"]["NoNewPrivileges"] = True
    assert one("NO-NEW-PRIVS", API, captured(**{API: in_spec})) == (
        PASS, "no-new-privileges (service spec)")

    def engine_default(s, facts):
        facts["security_options"] = [*facts["security_options"], "name=no-new-privileges"]
    assert one("NO-NEW-PRIVS", API, captured(**{API: engine_default}))[0] == PASS

    def containers(s, facts):
        for c in s["local"]:
            c["HostConfig"]["SecurityOpt"] = ["no-new-privileges=true"]
    assert one("NO-NEW-PRIVS", API, captured(**{API: containers}))[0] == PASS


def test_no_new_privileges_dev_profile_stays_a_warning():
    f = run_check(next(c for c in SWARM.checks if c.id == "NO-NEW-PRIVS"), targets()[API], "dev")
    assert f.result == WARN


@pytest.mark.parametrize(("change", "check", "detail"), [
    (lambda s, f: container_spec(s).update(User="0:0"), "USER", "user 0:0 is root"),
    (lambda s, f: container_spec(s).update(ReadOnly=False), "READ-ONLY", "root filesystem is writable"),
    (lambda s, f: container_spec(s).update(CapabilityDrop=None), "CAPS",
     "cap_drop lacks ALL (default set kept)"),
    (lambda s, f: container_spec(s).update(CapabilityAdd=["CAP_NET_ADMIN"]), "CAPS",
     "ALL dropped but added back: NET_ADMIN"),
    (lambda s, f: spec(s)["TaskTemplate"]["Resources"]["Limits"].pop("MemoryBytes"), "MEMORY",
     "no memory limit"),
    (lambda s, f: spec(s)["TaskTemplate"]["Resources"]["Limits"].pop("NanoCPUs"), "CPU", "no CPU limit"),
    (lambda s, f: spec(s)["TaskTemplate"]["Resources"]["Limits"].pop("Pids"), "PIDS", "no pids limit"),
    (lambda s, f: spec(s)["TaskTemplate"]["LogDriver"]["Options"].pop("max-size"), "LOG-ROTATION",
     "json-file without max-size: grows without bound"),
    (lambda s, f: container_spec(s).setdefault("Mounts", []).append(
        {"Type": "bind", "Source": "/var/run/docker.sock", "Target": "/var/run/docker.sock"}),
     "DOCKER-SOCK", "mounts /var/run/docker.sock"),
    (lambda s, f: container_spec(s)["Env"].append("API_TOKEN=abc123"), "ENV-NO-SECRETS",
     "API_TOKEN carries a value"),
])
def test_weakened_spec_fails_the_check(change, check, detail):
    data = captured(**{API: change})
    assert one(check, API, data) == (FAIL, detail)
    # root also no longer owns the secret files Swarm made for uid 10001
    also = {(API, "SECRETS-OWNER")} if check == "USER" else set()
    assert failing(data) == {(API, check)} | also


def test_log_driver_left_to_the_engine_is_read_from_the_containers():
    def no_driver(s, facts):
        spec(s)["TaskTemplate"].pop("LogDriver")
        for c in s["local"]:
            c["HostConfig"]["LogConfig"] = {"Type": "json-file", "Config": {}}
    assert one("LOG-ROTATION", API, captured(**{API: no_driver}))[0] == FAIL


def test_host_network_fails_host_ns():
    def on_host(s, facts):
        host_id = next(i for i, n in facts["networks"].items() if n["Name"] == "host")
        facts["networks"][host_id]["Driver"] = "host"
        spec(s)["TaskTemplate"]["Networks"] = [{"Target": host_id}]
    assert one("HOST-NS", EDGE, captured(**{EDGE: on_host})) == (FAIL, "shares network=host")


def test_restart_policy_is_any_without_attempt_limit():
    assert one("RESTART", API) == (PASS, "any, delay 2s, no attempt limit")

    def budgeted(s, facts):
        policy = spec(s)["TaskTemplate"]["RestartPolicy"]
        policy.update(Condition="on-failure", MaxAttempts=5, Window=120 * values.NS)
    assert one("RESTART", API, captured(**{API: budgeted})) == (
        FAIL, "on-failure, delay 2s, 5 attempts per 2m, expected any, no attempt limit")


# --- updates -----------------------------------------------------------------------------------


def test_update_policy_per_service():
    assert one("UPDATE-POLICY", API) == (
        PASS, "start-first, 1 at a time, rollback on failure, monitor 10s")
    assert one("UPDATE-POLICY", POSTGRES)[1].startswith("stop-first")


@pytest.mark.parametrize(("service", "change", "detail"), [
    (API, lambda u: u.update(Order="stop-first"), "order stop-first, expected start-first"),
    (POSTGRES, lambda u: u.update(Order="start-first"), "order start-first, expected stop-first"),
    (API, lambda u: u.update(FailureAction="pause"), "failure action pause, expected rollback"),
    (API, lambda u: u.pop("Parallelism"), "updates every task at once"),
])
def test_weakened_update_policy_fails(service, change, detail):
    data = captured(**{service: lambda s, f: change(spec(s)["UpdateConfig"])})
    assert one("UPDATE-POLICY", service, data) == (FAIL, detail)


def test_missing_update_or_rollback_config_fails():
    data = captured(**{API: lambda s, f: spec(s).pop("RollbackConfig")})
    assert one("UPDATE-POLICY", API, data) == (FAIL, "no rollback_config")
    data = captured(**{API: lambda s, f: spec(s).pop("UpdateConfig")})
    assert one("UPDATE-POLICY", API, data)[1].startswith("no update_config")


# --- ports -------------------------------------------------------------------------------------


def test_host_mode_ports_take_docker_gwbridges_address():
    assert one("PORTS-LOOPBACK", EDGE) == (
        PASS, "127.0.0.1:5100->8080/tcp (host), 127.0.0.1:5543->8443/tcp (host)")
    assert one("PORTS-LOOPBACK", API) == (PASS, "nothing published")

    def everywhere(s, facts):
        facts["gwbridge"]["Options"].pop(HOST_BINDING)
    assert one("PORTS-LOOPBACK", EDGE, captured(**{EDGE: everywhere})) == (
        FAIL, "0.0.0.0:5100->8080/tcp (host), 0.0.0.0:5543->8443/tcp (host)")


def test_routing_mesh_ports_are_on_every_address():
    def ingress(s, facts):
        for p in spec(s)["EndpointSpec"]["Ports"]:
            p["PublishMode"] = "ingress"
    assert one("PORTS-LOOPBACK", EDGE, captured(**{EDGE: ingress})) == (
        FAIL, "*:5100->8080/tcp (ingress), *:5543->8443/tcp (ingress)")


def test_published_database_fails():
    def publish(s, facts):
        spec(s)["EndpointSpec"]["Ports"] = [{"Protocol": "tcp", "TargetPort": 5432, "PublishedPort": 5432,
                                             "PublishMode": "host"}]
    data = captured(**{POSTGRES: publish})
    assert one("DB-UNPUBLISHED", POSTGRES, data) == (
        FAIL, "published on 127.0.0.1:5432->5432/tcp (host)")


def test_published_api_fails():
    assert one("API-UNPUBLISHED", API) == (PASS, "not published")

    def publish(s, facts):
        spec(s)["EndpointSpec"] = {"Ports": [{"Protocol": "tcp", "TargetPort": 5000, "PublishedPort": 5000,
                                              "PublishMode": "ingress"}]}
    assert one("API-UNPUBLISHED", API, captured(**{API: publish})) == (
        FAIL, "published on *:5000->5000/tcp (ingress)")


def test_published_metrics_port_fails():
    assert one("METRICS-UNPUBLISHED", API) == (PASS, "port 9100 not published")

    def publish(s, facts):
        spec(s)["EndpointSpec"] = {"Ports": [{"Protocol": "tcp", "TargetPort": 9100, "PublishedPort": 9100,
                                              "PublishMode": "host"}]}
    assert one("METRICS-UNPUBLISHED", API, captured(**{API: publish})) == (FAIL, "port 9100 published as 9100")


def test_the_api_is_probed_through_the_edge():
    api = targets(cls=SwarmTarget)[API]
    calls = []

    class Answer:
        status, headers = 200, {}

        def read(self, n):
            return b'{"checks": {"database": "ok"}}'

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    def urlopen(url, timeout):
        calls.append(url)
        return Answer()

    with pytest.MonkeyPatch.context() as m:
        m.setattr(urllib.request, "urlopen", urlopen)
        assert checks.check_api_health(api) == (PASS, "/health 200, database ok")
    assert calls == ["http://127.0.0.1:5100/health"]


def test_the_api_is_probed_on_the_edges_http_port_whatever_the_published_order():
    def tls_first(s, facts):  # the stack loader sorts ports by published port
        spec(s)["EndpointSpec"]["Ports"] = [
            {"Protocol": "tcp", "TargetPort": 8443, "PublishedPort": 4443, "PublishMode": "host"},
            {"Protocol": "tcp", "TargetPort": 8080, "PublishedPort": 5100, "PublishMode": "host"}]
    assert targets(captured(**{EDGE: tls_first}), cls=SwarmTarget)[API].address() == ("127.0.0.1", 5100)


# --- secrets -----------------------------------------------------------------------------------


def test_secret_owner_and_mode():
    assert one("SECRETS-OWNER", POSTGRES) == (PASS, "2 owned by 999, mode 0400")

    def world_readable(s, facts):
        container_spec(s)["Secrets"][0]["File"]["Mode"] = 0o444
    result, detail = one("SECRETS-OWNER", POSTGRES, captured(**{POSTGRES: world_readable}))
    assert result == FAIL and "mode 0444 is readable by others" in detail

    def other_owner(s, facts):
        container_spec(s)["Secrets"][0]["File"]["UID"] = "0"
    result, detail = one("SECRETS-OWNER", API, captured(**{API: other_owner}))
    assert (result, detail) == (FAIL, "app_db_password owned by 0, the service runs as 10001")


def test_a_file_variable_without_its_secret_fails_secrets_mounted():
    data = captured(**{API: lambda s, f: container_spec(s).update(Secrets=[])})
    assert one("SECRETS-MOUNTED", API, data)[0] == FAIL
    data = captured(**{API: lambda s, f: container_spec(s)["Env"].append("OTHER_FILE=/run/secrets/other")})
    assert one("SECRETS-MOUNTED", API, data) == (FAIL, "not mounted: OTHER_FILE=/run/secrets/other")


def test_secrets_readable_runs_in_a_task_here():
    t = targets()[POSTGRES]
    f = run_check(next(c for c in SWARM.checks if c.id == "SECRETS-READABLE"), t, "prod")
    assert (f.result, f.detail) == (PASS, "2 readable by user 999:999")
    assert t.commands[0][:2] == ["sh", "-c"]


def test_live_probes_warn_when_no_task_runs_on_this_node():
    def elsewhere(s, facts):
        s["local"] = []
    t = targets(captured(**{POSTGRES: elsewhere}))[POSTGRES]
    for check_id in ("PROCS-NONROOT", "SECRETS-READABLE", "DB-ROLE"):
        f = run_check(next(c for c in SWARM.checks if c.id == check_id), t, "prod")
        expected = (WARN, "no running task of this service on this node to probe")
        assert (f.result, f.detail) == expected, check_id


def test_processes_of_every_local_task_are_checked():
    def root_process(s, facts):
        s["local"][2]["_top"]["Processes"][0][0] = "0"
    result, detail = one("PROCS-NONROOT", API, captured(**{API: root_process}))
    assert result == FAIL and detail.startswith("1 process(es) as root")
    assert one("PROCS-NONROOT", API)[1].startswith("uids 10001 (")


# --- placement ---------------------------------------------------------------------------------


def test_placement_pins_stateful_services_to_one_node():
    assert one("PLACEMENT", POSTGRES) == (PASS, "node.labels.items.db == true (node vm)")

    def unpinned(s, facts):
        spec(s)["TaskTemplate"]["Placement"] = {}
    assert one("PLACEMENT", POSTGRES, captured(**{POSTGRES: unpinned}))[0] == FAIL

    def two_nodes(s, facts):
        other = copy.deepcopy(facts["nodes"][0])
        other["ID"], other["Description"]["Hostname"] = "n2", "vm2"
        facts["nodes"].append(other)
    result, detail = one("PLACEMENT", POSTGRES, captured(**{POSTGRES: two_nodes}))
    assert (result, detail) == (FAIL, "node.labels.items.db == true matches 2 nodes (vm, vm2)")

    def replicated(s, facts):
        spec(s)["Mode"]["Replicated"]["Replicas"] = 2
    assert one("PLACEMENT", POSTGRES, captured(**{POSTGRES: replicated})) == (
        FAIL, "2 replicas of a service with a local volume")


@pytest.mark.parametrize(("constraint", "expected"), [
    ("node.labels.items.db == true", True),
    ("node.labels.items.db != true", False),
    ("node.role == manager", True),
    ("node.role==worker", False),
    ("node.hostname == vm", True),
    ("node.platform.os == linux", None),
    ("nonsense", None),
])
def test_node_matches(constraint, expected):
    assert values.node_matches(CAPTURED["facts"]["nodes"][0], constraint) is expected


def test_unknown_constraint_is_a_warning():
    def unknown(s, facts):
        spec(s)["TaskTemplate"]["Placement"]["Constraints"] = ["node.platform.os == linux"]
    assert one("PLACEMENT", POSTGRES, captured(**{POSTGRES: unknown}))[0] == WARN


# --- the connection budget ---------------------------------------------------------------------


@pytest.mark.parametrize(("replicas", "order", "parallelism", "surge"), [
    (3, "start-first", 1, 1), (3, "stop-first", 1, 0), (3, "start-first", 0, 3), (3, "start-first", 5, 3),
    (0, "start-first", 1, 0), (1, "start-first", 2, 1),
])
def test_update_surge(replicas, order, parallelism, surge):
    assert budget.update_surge(replicas, order, parallelism) == surge


def test_postgres_settings_from_arguments_and_show():
    command = ["postgres", "-c", "max_connections=50", "--superuser-reserved-connections=5"]
    assert budget.postgres_settings(command) == {
        "max_connections": 50, "superuser_reserved_connections": 5, "reserved_connections": 0}
    live = {"max_connections": "200", "reserved_connections": "2"}
    assert budget.postgres_settings(None, live)["max_connections"] == 200
    assert budget.postgres_settings(["postgres", "-c", "max_connections=lots"]) == budget.PG_DEFAULTS


def test_connection_budget_arithmetic():
    settings = dict(budget.PG_DEFAULTS)
    ok, detail = budget.connection_budget({"WORKERS": "1", "DB_POOL_MAX": "4"}, 3, 1, settings)
    assert ok
    assert detail.startswith("4 tasks (3 + 1 while updating) x 1 workers x 4 connections = 16, room 87")
    # the edge: exactly the room is fine, one more is not
    assert budget.connection_budget({"WORKERS": "1", "DB_POOL_MAX": "29"}, 2, 1, settings)[0]  # 87
    assert not budget.connection_budget({"WORKERS": "2", "DB_POOL_MAX": "11"}, 3, 1, settings)[0]  # 88
    # app/config.py's defaults: one worker, a pool of max(4, DB_POOL_MIN)
    assert budget.connection_budget({"DB_POOL_MIN": "30"}, 3, 0, settings) == (False, budget.connection_budget(
        {"WORKERS": "1", "DB_POOL_MAX": "30"}, 3, 0, settings)[1])
    assert budget.connection_budget({"WORKERS": "many"}, 3, 0, settings)[0] is False


def test_connection_budget_check_reads_postgres_live():
    ts = targets()
    f = run_check(next(c for c in SWARM.checks if c.id == "CONN-BUDGET"), ts[API], "prod")
    assert f.result == PASS and "= 16, room 87" in f.detail
    assert "pg_settings" in " ".join(ts[POSTGRES].commands[0])
    ts = targets()
    ts[POSTGRES].execs = [
        (0, "max_connections=20\nreserved_connections=0\nsuperuser_reserved_connections=3")]
    f = run_check(next(c for c in SWARM.checks if c.id == "CONN-BUDGET"), ts[API], "prod")
    assert f.result == FAIL and "= 16, room 7 (max_connections 20" in f.detail


# --- loading from an engine, and the command line ----------------------------------------------


class FakeContainer:
    def __init__(self, attrs):
        self.attrs = attrs

    def top(self, ps_args):
        return self.attrs["_top"]

    def exec_run(self, cmd, user="", demux=False):
        text = " ".join(cmd)
        if "pg_settings" in text:
            out = b"max_connections=100\nreserved_connections=0\nsuperuser_reserved_connections=3"
        elif cmd[:2] == ["nginx", "-T"]:
            out = DUMP.encode()
        else:
            out = b"f" if cmd[0] == "psql" else b""
        return SimpleNamespace(exit_code=0, output=out)


class FakeClient:
    """The Docker SDK calls load_swarm makes, answered from the captured stack."""

    def __init__(self, data: dict, swarm_state: str = "active"):
        self.data = data
        self.swarm_state = swarm_state
        self.api = self
        self.containers = self

    def info(self):
        f = self.data["facts"]
        swarm_info = {"LocalNodeState": self.swarm_state, "ControlAvailable": True, "NodeID": f["node_id"]}
        return {"Swarm": swarm_info, "SecurityOptions": f["security_options"]}

    def services(self, filters, status):
        assert filters == {"label": "com.docker.stack.namespace=items-swarm"} and status
        return [s["record"] for s in self.data["services"].values()]

    def tasks(self, filters):
        return next(s["tasks"] for s in self.data["services"].values()
                    if s["record"]["ID"] == filters["service"])

    def nodes(self):
        return self.data["facts"]["nodes"]

    def networks(self):
        return [{"Id": i, **n} for i, n in self.data["facts"]["networks"].items()]

    def inspect_network(self, name):
        return self.data["facts"]["gwbridge"]

    def inspect_image(self, ref):
        return next(s["image"] for s in self.data["services"].values()
                    if s["record"]["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == ref)

    def get(self, cid):
        for s in self.data["services"].values():
            for c in s["local"]:
                if c["Id"] == cid:
                    return FakeContainer(c)
        raise LookupError(cid)

    def ping(self):
        return True


def test_load_swarm_maps_services_tasks_and_local_containers():
    ts = engine.load_swarm(FakeClient(CAPTURED), "items-swarm")
    assert set(ts) == set(SWARM_SERVICES)
    assert len(ts[API].local) == 3 and len(ts[API].containers) == 3
    assert ts[API].stack is ts


def test_main_swarm_json_report_and_exit_code(monkeypatch, capsys):
    monkeypatch.setattr(cli, "connect", lambda: FakeClient(CAPTURED))
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout, **tls: (_ for _ in ()).throw(
        urllib.error.URLError("refused")))
    monkeypatch.setattr(verify_tls, "handshake", lambda host, port, context: (_ for _ in ()).throw(
        ConnectionRefusedError(111, "Connection refused")))
    code = cli.main(["--swarm", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["orchestrator"] == "swarm" and report["project"] == "items-swarm"
    failed = {(f["service"], f["id"]) for f in report["findings"] if f["result"] == "fail"}
    # Nothing answers HTTP or TLS here; the edge's configuration (nginx -T) is read all the same.
    assert failed == {(API, "API-HEALTH"), (API, "AUTH"), (API, "API-DOCS"), (PGADMIN, "PGADMIN-PING"), *(
        (EDGE, i) for i in ("EDGE-TLS-CERT", "EDGE-TLS-VERSIONS", "EDGE-HSTS", "EDGE-ERRORS"))}
    assert code == report["exit_code"] == 1


def test_main_swarm_cannot_run(monkeypatch, capsys):
    monkeypatch.setattr(cli, "connect", lambda: FakeClient(CAPTURED, swarm_state="inactive"))
    assert cli.main(["--swarm"]) == 2
    assert capsys.readouterr().err.startswith("verify_stack: this engine is not part of a swarm")
    monkeypatch.setattr(cli, "connect", lambda: FakeClient({**CAPTURED, "services": {}}))
    assert cli.main(["--stack", "items-swarm"]) == 2
    assert "no services for Swarm stack 'items-swarm'" in capsys.readouterr().err


def test_project_and_stack_do_not_mix():
    with pytest.raises(SystemExit) as e:
        cli.parse_args(["--swarm", "--project", "items"])
    assert e.value.code == 2


def test_duration():
    assert [values.duration(x) for x in (0, 2 * values.NS, 90 * values.NS, 120 * values.NS, 1500 * 10**6)] == [
        "0s", "2s", "1m30s", "2m", "1.5s"]


# --- tools/swarm.py: the stack file for `docker stack deploy` ----------------------------------


VERSIONS = {(kind, key): "0123456789ab" for kind in ("secrets", "configs")
            for key in (RENDERED.get(kind) or {})}


def test_stack_file_has_the_old_loaders_types():
    out = swarm.to_stack(RENDERED, "items-swarm", VERSIONS)
    assert out["version"] == "3.13" and "name" not in out and not [k for k in out if k.startswith("x-")]
    api = out["services"]["flask-api"]
    assert api["deploy"]["resources"]["limits"]["cpus"] == "1"
    assert api["networks"] == ["backend", "edge"]
    assert api["secrets"] == [{"source": "app_db_password", "target": "app_db_password", "uid": "10001",
                               "gid": "10001", "mode": 0o400}]
    assert "entrypoint" not in api and "command" not in api  # nulls dropped
    assert [p["published"] for p in out["services"]["edge"]["ports"]] == [5100, 5543]
    assert out["secrets"]["postgres_password"] == {"name": "items-swarm_postgres_password_0123456789ab",
                                                   "file": "/srv/items/secrets/postgres_password"}
    assert out["configs"]["pg_init"]["file"] == "/srv/items/build/postgres/10-app-role.sh"
    assert out["volumes"]["pgdata"] == {"name": "items-swarm_pgdata"}


def test_swarm_file_leaves_nothing_that_swarm_ignores():
    assert swarm.ignored_keys(RENDERED) == []
    assert set(RENDERED["services"]) == set(SWARM_SERVICES)


@pytest.mark.parametrize(("key", "value"), [
    ("security_opt", ["no-new-privileges:true"]),
    ("tmpfs", ["/tmp"]),
    ("depends_on", {"postgres": {"condition": "service_healthy"}}),
    ("restart", "unless-stopped"),
    ("build", {"context": "."}),
])
def test_settings_swarm_would_ignore_are_refused(key, value):
    rendered = copy.deepcopy(RENDERED)
    rendered["services"]["postgres"][key] = value
    with pytest.raises(swarm.CannotRun, match=f"postgres.{key} "):
        swarm.to_stack(rendered, "items-swarm", VERSIONS)


def test_a_port_with_a_host_ip_is_refused():
    rendered = copy.deepcopy(RENDERED)
    rendered["services"]["pgadmin"]["ports"][0]["host_ip"] = "127.0.0.1"
    assert swarm.ignored_keys(rendered) == [
        "pgadmin.ports host_ip 127.0.0.1 (Swarm publishes on every address; see SWARM_BIND_ADDRESS)"]


def test_content_versions_change_with_content_and_hide_secrets(tmp_path):
    (tmp_path / "a").write_text("one\n")
    (tmp_path / "b").write_text("two\n")
    rendered = {"secrets": {"s": {"file": str(tmp_path / "a")}},
                "configs": {"c": {"file": str(tmp_path / "b")}}}
    v1 = swarm.content_versions(rendered, b"salt")
    assert v1[("configs", "c")] == swarm.content_version(b"two\n")
    assert v1[("secrets", "s")] != swarm.content_version(b"one\n")  # salted: the name says nothing
    (tmp_path / "a").write_text("three\n")
    assert swarm.content_versions(rendered, b"salt")[("secrets", "s")] != v1[("secrets", "s")]
    assert swarm.content_versions(rendered, b"other")[("configs", "c")] == v1[("configs", "c")]
    (tmp_path / "a").write_text("")
    with pytest.raises(swarm.CannotRun, match="is empty"):
        swarm.content_versions(rendered, b"salt")


def test_rendered_defaults_respect_the_connection_budget():
    ok, detail = swarm.budget(RENDERED)
    assert ok, detail
    assert detail.startswith("4 tasks (3 + 1 while updating) x 1 workers x 4 connections = 16, room 87")


def test_a_broken_budget_is_caught_before_deploying():
    rendered = copy.deepcopy(RENDERED)
    rendered["services"]["flask-api"]["deploy"]["replicas"] = 12
    rendered["services"]["flask-api"]["environment"]["WORKERS"] = "2"
    ok, detail = swarm.budget(rendered)
    assert not ok and "13 tasks" in detail and "= 104, room 87" in detail
    rendered = copy.deepcopy(RENDERED)
    rendered["services"]["postgres"]["command"] = ["postgres", "-c", "max_connections=25"]
    assert not swarm.budget(rendered)[0]


# This process's environment without what a calling `make test` exported (mk/stack.mk exports the
# TLS pair's paths under its own SECRETS_DIR, which would override SECRETS_DIR=/tmp/s below).
INHERITED_MAKE_FREE_ENV = {k: v for k, v in os.environ.items() if k not in ("TLS_CERT_FILE", "TLS_KEY_FILE")}


def test_make_targets_call_the_tool():
    make = shutil.which("make")
    if not make:
        pytest.skip("no make")
    r = subprocess.run([make, "-n", "swarm-up", "swarm-update", "swarm-down", "swarm-verify",
                        "SWARM_STACK=demo", "SECRETS_DIR=/tmp/s"], cwd=ROOT, capture_output=True, text=True,
                       check=False, env={**INHERITED_MAKE_FREE_ENV, "MAKEFLAGS": ""})
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if "tools/swarm.py" in line or "verify_stack" in line]
    assert lines == [
        *(f"SECRETS_DIR=/tmp/s SWARM_STACK=demo python3 tools/swarm.py {command}"
          for command in ("up", "update", "down")),
        ".venv/bin/python tools/verify_stack.py --swarm --stack demo"]


@pytest.mark.parametrize(("ref", "expected"), [
    ("items-api:0123456789ab", False), ("library/python:3.14", False), ("dpage/pgadmin4:9.18", False),
    ("registry.example.com/items-api:1.2", True), ("localhost:5000/items-api", True),
    ("localhost/items-api", True),
])
def test_registry_references_are_deployed_as_given(ref, expected):
    assert swarm.from_registry(ref) is expected
