"""Unit tests for tools/verify_stack.py: the parsing and every check, without an engine.

The inspect records under tests/unit/data/inspect were captured from real
containers of this machine's engine (28.5) and trimmed of machine-specific
fields; `_top` holds the container's `docker top -o uid,pid,args` output.

- postgres-strict: postgres:18-trixie with --user 999:999 --read-only, tmpfs,
  --cap-drop ALL, no-new-privileges:true, -m 256m --cpus 1 --pids-limit 100,
  on-failure:5, 127.0.0.1 port, named volume, a secret file, json-file max-size.
- postgres-weak: as root (no --user), no-new-privileges:false, cap-add NET_ADMIN
  and SYS_PTRACE, 0.0.0.0 port, POSTGRES_PASSWORD and API_TOKEN in the
  environment, the Docker socket, --pid host, restart always, no health
  check, the image's anonymous volume, json-file without rotation.
- pgadmin-strict: dpage/pgadmin4 as 5050 with bare `no-new-privileges`,
  cap-drop ALL, limits, unless-stopped, the `local` log driver.
- python-root: privileged, host network and IPC, `no-new-privileges=true`,
  no limits, log driver none, a root process.
- stack-flask-api, stack-postgres, stack-pgadmin, stack-edge: the four
  containers of the real prod stack (compose.yaml + compose.prod.yaml; the API
  and the edge captured again when the edge came in front of the API); host
  paths rewritten to /srv/items and the project name to `items`.
- restart policies: postgres-strict was started with on-failure:5 (CIS 5.15's
  value), pgadmin-strict with unless-stopped (what compose.prod.yaml documents).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tools import verify_stack as cli
from tools.verify import api, checks, edge, engine, monitoring, values
from tools.verify.model import (API, BACKUP, EDGE, EDGE_HTTP, EDGE_HTTPS, PGADMIN, POSTGRES, PROMETHEUS, CannotRun,
                                Finding)
from tools.verify.registry import Check, run_check
from tools.verify.report import exit_code, render
from tools.verify.run import COMPOSE, expected, verify
from tools.verify.targets import Target

DATA = Path(__file__).parent / "data" / "inspect"


def record(name: str) -> dict:
    return json.loads((DATA / f"{name}.json").read_text())


def target(name: str, service: str = POSTGRES, **changes) -> Target:
    attrs = copy.deepcopy(record(name))
    for key, value in changes.items():
        attrs[key] = value
    return Target(service, attrs)


class FakeTarget(Target):
    """A Target whose exec and HTTP answers are scripted."""

    def __init__(self, attrs, service=POSTGRES, execs=(), http=None, stack=None):
        super().__init__(service, attrs, stack=stack)
        self.execs = list(execs)
        self.commands = []
        self.http = http

    def exec(self, cmd, user=""):
        self.commands.append(cmd)
        return self.execs.pop(0)

    def http_get(self, path):
        if isinstance(self.http, Exception):
            raise self.http
        return self.http


# --- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("opts", "expected"),
    [
        (["no-new-privileges"], True),
        (["no-new-privileges:true"], True),
        (["no-new-privileges=true"], True),
        (["no-new-privileges=1"], True),
        (["no-new-privileges:false"], False),
        (["no-new-privileges=false"], False),
        (["no-new-privileges:nonsense"], False),
        (["no-new-privileges:true", "no-new-privileges:false"], False),  # the last one wins
        (["label=disable"], None),
        (["seccomp=unconfined", "no-new-privileges-ish"], None),
        ([], None),
        (None, None),
    ],
)
def test_no_new_privileges_is_parsed_exactly(opts, expected):
    assert values.no_new_privileges(opts) is expected


@pytest.mark.parametrize(
    ("host_config", "expected"),
    [
        ({"CapDrop": ["ALL"], "CapAdd": None}, (True, [])),
        ({"CapDrop": ["all"], "CapAdd": ["CAP_NET_BIND_SERVICE"]}, (True, ["NET_BIND_SERVICE"])),
        ({"CapDrop": ["CAP_NET_RAW"], "CapAdd": ["chown", "CAP_SETUID"]}, (False, ["CHOWN", "SETUID"])),
        ({}, (False, [])),
    ],
)
def test_capabilities(host_config, expected):
    assert values.capabilities(host_config) == expected


def test_port_bindings_from_live_ports_and_fallback():
    assert values.port_bindings(record("postgres-strict")) == [("5432/tcp", "127.0.0.1", "32770")]
    assert values.port_bindings(record("postgres-weak")) == [("5432/tcp", "0.0.0.0", "32768")]
    assert values.port_bindings(record("python-root")) == []
    stopped = {"NetworkSettings": {"Ports": {}},
               "HostConfig": {"PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}}}
    assert values.port_bindings(stopped) == [("80/tcp", "0.0.0.0", "8080")]


def test_published_port_prefers_tcp_and_reaches_wildcards_through_loopback():
    assert values.published_port(record("pgadmin-strict")) == ("127.0.0.1", 32771)
    assert values.published_port(record("postgres-weak")) == ("127.0.0.1", 32768)
    v6 = {"NetworkSettings": {"Ports": {"53/udp": [{"HostIp": "::1", "HostPort": "53"}],
                                        "5000/tcp": [{"HostIp": "::1", "HostPort": "5001"}]}}}
    assert values.published_port(v6) == ("[::1]", 5001)
    assert values.published_port(record("python-root")) is None


@pytest.mark.parametrize(
    ("ip", "expected"),
    [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("0.0.0.0", False), ("::", False),
     ("192.168.1.10", False), ("", False), ("localhost", False)],
)
def test_is_loopback(ip, expected):
    assert values.is_loopback(ip) is expected


@pytest.mark.parametrize(
    "name",
    ["POSTGRES_PASSWORD", "PGPASSWORD", "DB_PASSWD", "SECRET_KEY", "PGADMIN_CONFIG_SECRET_KEY", "API_TOKEN",
     "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "APIKEY", "PRIVATE_KEY", "SMTP_PASS", "client_secret",
     "GOOGLE_APPLICATION_CREDENTIALS", "POSTGRES_PASSWORD_FILE"],
)
def test_secret_looking_names(name):
    assert values.looks_secret(name)


@pytest.mark.parametrize(
    "name", ["PATH", "PWD", "HOME", "LANG", "PGDATA", "DATABASE_URL", "KEYBOARD_LAYOUT", "GPG_KEY",
             "PASSENGER_COUNT"],
)
def test_ordinary_names(name):
    assert not values.looks_secret(name)


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("POSTGRES_PASSWORD", "hunter2", "POSTGRES_PASSWORD carries a value"),
        ("POSTGRES_PASSWORD", "", None),
        ("POSTGRES_PASSWORD_FILE", "/run/secrets/db_password", None),
        ("POSTGRES_PASSWORD_FILE", "/etc/db_password", "POSTGRES_PASSWORD_FILE points outside /run/secrets/"),
        ("PGADMIN_CONFIG_MASTER_PASSWORD_REQUIRED", "False", None),
        ("DATABASE_URL", "postgresql://app@postgres:5432/appdb", None),
        ("DATABASE_URL", "postgresql://app:hunter2@postgres:5432/appdb", "DATABASE_URL holds a URL with a password"),
        ("PATH", "/usr/bin:/bin", None),
        ("GPG_KEY", "7169605F62C751356D054A26A821E680E5FA6305", None),
    ],
)
def test_env_secret_problem(name, value, problem):
    assert values.env_secret_problem(name, value) == problem


@pytest.mark.parametrize(
    ("policy", "expected", "shown"),
    [
        ({"Name": "on-failure", "MaximumRetryCount": 5}, ("on-failure", 5), "on-failure:5"),
        ({"Name": "always", "MaximumRetryCount": 0}, ("always", 0), "always"),
        ({"Name": "", "MaximumRetryCount": 0}, ("no", 0), "no"),
        (None, ("no", 0), "no"),
    ],
)
def test_restart_policy(policy, expected, shown):
    assert values.restart_policy({"RestartPolicy": policy}) == expected
    assert values.format_restart(*expected) == shown


@pytest.mark.parametrize(("user", "uid"), [("999:999", "999"), ("5050", "5050"), ("", None), (None, None),
                                            ("root", "root"), ("0:0", "0"), ("postgres", "postgres")])
def test_config_uid(user, uid):
    assert values.config_uid(user) == uid


def test_database_target_from_the_api_url():
    assert values.database_target({"DATABASE_URL": "postgresql://items@postgres:5432/itemsdb"}) == ("items", "itemsdb")
    assert values.database_target({}) == ("app", "appdb")


def test_compose_project_name_follows_composes_order(tmp_path):
    root = tmp_path / "My Repo.v2"
    root.mkdir()
    assert engine.compose_project_name(root, {}) == "myrepov2"
    (root / "compose.yaml").write_text("# stack\nname: kit\nservices: {}\n")
    assert engine.compose_project_name(root, {}) == "kit"
    (root / ".env").write_text("API_PORT=5001\nCOMPOSE_PROJECT_NAME='from-dotenv'\n")
    assert engine.compose_project_name(root, {}) == "from-dotenv"
    assert engine.compose_project_name(root, {"COMPOSE_PROJECT_NAME": "_CI_Run"}) == "ci_run"


def test_profile_follows_the_compose_files_label():
    prod = Target("x", {"Config": {"Labels": {engine.CONFIG_FILES_LABEL: "/r/compose.yaml,/r/compose.prod.yaml"}}})
    dev = Target("x", {"Config": {"Labels": {engine.CONFIG_FILES_LABEL: "/r/compose.yaml"}}})
    assert engine.detect_profile({"a": dev, "b": prod}) == "prod"
    assert engine.detect_profile({"a": dev}) == "dev"
    assert engine.detect_profile({"a": target("postgres-strict")}) == "dev"


# --- checks against the captured records --------------------------------------------------------

CASES = [
    # (record, check, expected result, a fragment of the detail)
    ("postgres-strict", checks.check_running, "pass", "running"),
    ("postgres-strict", checks.check_healthy, "pass", "healthy"),
    ("postgres-weak", checks.check_healthy, "fail", "no health status"),
    ("postgres-strict", checks.check_healthcheck, "pass", "pg_isready"),
    ("postgres-weak", checks.check_healthcheck, "fail", "disabled (NONE)"),
    ("python-root", checks.check_healthcheck, "fail", "none defined"),
    ("postgres-strict", checks.check_user, "pass", "999:999"),
    ("pgadmin-strict", checks.check_user, "pass", "5050"),
    ("postgres-weak", checks.check_user, "fail", "unset"),
    ("postgres-strict", checks.check_processes, "pass", "uids 999"),
    ("postgres-weak", checks.check_processes, "pass", "uids 999"),  # the entrypoint drops root: USER still fails
    ("python-root", checks.check_processes, "fail", "as root"),
    ("postgres-strict", checks.check_read_only, "pass", "read-only"),
    ("postgres-weak", checks.check_read_only, "fail", "writable"),
    ("postgres-strict", checks.check_no_new_privileges, "pass", "no-new-privileges:true"),
    ("pgadmin-strict", checks.check_no_new_privileges, "pass", "no-new-privileges"),
    ("python-root", checks.check_no_new_privileges, "pass", "no-new-privileges=true"),
    ("postgres-weak", checks.check_no_new_privileges, "fail", "no-new-privileges:false"),
    ("postgres-strict", checks.check_capabilities, "pass", "ALL dropped, none added"),
    ("postgres-weak", checks.check_capabilities, "fail", "added NET_ADMIN, SYS_PTRACE"),
    ("python-root", checks.check_capabilities, "fail", "lacks ALL"),
    ("postgres-strict", checks.check_not_privileged, "pass", ""),
    ("python-root", checks.check_not_privileged, "fail", "privileged"),
    ("postgres-strict", checks.check_host_namespaces, "pass", ""),
    ("postgres-weak", checks.check_host_namespaces, "fail", "pid=host"),
    ("python-root", checks.check_host_namespaces, "fail", "network=host, ipc=host"),
    ("postgres-strict", checks.check_docker_socket, "pass", ""),
    ("postgres-weak", checks.check_docker_socket, "fail", "/var/run/docker.sock"),
    ("postgres-strict", checks.check_memory, "pass", "256 MiB"),
    ("postgres-weak", checks.check_memory, "fail", "no memory limit"),
    ("postgres-strict", checks.check_cpu, "pass", "1 CPUs"),
    ("pgadmin-strict", checks.check_cpu, "pass", "0.5 CPUs"),
    ("postgres-weak", checks.check_cpu, "fail", "no CPU limit"),
    ("postgres-strict", checks.check_pids, "pass", "100 pids"),
    ("postgres-weak", checks.check_pids, "fail", "no pids limit"),
    ("pgadmin-strict", checks.check_restart, "pass", "unless-stopped"),
    ("postgres-weak", checks.check_restart, "fail", "always, expected unless-stopped"),
    ("postgres-strict", checks.check_restart, "fail", "on-failure:5, expected unless-stopped"),
    ("postgres-strict", checks.check_ports_loopback, "pass", "127.0.0.1:32770->5432/tcp"),
    ("python-root", checks.check_ports_loopback, "pass", "nothing published"),
    ("postgres-weak", checks.check_ports_loopback, "fail", "0.0.0.0:32768->5432/tcp"),
    ("python-root", checks.check_db_unpublished, "pass", "not published"),
    ("postgres-strict", checks.check_db_unpublished, "fail", "published on 127.0.0.1:32770"),
    ("stack-flask-api", checks.check_api_unpublished, "pass", "not published"),
    ("pgadmin-strict", checks.check_api_unpublished, "fail", "published on 127.0.0.1:32771->8080/tcp"),
    ("postgres-strict", checks.check_secrets_mounted, "pass", "/run/secrets/db_password"),
    ("postgres-weak", checks.check_secrets_mounted, "pass", "/run/secrets/locked"),
    ("python-root", checks.check_secrets_mounted, "fail", "nothing mounted"),
    ("postgres-strict", checks.check_env_secrets, "pass", ""),
    ("pgadmin-strict", checks.check_env_secrets, "pass", ""),
    ("postgres-weak", checks.check_env_secrets, "fail", "API_TOKEN carries a value; POSTGRES_PASSWORD carries"),
    ("postgres-strict", checks.check_db_volume, "pass", "volume vs-pgdata"),
    ("postgres-weak", checks.check_db_volume, "fail", "anonymous volume"),
    ("python-root", checks.check_db_volume, "fail", "nothing mounted"),
    ("postgres-strict", checks.check_log_rotation, "pass", "max-size 10m, max-file 3"),
    ("pgadmin-strict", checks.check_log_rotation, "pass", "local"),
    ("postgres-weak", checks.check_log_rotation, "fail", "without max-size"),
    ("python-root", checks.check_log_rotation, "fail", "driver none"),
]


@pytest.mark.parametrize(("name", "check", "expected", "fragment"), CASES,
                         ids=[f"{c[1].__name__}-{c[0]}" for c in CASES])
def test_check_on_captured_record(name, check, expected, fragment):
    outcome, detail = check(target(name))
    assert outcome == expected, detail
    assert fragment in detail


# Checks that exec or probe: tested below with scripted targets, the edge's in test_verify_edge.py,
# the API's (AUTH, API-DOCS) in test_verify_api.py.
PROBES = {checks.check_secrets_readable, checks.check_api_health, checks.check_pgadmin_ping,
          checks.check_db_role, api.check_auth, api.check_docs, edge.check_tls_certificate,
          edge.check_tls_versions, edge.check_hsts, edge.check_timeouts, edge.check_limits, edge.check_errors,
          checks.check_backup_streaming, checks.check_backup_barman, checks.check_backup_volume,
          checks.check_backup_sync, checks.check_metrics_unpublished, monitoring.check_prometheus_targets}


def test_every_check_has_a_unit_case_or_a_scripted_test():
    assert {c.fn for c in COMPOSE.checks} <= {c[1] for c in CASES} | PROBES


def test_check_table_ids_are_unique_and_cis_is_1_6_0_numbering():
    ids = [c.id for c in COMPOSE.checks]
    assert len(ids) == len(set(ids))
    cis = {c.id: c.cis for c in COMPOSE.checks}
    # The 1.6.0 numbers, not 1.2.0's (5.12 read-only, 5.25 no-new-privileges ...).
    assert (cis["READ-ONLY"], cis["NO-NEW-PRIVS"], cis["PIDS"], cis["RESTART"]) == ("5.13", "5.26", "5.29", "5.15")
    assert all(c.__doc__ for c in (c.fn for c in COMPOSE.checks)), "every check says why"


def test_writable_secret_mount_fails():
    attrs = copy.deepcopy(record("postgres-strict"))
    attrs["Mounts"] = [dict(m, RW=True) if m["Destination"].startswith("/run/secrets") else m
                       for m in attrs["Mounts"]]
    outcome, detail = checks.check_secrets_mounted(Target(POSTGRES, attrs))
    assert (outcome, detail) == ("fail", "writable: /run/secrets/db_password")


def test_file_variable_naming_an_unmounted_secret_fails():
    attrs = copy.deepcopy(record("postgres-strict"))
    attrs["Config"]["Env"].append("PGPASS_FILE=/run/secrets/pgpass")
    outcome, detail = checks.check_secrets_mounted(Target(POSTGRES, attrs))
    assert outcome == "fail" and "not mounted: PGPASS_FILE=/run/secrets/pgpass" in detail


def test_starting_health_suggests_wait():
    attrs = copy.deepcopy(record("postgres-strict"))
    attrs["State"]["Health"]["Status"] = "starting"
    assert checks.check_healthy(Target(POSTGRES, attrs)) == ("fail", "starting (try --wait 60)")


def test_cpu_quota_counts_as_a_limit():
    t = Target("x", {"HostConfig": {"NanoCpus": 0, "CpuQuota": 50000, "CpuPeriod": 100000}})
    assert checks.check_cpu(t) == ("pass", "0.5 CPUs (quota)")


def test_restarting_container_is_not_running():
    attrs = copy.deepcopy(record("postgres-strict"))
    attrs["State"].update(Restarting=True, Status="restarting", ExitCode=137)
    assert checks.check_running(Target(POSTGRES, attrs))[0] == "fail"


# --- checks that exec or probe, scripted -----------------------------------------------------


def test_secrets_readable_tries_readers_until_one_exists():
    t = FakeTarget(record("pgadmin-strict"), execs=[(127, "exec: sh: not found"), (1, "")])
    assert checks.check_secrets_readable(t) == ("fail", "not readable by user 5050: /run/secrets/pgadmin_password")
    assert t.commands[0][:2] == ["sh", "-c"] and t.commands[1][0] == "/opt/venv/bin/python"
    assert t.commands[1][-1] == "/run/secrets/pgadmin_password"
    t = FakeTarget(record("postgres-strict"), execs=[(0, "")])
    assert checks.check_secrets_readable(t) == ("pass", "1 readable by user 999:999")


def test_secrets_readable_warns_when_nothing_can_test():
    t = FakeTarget(record("postgres-strict"), execs=[(127, "not found")] * len(checks.READERS))
    assert checks.check_secrets_readable(t)[0] == "warn"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ((200, '{"status": "ok", "checks": {"app": "ok", "database": "ok"}}'), ("pass", "/health 200, database ok")),
        ((503, '{"status": "error", "checks": {"app": "ok", "database": "error"}}'),
         ("fail", "/health 503, database error")),
        ((200, "not json"), ("fail", "/health 200, database None")),
        (ConnectionRefusedError(111, "Connection refused"), ("fail", "/health unreachable: [Errno 111] Connection refused")),
    ],
)
def test_api_health(answer, expected):
    assert checks.check_api_health(FakeTarget({}, API, http=answer)) == expected


def targets_answer(*health: tuple[str, str]) -> tuple[int, str]:
    """Prometheus' /api/v1/targets answer with one active target per (job, health)."""
    active = [{"labels": {"job": job, "instance": f"{job}:9100"}, "health": state,
               "lastError": "" if state == "up" else "connection refused"} for job, state in health]
    return 200, json.dumps({"status": "success", "data": {"activeTargets": active, "droppedTargets": []}})


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (targets_answer(("api", "up"), ("postgres", "up")), ("pass", "2 targets up")),
        (targets_answer(("api", "up"), ("edge", "down")), ("fail", "edge edge:9100: connection refused")),
        (targets_answer(), ("fail", "no active target")),
        ((503, "Service Unavailable"), ("fail", "/api/v1/targets answered 503")),
        (ConnectionRefusedError(111, "Connection refused"),
         ("fail", "/api/v1/targets?state=active unreachable: [Errno 111] Connection refused")),
    ],
)
def test_prometheus_targets(answer, expected):
    assert monitoring.check_prometheus_targets(FakeTarget({}, PROMETHEUS, http=answer)) == expected


