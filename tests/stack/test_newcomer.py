"""The newcomer's path: a fresh clone, `make up`, `curl /health`, as the README's quick start says.

Only the engine and the host's own settings are there: no EXTRA_CA_BUNDLE (preflight must find
the CA the host's pip trusts), no .env, no secrets. Under CI=true the postgres stand-in is also
taken out of the engine first, so `make up` must notice it cannot be pulled and build it again;
outside CI it stays (other stacks on a shared engine use it), and tests/unit/test_preflight.py
checks that decision. The stack runs under a project name of its own, on free ports. At the
end the data volume's guard: `docker compose down --volumes` keeps the database (an external
volume), `make destroy` without CONFIRM refuses, and `make destroy CONFIRM=<volume>` deletes it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import requests

from compose_stack import FOREIGN_COMPOSE_SETTINGS, ROOT
from tools.docker_cli import Docker, free_port
from tools.preflight import choose_ca, pip_configured_cert

STAND_IN = "postgres:18-trixie"  # taken out under CI=true: make up must build it again


def test_make_up_in_a_fresh_clone_serves_health(docker: Docker, tmp_path: Path) -> None:
    clone = tmp_path / "items"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    api_port = free_port()
    env = {**os.environ,
           "API_PORT": str(api_port), "API_TLS_PORT": str(free_port()), "PGADMIN_PORT": str(free_port())}
    # DATA_VOLUME too: `make test` exports the calling checkout's (items_pgdata) to every test.
    for name in (*FOREIGN_COMPOSE_SETTINGS, "DATA_VOLUME", "EXTRA_CA_BUNDLE", "SECRETS_DIR", "MAKEFLAGS",
                 "MAKELEVEL"):
        env.pop(name, None)
    env["COMPOSE_PROJECT_NAME"] = os.environ.get("E2E_PROJECT", "items-e2e") + "-newcomer"
    if os.environ.get("CI") == "true":
        docker("image", "rm", "--force", STAND_IN)
    compose = Docker(docker.binary, cwd=clone, env=env, timeout=300)
    try:
        up = subprocess.run(["make", "up"], cwd=clone, env=env, capture_output=True, text=True, timeout=1500)
        assert up.returncode == 0, f"{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
        host_ca = choose_ca(env, pip_configured_cert)
        if host_ca is not None:
            assert f"preflight: builds trust the CA bundle {host_ca.path}" in up.stderr
        if os.environ.get("CI") == "true":
            assert f"{STAND_IN} is not in the engine and cannot be pulled" in up.stderr
        health = requests.get(f"http://127.0.0.1:{api_port}/health", timeout=10)
        assert health.status_code == 200, health.text
        assert health.json()["status"] == "ok"
        volume = f"{env['COMPOSE_PROJECT_NAME']}_pgdata"
        compose("compose", "-f", "compose.yaml", "-f", "compose.prod.yaml", "down", "--volumes")
        assert compose("volume", "inspect", volume, check=False).returncode == 0, "down --volumes deleted the data"
        refused = subprocess.run(["make", "destroy"], cwd=clone, env=env, capture_output=True, text=True)
        assert refused.returncode != 0 and f"make destroy CONFIRM={volume}" in refused.stderr, refused.stderr
        destroy = subprocess.run(["make", "destroy", f"CONFIRM={volume}"], cwd=clone, env=env, capture_output=True,
                                 text=True, timeout=300)
        assert destroy.returncode == 0, destroy.stderr[-2000:]
        assert compose("volume", "inspect", volume, check=False).returncode != 0, "make destroy left the data"
    finally:
        compose("compose", "-f", "compose.yaml", "-f", "compose.prod.yaml", "down", "--volumes",
                "--remove-orphans", check=False)
        compose("volume", "rm", "--force", f"{env['COMPOSE_PROJECT_NAME']}_pgdata", check=False)


def test_an_image_that_cannot_be_pulled_gets_its_stand_in_built(docker: Docker) -> None:
    """preflight on the real engine, with the postgres recipe standing for an image name no
    registry has: it says so and runs the stand-in builder for that recipe (which finds the
    postgres stand-in up to date), then goes on. No shared image is touched."""
    absent = "items-preflight-absent:none"
    assert docker("image", "inspect", absent, check=False).returncode != 0
    run = subprocess.run([sys.executable, "-c", "import sys; from tools import preflight; "
                          f"sys.exit(preflight.main({{'postgres': '{absent}'}}))"],
                         cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"{absent} is not in the engine and cannot be pulled" in run.stderr
    assert "building its local stand-in" in run.stderr
