"""The command line against a real database and server: credentials, and the health check.

Its configuration errors, which need neither, are in tests/unit/test_cli_config.py.
"""

from __future__ import annotations

import subprocess
import sys

from support import ROOT, bare_env, run_cli

SECRET = "Sup3r-Secret-Value"


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