def api_on_networks(env=(), ports=None) -> dict:
    """An API container's record: on the stack's two networks, with `env` and published `ports`."""
    return {"Config": {"Env": list(env)},
            "NetworkSettings": {"Ports": ports or {"5000/tcp": None, "9100/tcp": None},
                                "Networks": {"items_edge": {"IPAddress": "172.20.0.3"},
                                             "items_backend": {"IPAddress": "172.21.0.4"}}}}


SCRAPED = "# HELP app_build_info The running build\napp_build_info{revision=\"abc\",version=\"1\"} 1.0"


REFUSED = (1, "urllib.error.URLError: <urlopen error [Errno 111] Connection refused>")


def test_metrics_answering_on_the_backend_only_passes():
    t = FakeTarget(api_on_networks(), API, execs=[(0, SCRAPED), REFUSED], http=(404, '{"title": "Not Found"}'))
    outcome, detail = checks.check_metrics_unpublished(t)
    assert outcome == "pass", detail
    # The backend address answers; the edge network's refuses.
    assert [c[-1] for c in t.commands] == ["http://172.21.0.4:9100/metrics", "http://172.20.0.3:9100/metrics"]


def test_metrics_answering_on_the_edge_address_too_fail():
    t = FakeTarget(api_on_networks(), API, execs=[(0, SCRAPED), (0, SCRAPED)], http=(404, ""))
    assert checks.check_metrics_unpublished(t) == (
        "fail", "the metrics answer off the backend network too, on 172.20.0.3:9100 (items_edge) (METRICS_HOST)")


