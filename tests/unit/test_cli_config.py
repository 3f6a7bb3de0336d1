"""The command line's configuration errors and the health check with no server: no services needed.

Each run of `python -m app` here stops before it would connect to anything (a refused setting
exits 2, a health check of a port nothing listens on exits 1); the runs that reach a database
or a server are in tests/api/test_cli.py.
"""

from __future__ import annotations

import pytest

from app.exposition import own_address
from support import bare_env, run_cli
from tools.docker_cli import free_port

SECRET = "Sup3r-Secret-Value"
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
        ({"DATABASE_URL": URL, "PROXY_HOPS": "-1"}, "PROXY_HOPS"),
        ({"DATABASE_URL": URL, "PROXY_HOPS": "edge"}, "PROXY_HOPS"),
        ({"DATABASE_URL": URL, "API_AUTH": "optional"}, "API_AUTH"),
        ({"DATABASE_URL": URL, "API_DOCS": "yes"}, "API_DOCS"),
        ({"DATABASE_URL": URL, "METRICS": "yes"}, "METRICS"),
        ({"DATABASE_URL": URL, "METRICS_PORT": "5000"}, "METRICS_PORT"),
        ({"DATABASE_URL": URL, "METRICS_HOST": "api metrics"}, "METRICS_HOST"),
        ({"DATABASE_URL": URL, "METRICS_HOST": "10.231.0.0/33"}, "METRICS_HOST"),
        ({"DATABASE_URL": URL, "BACKUP_SYNC": "always"}, "BACKUP_SYNC"),
        ({"DATABASE_URL": URL, "DB_SYNC_COMMIT_TIMEOUT": "0"}, "DB_SYNC_COMMIT_TIMEOUT"),
        ({"DATABASE_URL": URL, "DB_SYNC_COMMIT_TIMEOUT": "forever"}, "DB_SYNC_COMMIT_TIMEOUT"),
        ({"DATABASE_URL": URL, "RELOAD": "yes"}, "RELOAD"),
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


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ({"PROMETHEUS_MULTIPROC_DIR": "/proc/no-metrics-here"}, "PROMETHEUS_MULTIPROC_DIR must be writable"),
        # 192.0.2.1 (TEST-NET-1): no machine's own address; binding it is refused, nothing is sent.
        ({"METRICS_HOST": "192.0.2.1"},
         "METRICS_HOST=192.0.2.1 resolves to 192.0.2.1, none of them this container's own"),
        # 198.51.100.0/24 (TEST-NET-2): no network a machine is attached to; nothing is sent.
        ({"METRICS_HOST": "198.51.100.0/24"},
         "METRICS_HOST=198.51.100.0/24: this container has no address in that network"),
    ],
)
def test_metrics_the_server_cannot_serve_exit_2_naming_the_setting(setting, says):
    result = run_cli("serve", env=bare_env(DATABASE_URL=URL, **setting))
    assert result.returncode == 2
    assert says in result.stdout
    assert "Traceback" not in result.stderr + result.stdout


def test_metrics_host_network_means_this_machines_address_in_it():
    assert own_address("127.0.0.0/8") == "127.0.0.1"


def test_empty_password_file_is_refused(tmp_path):
    secret = tmp_path / "empty"
    secret.write_text("\n")
    result = run_cli("serve", env=bare_env(DATABASE_URL=URL, DATABASE_PASSWORD_FILE=str(secret)))
    assert result.returncode == 2
    assert "DATABASE_PASSWORD_FILE" in result.stderr


def test_healthcheck_exits_2_for_a_port_that_is_no_port():
    result = run_cli("healthcheck", env=bare_env(PORT="70000"))
    assert result.returncode == 2
    assert "PORT" in result.stderr and "Traceback" not in result.stderr


def test_healthcheck_exits_1_when_nothing_answers():
    assert run_cli("healthcheck", env=bare_env(PORT=str(free_port()))).returncode == 1
