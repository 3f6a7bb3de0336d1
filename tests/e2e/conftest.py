"""Fixtures for the container tests: the docker CLI, the API image, and the whole stack.

Everything goes through the `docker` command line (with its Compose and buildx plugins), as a
person would type it. Without a docker client or an answering engine the tests skip with the
reason, except under CI=true, where they fail: CI must never pass without having run them.

The stack fixture starts compose.yaml + compose.prod.yaml under its own project name
(``items-e2e``, or $E2E_PROJECT), on free host ports, with its own random secrets in a temporary
directory, so it runs beside a user's own stack. It first removes whatever an earlier run left
(a daemon restart brings back containers that have a restart policy), and removes everything,
volumes included, when the session ends, also after a failure.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import docker_binary, unavailable

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
COMPOSE_FILES = ("compose.yaml", "compose.prod.yaml")
API_IMAGE = "items-api:local"  # the tag compose.yaml builds
BASE_IMAGES = ("python:3.14-slim-trixie", "postgres:18-trixie", "dpage/pgadmin4:9.18")
SECRET_NAMES = ("postgres_password", "app_db_password", "pgadmin_password")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Docker:
    """The docker CLI, run from the repository root; failures show the command's output."""

    def __init__(self, binary: str):
        self.binary = binary

    def __call__(self, *args: str, check: bool = True, timeout: float = 120, env: dict | None = None,
                 stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
        r = subprocess.run([self.binary, *args], stdout=stdout, stderr=subprocess.PIPE, text=True,
                           timeout=timeout, env=env, cwd=ROOT)
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {r.returncode}\n"
                                 f"{(r.stdout or '')[-3000:]}\n{r.stderr[-3000:]}")
        return r

    def inspect(self, obj: str) -> dict:
        return json.loads(self("inspect", obj).stdout)[0]


@pytest.fixture(scope="session")
def docker() -> Docker:
    """A docker client and an engine that answers, with the plugins and base images the stack needs."""
    binary = docker_binary()
    if not binary:
        unavailable("no docker client found (PATH, $DOCKER or /opt/docker-engine)")
    d = Docker(binary)
    try:
        answers = d("info", check=False, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        answers = False
    if not answers:
        unavailable("no Docker engine answers (start one: bash .ci/engine.sh)")
    for plugin in ("compose", "buildx"):
        if d(plugin, "version", check=False).returncode != 0:
            unavailable(f"the docker {plugin} plugin is missing")
    missing = [i for i in BASE_IMAGES if d("image", "inspect", i, check=False).returncode != 0]
    if missing:
        unavailable(f"base images missing: {missing} (offline: python3 tools/offline_images.py)")
    return d


@pytest.fixture(scope="session")
def ca_bundle() -> Path | None:
    """What builds give pip as the `extra_ca` secret: $EXTRA_CA_BUNDLE, else this host's bundle
    (on this network it holds the extra CA pip needs, besides the public roots), else nothing."""
    if os.environ.get("EXTRA_CA_BUNDLE"):
        return Path(os.environ["EXTRA_CA_BUNDLE"])
    return HOST_CA_BUNDLE if HOST_CA_BUNDLE.exists() else None


@dataclass
class Stack:
    docker: Docker
    project: str
    env_file: Path
    env: dict[str, str]
    api_url: str
    pgadmin_url: str
    pgadmin_email: str
    secrets: dict[str, str]

    def compose(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        files = [a for f in COMPOSE_FILES for a in ("-f", f)]
        return self.docker("compose", "--env-file", str(self.env_file), "-p", self.project, *files,
                           *args, check=check, timeout=timeout, env=self.env)

    def up(self) -> None:
        r = self.compose("up", "--detach", "--wait", "--wait-timeout", "240", check=False, timeout=600)
        if r.returncode != 0:
            ps = self.compose("ps", "--all", check=False).stdout
            logs = self.compose("logs", "--no-color", "--tail", "60", check=False).stdout
            raise AssertionError(f"compose up failed ({r.returncode}):\n{r.stderr[-3000:]}\n{ps}\n{logs[-8000:]}")

    def down(self, *args: str) -> None:
        self.compose("down", "--remove-orphans", *args, timeout=180)

    def container(self, service: str) -> str:
        cid = self.compose("ps", "--quiet", service).stdout.strip()
        assert cid, f"no running container for {service}"
        return cid


@pytest.fixture(scope="session")
def stack(docker: Docker, ca_bundle: Path | None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("stack")
    secrets_dir = tmp / "secrets"
    secrets_dir.mkdir(mode=0o700)
    values = {}
    for name in SECRET_NAMES:
        values[name] = secrets.token_urlsafe(32)
        path = secrets_dir / name
        path.write_text(values[name] + "\n")
        path.chmod(0o644)  # bind-mounted: read by uids 999, 10001 and 5050
    api_port = int(os.environ.get("E2E_API_PORT") or free_port())
    pgadmin_port = int(os.environ.get("E2E_PGADMIN_PORT") or free_port())
    email = "e2e@example.com"
    # An env file of our own, so that a user's .env can not change the stack under test.
    env_file = tmp / "e2e.env"
    env_file.write_text("")
    env = {
        **os.environ,
        "SECRETS_DIR": str(secrets_dir),
        "API_PORT": str(api_port),
        "PGADMIN_PORT": str(pgadmin_port),
        "PGADMIN_DEFAULT_EMAIL": email,
    }
    env.pop("COMPOSE_PROJECT_NAME", None)
    env.pop("COMPOSE_FILE", None)
    if ca_bundle is not None:
        env["EXTRA_CA_BUNDLE"] = str(ca_bundle)
    s = Stack(
        docker=docker,
        project=os.environ.get("E2E_PROJECT", "items-e2e"),
        env_file=env_file,
        env=env,
        api_url=f"http://127.0.0.1:{api_port}",
        pgadmin_url=f"http://127.0.0.1:{pgadmin_port}",
        pgadmin_email=email,
        secrets=values,
    )
    s.down("--volumes")  # leftovers of an earlier run
    try:
        started = time.monotonic()
        s.up()
        print(f"\n[e2e] stack {s.project} healthy in {time.monotonic() - started:.1f} s "
              f"(API {s.api_url}, pgAdmin {s.pgadmin_url})")
        yield s
    finally:
        s.down("--volumes")