def test_published_metrics_port_fails():
    ports = {"5000/tcp": None, "9100/tcp": [{"HostIp": "127.0.0.1", "HostPort": "32768"}]}
    t = FakeTarget(api_on_networks(ports=ports), API)
    assert checks.check_metrics_unpublished(t) == ("fail", "metrics port 9100 published on 127.0.0.1:32768")


def test_metrics_through_the_entry_point_fail():
    t = FakeTarget(api_on_networks(), API, execs=[(0, SCRAPED), REFUSED], http=(200, SCRAPED))
    assert checks.check_metrics_unpublished(t) == ("fail", "GET /metrics through the entry point answers the "
                                                           "metrics (200)")


def test_metrics_not_answering_on_the_backend_fail():
    t = FakeTarget(api_on_networks(["METRICS_PORT=9200"]), API, execs=[(1, "Connection refused")])
    outcome, detail = checks.check_metrics_unpublished(t)
    assert outcome == "fail" and "172.21.0.4:9200" in detail


def test_metrics_off_has_no_port_to_check():
    assert checks.check_metrics_unpublished(FakeTarget(api_on_networks(["METRICS=off"]), API))[0] == "pass"


def test_pgadmin_ping():
    assert checks.check_pgadmin_ping(FakeTarget({}, PGADMIN, http=(200, "PING"))) == ("pass", "/misc/ping 200 PING")
    assert checks.check_pgadmin_ping(FakeTarget({}, PGADMIN, http=(502, "")))[0] == "fail"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ((0, "f"), ("pass", "role items is not a superuser")),
        ((0, "t"), ("fail", "role items IS a superuser")),
        ((0, ""), ("fail", "role items not found in itemsdb")),
        ((2, "psql: error: connection refused"), ("fail", "psql failed (2): psql: error: connection refused")),
    ],
)
def test_db_role_uses_the_apis_role_and_database(answer, expected):
    api = Target(API, {"Config": {"Env": ["DATABASE_URL=postgresql://items@postgres:5432/itemsdb"]}})
    t = FakeTarget(record("postgres-strict"), execs=[answer], stack={API: api})
    assert checks.check_db_role(t) == expected
    assert t.commands[0][:5] == ["psql", "-U", "postgres", "-d", "itemsdb"]
    assert "rolname = 'items'" in t.commands[0][-1]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ((0, "120 0.002 async"), ("pass", "lag 120 bytes unsent, 0.002 s (async)")),
        ((0, "0 0.000 sync"), ("pass", "lag 0 bytes unsent, 0.000 s (sync)")),
        ((0, "50000000 3.000 async"), ("warn", "lag 50000000 bytes unsent, 3.000 s (async): the backup service is falling behind")),
        ((0, ""), ("fail", "no replication connection from barman_receive_wal: the WAL is not being streamed")),
        ((2, "psql: error"), ("fail", "psql failed (2): psql: error")),
    ],
)
def test_backup_streaming_reads_the_receivers_lag_from_postgresql(answer, expected, monkeypatch):
    monkeypatch.setattr(checks, "STREAM_GRACE_SECONDS", 0)  # one answer: no waiting for the stream
    t = FakeTarget(record("postgres-strict"), execs=[answer])
    assert checks.check_backup_streaming(t) == expected
    assert "application_name = 'barman_receive_wal'" in t.commands[0][-1]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ((0, "Server main:\n\tbackup maximum age: OK (interval provided: 2 days, latest backup age: 3 hours)\n"),
         ("pass", "every check OK; interval provided: 2 days, latest backup age: 3 hours")),
        ((1, "Server main:\n\tbackup maximum age: FAILED (interval provided: 2 days, latest backup age: 3 days)\n"),
         ("fail", "backup maximum age: FAILED (interval provided: 2 days, latest backup age: 3 days)")),
    ],
)
def test_backup_check_reports_barmans_failed_lines(answer, expected, monkeypatch):
    monkeypatch.setattr(checks, "STREAM_GRACE_SECONDS", 0)
    t = FakeTarget({}, BACKUP, execs=[answer])
    assert checks.check_backup_barman(t) == expected
    assert t.commands == [["barman", "check", "main"]]


