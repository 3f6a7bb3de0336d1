"""The monitoring profile's Prometheus files, checked by Prometheus' own promtool.

The alert rules (build/monitoring/alerts.yml) are only as good as their expressions: each
alert's firing, its grace period and its resolving are unit-tested in
tests/unit/prometheus/*_test.yml, and promtool checks the configuration and the rules
as Prometheus would load them. promtool is the host's when installed, else the one in the
prom/prometheus image (a local stand-in here, tools/offline_images.py), run with the
repository mounted read-only. A few seconds in all.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from support import unavailable

from tools.docker_cli import docker_binary
from tools.offline_images import PROMETHEUS_IMAGE

ROOT = Path(__file__).resolve().parents[2]
MONITORING = "build/monitoring"
TESTS = ("tests/unit/prometheus/alerts_test.yml", "tests/unit/prometheus/backup_age_test.yml")


@pytest.fixture(scope="module")
def promtool():
    """A function running promtool with arguments relative to the repository's root."""
    host = shutil.which("promtool")
    if host:
        return lambda *args: subprocess.run([host, *args], cwd=ROOT, capture_output=True, text=True,
                                            timeout=60)
    docker = docker_binary()
    if not docker or subprocess.run([docker, "image", "inspect", PROMETHEUS_IMAGE], capture_output=True,
                                    timeout=30).returncode != 0:
        unavailable(f"no promtool on PATH and no {PROMETHEUS_IMAGE} image (tools/offline_images.py)")
    run = [docker, "run", "--rm", "--network", "none", "-v", f"{ROOT}:/repo:ro", "-w", "/repo",
           "--entrypoint", "promtool", PROMETHEUS_IMAGE]
    return lambda *args: subprocess.run([*run, *args], capture_output=True, text=True, timeout=120)


def test_every_alert_fires_waits_and_resolves_as_its_unit_tests_say(promtool):
    result = promtool("test", "rules", *TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_rules_load_as_prometheus_reads_them(promtool):
    result = promtool("check", "rules", f"{MONITORING}/alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 14 rules found" in result.stdout


def test_the_configuration_is_valid(promtool):
    # --syntax-only: the rule file's path is the container's (/etc/prometheus/alerts.yml).
    result = promtool("check", "config", "--syntax-only", f"{MONITORING}/prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_and_a_documented_meaning():
    rules = yaml.safe_load((ROOT / MONITORING / "alerts.yml").read_text())
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tested = {t["alertname"] for path in TESTS for case in yaml.safe_load((ROOT / path).read_text())["tests"]
              for t in case.get("alert_rule_test", []) if t["exp_alerts"]}
    assert names - tested == set(), "alerts never seen firing in alerts_test.yml"
    docs = (ROOT / "docs" / "observability.md").read_text()
    assert [n for n in sorted(names) if f"`{n}`" not in docs] == [], "alerts docs/observability.md does not explain"
