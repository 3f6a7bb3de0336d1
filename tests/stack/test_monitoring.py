"""The `monitoring` profile on the test stack: a real Prometheus scraping the real services.

Prometheus, postgres_exporter and the nginx exporter join the session's stack (compose.yaml +
compose.prod.yaml + `--profile monitoring`), with one test override: a scrape and evaluation
interval of one second, and the alert rules of build/monitoring/alerts.yml with every `for`
and range window divided by SPEEDUP (the same expressions; unit tests of the real windows are
in tests/unit/prometheus/alerts_test.yml). Then:
- every target Prometheus scrapes is up (its HTTP API);
- the API's metrics answer Prometheus on the backend network, and not the edge on its own;
- stopping PostgreSQL drives PostgresDown and ApiPoolFailing to firing, and both resolve
  once it is back;
- the targets page, loaded in headless Chromium, shows every target UP (a screenshot is kept
  in test-artifacts/);
- the verifier finds the profile hardened and every target up, and names the one it cannot
  scrape once the nginx exporter is stopped.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from compose_stack import COMPOSE_FILES, ROOT, Stack
from tools.docker_cli import free_port

MONITORING = ROOT / "build" / "monitoring"
SERVICES = ("prometheus", "postgres-exporter", "nginx-exporter")
JOBS = {"prometheus", "api", "postgres", "edge", "backup"}
SPEEDUP = 12
ARTIFACTS = ROOT / "test-artifacts"  # git-ignored
CHROMIUM = "/usr/bin/chromium"


def faster(duration: str) -> str:
    """A Prometheus duration (30s, 2m, 1h) divided by SPEEDUP, in milliseconds."""
    ms = 0
    for number, unit in re.findall(r"(\d+)(ms|s|m|h)", duration):
        ms += int(number) * {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}[unit]
    return f"{max(ms // SPEEDUP, 1000)}ms"


def fast_files(directory: Path) -> Path:
    """prometheus.yml scraping every second and alerts.yml with shortened windows; an override
    file mounting them over the real ones."""
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    # Slower targets keep an interval they can answer within on a busy machine: postgres_exporter
    # runs a dozen queries, the backup service `barman list-backups` (about a second each).
    slow = {"postgres": "3s", "backup": "10s"}
    for job in config["scrape_configs"]:
        if job["job_name"] in slow:
            job.update(scrape_interval=slow[job["job_name"]], scrape_timeout=slow[job["job_name"]])
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["expr"] = re.sub(r"\[(\w+)\]", lambda m: f"[{faster(m.group(1))}]", rule["expr"])
            if "for" in rule:
                rule["for"] = faster(rule["for"])
    (directory / "alerts.yml").write_text(yaml.safe_dump(rules))
    override = directory / "compose.monitoring-test.yaml"
    override.write_text(yaml.safe_dump({"services": {"prometheus": {"volumes": [
        f"{directory / 'prometheus.yml'}:/etc/prometheus/prometheus.yml:ro",
        f"{directory / 'alerts.yml'}:/etc/prometheus/alerts.yml:ro"]}}}))
    return override


def until(predicate, timeout: float, what: str, show) -> None:
    """Wait for `predicate`; on time-out fail with what `show()` says then."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}: {show()}")
        time.sleep(0.5)


class Monitoring:
    """The stack with the profile: its compose command and Prometheus' HTTP API."""

    def __init__(self, stack: Stack, override: Path, port: int):
        self.stack, self.override, self.url = stack, override, f"http://127.0.0.1:{port}"
        self.env = {**stack.env, "PROMETHEUS_PORT": str(port)}

    def compose(self, *args: str, timeout: float = 300):
        files = [a for f in (*COMPOSE_FILES, str(self.override)) for a in ("-f", f)]
        return self.stack.docker("compose", "--env-file", str(self.stack.env_file), "-p", self.stack.project,
                                 *files, "--profile", "monitoring", *args, timeout=timeout, env=self.env)

    def api(self, path: str, **params) -> dict:
        answer = requests.get(self.url + "/api/v1/" + path, params=params, timeout=10)
        answer.raise_for_status()
        return answer.json()["data"]

    def targets(self) -> dict[str, str]:
        return {t["labels"]["job"]: t["health"] for t in self.api("targets", state="active")["activeTargets"]}

    def value(self, query: str) -> float | None:
        """The single value of an instant query, None when it has no sample."""
        result = self.api("query", query=query)["result"]
        return float(result[0]["value"][1]) if len(result) == 1 else None

    def firing(self) -> set[str]:
        return {a["labels"]["alertname"] for a in self.api("alerts")["alerts"] if a["state"] == "firing"}