def test_backup_streaming_waits_out_a_restarted_receiver(monkeypatch):
    monkeypatch.setattr(checks, "STREAM_GRACE_SECONDS", 10)
    monkeypatch.setattr(checks.time, "sleep", lambda _: None)
    t = FakeTarget(record("postgres-strict"), execs=[(0, ""), (0, ""), (0, "0 0.000 async")])
    assert checks.check_backup_streaming(t) == ("pass", "lag 0 bytes unsent, 0.000 s (async)")


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ([(0, "")], ("pass", "BACKUP_SYNC=off: WAL streamed asynchronously")),
        ([(0, "barman_receive_wal"), (0, "sync")], ("pass", "barman_receive_wal attached as the synchronous standby")),
        ([(0, "barman_receive_wal"), (0, "")],
         ("fail", "BACKUP_SYNC=on but barman_receive_wal is not connected: writes are refused (503) until the "
                  "backup service streams again")),
        ([(0, "barman_receive_wal"), (0, "async")],
         ("fail", "BACKUP_SYNC=on but barman_receive_wal is attached as 'async', not 'sync': it started before "
                  "PostgreSQL named it; restart it (barman receive-wal --stop main; cron starts it)")),
    ],
)
def test_backup_sync_needs_the_receiver_attached_as_sync_when_on(answers, expected, monkeypatch):
    monkeypatch.setattr(checks, "STREAM_GRACE_SECONDS", 0)
    t = FakeTarget(record("postgres-strict"), execs=answers)
    assert checks.check_backup_sync(t) == expected


