"""The command line: configuration errors, credentials, and the health check."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from support import ROOT, run_cli

SECRET = "Sup3r-Secret-Value"


def bare_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (
        "DATABASE_URL", "DATABASE_PASSWORD_FILE", "DB_POOL_MIN", "DB_POOL_MAX", "DB_POOL_TIMEOUT",
        "LOG_LEVEL", "MAX_BODY_BYTES", "PORT", "HOST", "WORKERS", "BLOCKING_THREADS", "WATCHDOG_TIMEOUT")}
    env.update(overrides)
    return env


URL = f"postgresql://app:{SECRET}@127.0.0.1:1/appdb"


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql://app@db/appdb"}, "DATABASE_URL"),
        ({"DATABASE_URL": URL, "DB_POOL_MAX": "many"}, "DB_POOL_MAX"),
        ({"DATABASE_URL": URL, "DB_POOL_MIN": "8", "DB_POOL_MAX": "2"}, "DB_POOL_MAX"),
        ({"DATABASE_URL": URL, "DB_POOL_TIMEOUT": "nan"}, "DB_POOL_TIMEOUT"),
        ({"DATABASE_URL": URL, "LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"DATABASE_URL": URL, "MAX_BODY_BYTES": "-1"}, "MAX_BODY_BYTES"),
        ({"DATABASE_URL": URL, "PORT": "70000"}, "PORT"),
        ({"DATABASE_URL": URL, "WORKERS": "0"}, "WORKERS"),
        ({"DATABASE_URL": URL, "WATCHDOG_TIMEOUT": "2"}, "WATCHDOG_TIMEOUT"),
        ({"DATABASE_URL": URL, "WATCHDOG_TIMEOUT": "soon"}, "WATCHDOG_TIMEOUT"),
        ({"DATABASE_URL": URL, "DATABASE_PASSWORD_FILE": "/nonexistent/secret"}, "DATABASE_PASSWORD_FILE"),
    ],
)
@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_bad_configuration_exits_2_with_one_line_naming_the_variable(command, overrides, named):
    result = run_cli(command, env=bare_env(**overrides))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert SECRET not in result.stderr + result.stdout


def test_empty_password_file_is_refused(tmp_path):
    secret = tmp_path / "empty"
    secret.write_text("\n")
    result = run_cli("serve", env=bare_env(DATABASE_URL=URL, DATABASE_PASSWORD_FILE=str(secret)))
    assert result.returncode == 2
    assert "DATABASE_PASSWORD_FILE" in result.stderr


def test_wrong_password_fails_fast_without_showing_it(migrated, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.write_text(SECRET + "\n")
    env = {**migrated.env(tmp_path), "DATABASE_PASSWORD_FILE": str(wrong), "PORT": "1"}
    result = run_cli("serve", env=env, timeout=60)
    assert result.returncode != 0
    assert "cannot connect to the database" in result.stdout + result.stderr
    assert SECRET not in result.stdout + result.stderr
    migrate = run_cli("migrate", env=env)
    assert migrate.returncode == 1
    assert "password authentication failed" in migrate.stderr
    assert SECRET not in migrate.stdout + migrate.stderr


def test_password_file_wins_over_password_in_url(migrated, tmp_path):
    env = migrated.env(tmp_path)
    env["DATABASE_URL"] = migrated.url.replace("app@", "app:not-the-password@")
    assert run_cli("migrate", env=env).returncode == 0


def test_healthcheck_exits_0_when_the_server_answers(server):
    assert run_cli("healthcheck", env=bare_env(PORT=str(server.port))).returncode == 0


def test_healthcheck_script_runs_on_the_standard_library_alone(server):
    # The image runs it so (-I -S: no site-packages): it must never import the app.
    result = subprocess.run([sys.executable, "-I", "-S", str(ROOT / "app/healthcheck.py")],
                            env=bare_env(PORT=str(server.port)), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_healthcheck_exits_2_for_a_port_that_is_no_port():
    result = run_cli("healthcheck", env=bare_env(PORT="70000"))
    assert result.returncode == 2
    assert "PORT" in result.stderr and "Traceback" not in result.stderr


def test_healthcheck_exits_1_when_nothing_answers():
    from pgcluster import free_port

    assert run_cli("healthcheck", env=bare_env(PORT=str(free_port()))).returncode == 1