@pytest.fixture(scope="module")
def monitoring(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitoring]:
    mon = Monitoring(stack, fast_files(tmp_path_factory.mktemp("monitoring")), free_port())
    try:
        # --no-deps: the stack is up already; its services stay as they are (never rebuilt here).
        mon.compose("up", "--detach", "--no-deps", "--wait", "--wait-timeout", "180", *SERVICES, timeout=400)
        until(lambda: set(mon.targets()) == JOBS and set(mon.targets().values()) == {"up"}, 90,
                 "every Prometheus target up", lambda: mon.targets())
        yield mon
    finally:
        mon.compose("rm", "--stop", "--force", *SERVICES, timeout=180)


def test_every_target_prometheus_scrapes_is_up(monitoring):
    assert monitoring.targets() == dict.fromkeys(JOBS, "up")
    # The alert rules loaded, and nothing fires on a healthy stack (once what the start-up's first
    # scrapes fired has resolved).
    assert {r["name"] for g in monitoring.api("rules")["groups"] for r in g["rules"]} >= {"PostgresDown", "ApiDown"}
    until(lambda: monitoring.firing() == set(), 60, "no alert firing", monitoring.firing)


def test_the_api_metrics_answer_on_the_backend_network_only(monitoring, stack):
    # The edge shares only the edge network with the API: the name resolves there, and the port is
    # closed (curl's 7: could not connect), not merely slow or unknown.
    edge = stack.compose("exec", "-T", "edge", "curl", "-sS", "-m", "2", "http://flask-api:9100/metrics",
                         check=False)
    assert edge.returncode == 7, (edge.returncode, edge.stdout[-200:], edge.stderr)
    # Prometheus, on the backend network too, scrapes the API's alias there.
    scraped = monitoring.compose("exec", "-T", "prometheus", "wget", "-q", "-O", "-", "http://api-metrics:9100/metrics")
    assert "app_build_info" in scraped.stdout


def test_the_backup_figures_arrive_from_barman_and_from_postgres(monitoring):
    # Barman answered the backup service's scrape; pg_receivewal streams (the exporter's own query).
    until(lambda: monitoring.value("barman_up") == 1 and monitoring.value("pg_backup_streaming_connected") == 1,
          60, "barman_up 1 and WAL streaming",
          lambda: (monitoring.value("barman_up"), monitoring.value("pg_backup_streaming_connected")))
    assert monitoring.value("pg_backup_streaming_lag_bytes") is not None
    assert monitoring.value("barman_backups") is not None


def test_the_exporter_reads_postgres_as_the_least_privileged_monitoring_role(monitoring, stack):
    def psql(sql: str) -> str:
        return stack.compose("exec", "-T", "postgres", "psql", "-U", "postgres", "-d", "appdb", "-v",
                             "ON_ERROR_STOP=1", "-tA", "-c", sql).stdout.strip()

    row = psql("SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolcanlogin, "
               "rolconnlimit, pg_has_role('monitoring', 'pg_monitor', 'MEMBER') FROM pg_roles "
               "WHERE rolname = 'monitoring'")
    assert row == "f|f|f|f|f|t|5|t"
    assert psql("SELECT has_database_privilege('monitoring', 'appdb', 'CONNECT'), "
                "has_schema_privilege('monitoring', 'app', 'USAGE')") == "f|f"
    until(lambda: psql("SELECT DISTINCT usename FROM pg_stat_activity WHERE usename = 'monitoring'") == "monitoring",
          30, "the exporter's connection as `monitoring`", lambda: "none")