def mounts(*pairs):
    return {"Mounts": [{"Type": "volume", "Destination": d, "Name": n} for d, n in pairs]}


@pytest.mark.parametrize(
    ("backup", "data", "expected"),
    [
        (mounts(("/var/lib/barman", "items_backups")), "items_pgdata", "pass"),
        (mounts(("/var/lib/barman", "items_pgdata")), "items_pgdata", "fail"),
        (mounts(("/var/lib/barman", "items_backups"), ("/var/lib/postgresql", "items_pgdata")), "items_pgdata", "fail"),
        ({"Mounts": []}, "items_pgdata", "fail"),
    ],
)
def test_backup_volume_is_its_own_and_never_the_data(backup, data, expected):
    db = Target(POSTGRES, mounts(("/var/lib/postgresql", data)))
    assert checks.check_backup_volume(Target(BACKUP, backup, stack={POSTGRES: db}))[0] == expected


# --- running, profiles, output ---------------------------------------------------------------


def by_id(findings, service=POSTGRES):
    return {f.id: f for f in findings if f.service == service}


def test_dev_profile_turns_hardening_failures_into_warnings_only():
    t = target("postgres-weak")
    weak = by_id(run_check(c, t, "dev") for c in COMPOSE.checks if not c.live)
    assert weak["READ-ONLY"].result == "warn" and "dev profile" in weak["READ-ONLY"].detail
    assert weak["NO-NEW-PRIVS"].result == "warn"
    assert weak["DOCKER-SOCK"].result == "fail"  # never acceptable
    assert weak["ENV-NO-SECRETS"].result == "fail"
    prod = by_id(run_check(c, t, "prod") for c in COMPOSE.checks if not c.live)
    assert prod["READ-ONLY"].result == "fail"


def test_live_checks_fail_on_a_stopped_container_and_errors_become_failures():
    attrs = copy.deepcopy(record("postgres-strict"))
    attrs["State"]["Running"] = False
    check = next(c for c in COMPOSE.checks if c.id == "PROCS-NONROOT")
    assert run_check(check, Target(POSTGRES, attrs), "prod").detail == "container not running"
    broken = Check("X", "x", "", lambda t: 1 / 0)
    f = run_check(broken, target("postgres-strict"), "prod")
    assert (f.result, f.detail) == ("fail", "ZeroDivisionError: division by zero")


def test_verify_reports_a_missing_service_and_runs_only_matching_checks():
    targets = {POSTGRES: target("postgres-strict")}
    findings = verify(targets, "prod")
    missing = [f for f in findings if f.service != POSTGRES]
    assert [(f.service, f.id, f.result) for f in missing] == [
        (API, "RUNNING", "fail"), (PGADMIN, "RUNNING", "fail"), (EDGE, "RUNNING", "fail"), (BACKUP, "RUNNING", "fail")]
    ids = [f.id for f in findings if f.service == POSTGRES]
    assert "DB-VOLUME" in ids and "API-HEALTH" not in ids and "PGADMIN-PING" not in ids


def test_render_and_exit_code():
    findings = [Finding(API, "READ-ONLY", "t", "5.13", "pass", "read-only"),
                Finding(API, "LOG-ROTATION", "t", "", "warn", "driver syslog")]
    assert exit_code(findings) == 0
    text = render(findings, "main", "prod")
    assert "CIS Docker Benchmark 1.6.0" in text and "OK: 1 passed, 1 warnings, 0 failed" in text
    assert "READ-ONLY" in text and "5.13" in text
    findings.append(Finding(POSTGRES, "USER", "t", "4.1", "fail", "root"))
    assert exit_code(findings) == 1
    assert render(findings, "main", "dev").splitlines()[1].startswith("dev profile")