def verify(monitoring: Monitoring, *args: str) -> list[dict]:
    """The verifier's findings on the monitoring profile's services."""
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "verify_stack.py"), "--project",
                        monitoring.stack.project, "--json", *args], capture_output=True, text=True, timeout=300,
                       cwd=ROOT, env=monitoring.env)
    return [f for f in json.loads(r.stdout)["findings"] if f["service"] in SERVICES]


def test_the_verifier_finds_prometheus_targets_up_and_the_profile_hardened(monitoring):
    findings = verify(monitoring, "--wait", "120")
    assert {f["service"] for f in findings} == set(SERVICES)
    assert [(f["service"], f["id"], f["detail"]) for f in findings if f["result"] == "fail"] == []
    # The only warnings: the nginx exporter's image (FROM scratch upstream) cannot have a health check.
    assert {(f["service"], f["id"]) for f in findings if f["result"] == "warn"} == {
        ("nginx-exporter", "HEALTHCHECK"), ("nginx-exporter", "HEALTHY")}
    assert [f["detail"] for f in findings if f["id"] == "PROM-TARGETS"] == [f"{len(JOBS)} targets up"]


def test_a_postgres_outage_fires_the_database_and_pool_alerts_which_resolve_after_recovery(monitoring, stack):
    stop = threading.Event()

    def clients() -> None:
        """Requests keep asking the pool for connections while the database is away."""
        while not stop.is_set():
            try:
                requests.get(stack.api_url + "/items", headers={"Authorization": f"Bearer {stack.read_key}"},
                             timeout=10)
            except requests.RequestException:
                pass
            stop.wait(0.5)

    thread = threading.Thread(target=clients, daemon=True)
    thread.start()
    try:
        stack.compose("stop", "postgres", timeout=120)
        until(lambda: {"PostgresDown", "ApiPoolFailing"} <= monitoring.firing(), 90,
                 "PostgresDown and ApiPoolFailing firing", monitoring.firing)
    finally:
        stack.compose("start", "postgres", timeout=120)
        stack.compose("up", "--detach", "--wait", "--wait-timeout", "120", "postgres", timeout=200)
        stop.set()
        thread.join(timeout=15)
    until(lambda: not {"PostgresDown", "ApiPoolFailing"} & monitoring.firing(), 90,
             "PostgresDown and ApiPoolFailing resolved", monitoring.firing)


def test_the_targets_page_in_chromium_shows_every_target_up(monitoring):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)") if os.environ.get("CI") != "true" \
            else pytest.fail(f"CI=true and {CHROMIUM} is missing")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.goto(monitoring.url + "/targets")
            # Upstream's image has the web UI; Debian's package (the local stand-in) has none
            # and says so: its page of targets is then the console template.
            if "does not include the modern React web UI" in page.content():
                page.goto(monitoring.url + "/consoles/targets.html")
                page.wait_for_selector("#targets")
                states = page.locator("tr.target .state").all_inner_texts()
                assert len(states) == len(JOBS) and set(states) == {"UP"}, states
            else:
                page.wait_for_selector("text=UP", timeout=30_000)
                assert page.locator("text=DOWN").count() == 0
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "prometheus-targets.png"), full_page=True)
        finally:
            browser.close()


def test_the_verifier_names_a_target_prometheus_cannot_scrape(monitoring):
    """The weakened case: the nginx exporter stopped, its target down."""
    monitoring.compose("stop", "nginx-exporter")
    try:
        until(lambda: monitoring.targets().get("edge") == "down", 30, "the edge target down", monitoring.targets)
        found = [f for f in verify(monitoring) if f["id"] == "PROM-TARGETS"]
        assert [f["result"] for f in found] == ["fail"]
        assert found[0]["detail"].startswith("edge nginx-exporter:9113: "), found[0]["detail"]
    finally:
        monitoring.compose("start", "nginx-exporter")