def test_main_exits_2_with_one_line_when_the_engine_is_missing(monkeypatch, capsys):
    def no_engine():
        raise CannotRun("cannot reach the Docker engine (ConnectionError: refused)")

    monkeypatch.setattr(cli, "connect", no_engine)
    assert cli.main(["--project", "nope"]) == 2
    err = capsys.readouterr().err
    assert err == "verify_stack: cannot reach the Docker engine (ConnectionError: refused)\n"


class FakeContainer:
    def __init__(self, attrs, service, project="kit", oneoff=False, by_compose=True):
        self.attrs = attrs
        self.name = attrs["Name"].lstrip("/")
        # The labels an image built by Compose passes on to any container made from it ...
        self.labels = {engine.PROJECT_LABEL: project, engine.SERVICE_LABEL: service}
        if by_compose:  # ... and those Compose adds to the containers it makes.
            self.labels |= {engine.ONEOFF_LABEL: "True" if oneoff else "False", engine.NUMBER_LABEL: "1"}


class FakeClient:
    def __init__(self, containers):
        self.containers = self
        self._containers = containers
        self.filters = None

    def list(self, all, filters):
        self.filters = filters
        return self._containers


def test_load_targets_skips_one_offs_and_says_when_the_project_is_empty():
    client = FakeClient([FakeContainer(record("postgres-strict"), POSTGRES),
                         FakeContainer(record("python-root"), API, oneoff=True)])
    targets = engine.load_targets(client, "kit")
    assert list(targets) == [POSTGRES] and client.filters == {"label": "com.docker.compose.project=kit"}
    with pytest.raises(CannotRun, match="no containers for Compose project 'kit'"):
        engine.load_targets(FakeClient([]), "kit")


def test_a_container_run_from_an_image_compose_built_is_not_the_projects():
    client = FakeClient([FakeContainer(record("python-root"), API, by_compose=False),
                         FakeContainer(record("stack-flask-api"), API)])
    assert engine.load_targets(client, "kit")[API].attrs["Name"] == "/items-flask-api-1"


def test_main_json_output(monkeypatch, capsys):
    client = FakeClient([FakeContainer(record("postgres-weak"), POSTGRES)])
    monkeypatch.setattr(cli, "connect", lambda: client)
    monkeypatch.setattr(Target, "exec", lambda self, cmd, user="": (0, "f"))
    assert cli.main(["--project", "kit", "--json", "--profile", "prod"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["benchmark"] == "CIS Docker Benchmark 1.6.0" and out["profile"] == "prod"
    assert out["exit_code"] == 1 and out["summary"]["fail"] > 0
    found = {(f["service"], f["id"]): f for f in out["findings"]}
    assert found[(POSTGRES, "NO-NEW-PRIVS")]["result"] == "fail"
    assert found[(POSTGRES, "NO-NEW-PRIVS")]["cis"] == "5.26"
    assert found[(API, "RUNNING")]["result"] == "fail"


# --- the real prod stack's records ------------------------------------------------------------

STACK = {API: "stack-flask-api", POSTGRES: "stack-postgres", PGADMIN: "stack-pgadmin", EDGE: "stack-edge"}


def prod_stack() -> dict[str, Target]:
    targets: dict = {}
    for service, name in STACK.items():
        targets[service] = Target(service, record(name), stack=targets)
    return targets


def test_prod_stack_records_pass_every_record_check():
    targets = prod_stack()
    assert engine.detect_profile(targets) == "prod"
    findings = [run_check(c, targets[s], "prod") for s in STACK for c in COMPOSE.checks
                if s in c.services and c.fn not in PROBES]
    assert [f for f in findings if f.result != "pass"] == []
    assert {f.id for f in findings} >= {"PROCS-NONROOT", "DB-VOLUME", "DB-UNPUBLISHED", "API-UNPUBLISHED",
                                        "RESTART"}
    # The edge is hardened like every other service.
    assert {f.id for f in findings if f.service == EDGE} >= {
        "USER", "PROCS-NONROOT", "READ-ONLY", "CAPS", "NO-NEW-PRIVS", "MEMORY", "CPU", "PIDS", "HEALTHCHECK",
        "RESTART", "LOG-ROTATION", "SECRETS-MOUNTED", "PORTS-LOOPBACK", "ENV-NO-SECRETS"}


def test_the_api_is_reached_through_the_edges_http_port():
    targets = prod_stack()
    assert targets[API].published() is None
    assert targets[EDGE].published(EDGE_HTTP) == ("127.0.0.1", 25000)
    assert targets[EDGE].published(EDGE_HTTPS) == ("127.0.0.1", 25443)
    assert targets[API].address() == ("127.0.0.1", 25000)
    # A development stack has no edge: the API's own published port.
    assert Target(API, record("postgres-strict"), stack={}).address() == ("127.0.0.1", 32770)


def test_a_development_stack_does_not_miss_the_edge_but_prod_does():
    targets = prod_stack()
    assert expected(COMPOSE, targets, "dev") == (API, POSTGRES, PGADMIN, EDGE, BACKUP)  # there: checked
    del targets[EDGE]
    # The backup service is in every Compose stack: missed in both.
    assert expected(COMPOSE, targets, "dev") == (API, POSTGRES, PGADMIN, BACKUP)
    assert expected(COMPOSE, targets, "prod") == (API, POSTGRES, PGADMIN, EDGE, BACKUP)  # missing: RUNNING fails


def test_prod_stack_api_as_root_is_caught_by_both_user_checks():
    attrs = copy.deepcopy(record("stack-flask-api"))
    attrs["Config"]["User"] = "0:0"
    attrs["_top"]["Processes"] = [["0", *p[1:]] for p in attrs["_top"]["Processes"]]
    t = Target(API, attrs)
    assert checks.check_user(t) == ("fail", "user 0:0 is root")
    assert checks.check_processes(t)[0] == "fail"
