"""The container stack under test, built the same way for every suite that needs one.

tests/stack (project ``items-e2e``) and tests/reliability (``items-rel``) each start
compose.yaml + compose.prod.yaml under a project name of their own, on free loopback ports, with
random secrets in a temporary directory and an empty env file, so that each runs beside the
other and beside a user's own stack, and a user's .env or COMPOSE_* variables cannot change what
is tested. The database's volume is external, as `make up` makes it (its own name per project,
DATA_VOLUME): `up` creates it, and `down --volumes` removes it too, which Compose alone never
does. `running_stack` first removes whatever an earlier run left (a daemon restart brings
back containers that have a restart policy), and removes everything, volumes included, when it
ends, also after a failure. tests/swarm takes the engine and the secrets from here too.

Without a docker client, an answering engine, the plugins or the base images, `engine` skips
with the reason, except under CI=true, where it fails: CI must never pass without these tests.
A plain module, not a conftest, so that each suite's conftest imports it by name.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from support import json_records, poll, unavailable
from tools.docker_cli import Docker, docker_binary, free_port
from tools.preflight import choose_ca, pip_configured_cert

ROOT = Path(__file__).resolve().parent.parent

COMPOSE_FILES = ("compose.yaml", "compose.prod.yaml")
BASE_IMAGES = ("python:3.14-slim-trixie", "postgres:18-trixie", "dpage/pgadmin4:9.18",
               "nginx:1.30-trixie", "offline-images/barman:3")
SECRET_NAMES = ("postgres_password", "app_db_password", "pgadmin_password", "backup_db_password",
                "monitoring_db_password")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# The edge's per-client limits in test stacks: every test client on this host reaches the edge
# through docker-proxy, as one address, and the suites send far more than one user would. The
# scenarios about the limits themselves set the edge's defaults back (or their own).
GENEROUS_EDGE_LIMITS = {"EDGE_READ_RATE": "10000", "EDGE_READ_BURST": "10000", "EDGE_WRITE_RATE": "10000",
                        "EDGE_WRITE_BURST": "10000", "EDGE_CLIENT_CONNECTIONS": "10000"}
# Variables that would make Compose read other files or start other services than the test's.
FOREIGN_COMPOSE_SETTINGS = ("COMPOSE_PROJECT_NAME", "COMPOSE_FILE", "COMPOSE_PROFILES",
                            "TLS_CERT_FILE", "TLS_KEY_FILE")


def engine() -> Docker:
    """A docker client and an engine that answers, with the plugins and base images the stack needs."""
    binary = docker_binary()
    if not binary:
        unavailable("no docker client found (PATH, $DOCKER or /opt/docker-engine)")
    docker = Docker(binary, timeout=120)
    try:
        answers = docker("info", check=False, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        answers = False
    if not answers:
        unavailable("no Docker engine answers (start one: make engine)")
    for plugin in ("compose", "buildx"):
        if docker(plugin, "version", check=False).returncode != 0:
            unavailable(f"the docker {plugin} plugin is missing")
    missing = [i for i in BASE_IMAGES if docker("image", "inspect", i, check=False).returncode != 0]
    if missing:
        unavailable(f"base images missing: {missing} (offline: python3 tools/offline_images.py)")
    return docker


def ca_bundle() -> Path | None:
    """What builds give pip as the `extra_ca` secret: what `make up` gives (tools/preflight.py:
    $EXTRA_CA_BUNDLE, else the CA the host's pip trusts), else this host's bundle (on this
    network it holds the extra CA pip needs, besides the public roots), else nothing."""
    choice = choose_ca(os.environ, pip_configured_cert)
    if choice is not None:
        return Path(choice.path)
    return HOST_CA_BUNDLE if HOST_CA_BUNDLE.exists() else None


def write_secrets(directory: Path) -> dict[str, str]:
    """A random value per secret file in a new directory (0700), and the edge's self-signed
    TLS pair (tls.crt, tls.key) made as `make up` makes it; the values, by name."""
    directory.mkdir(mode=0o700)
    values = {}
    for name in SECRET_NAMES:
        values[name] = secrets.token_urlsafe(32)
        path = directory / name
        path.write_text(values[name] + "\n")
        path.chmod(0o644)  # bind-mounted: read by uids 999, 10001 and 5050
    subprocess.run(["sh", str(ROOT / "tools" / "self_signed_tls.sh"), str(directory / "tls.crt"),
                    str(directory / "tls.key")], check=True, capture_output=True)
    return values


@dataclass
class Stack:
    docker: Docker
    project: str
    env_file: Path
    env: dict[str, str]
    api_url: str  # through the edge, plain HTTP
    api_tls_url: str  # through the edge, HTTPS (https://localhost:<port>, the certificate's name)
    tls_cert: Path  # the edge's self-signed certificate: verify api_tls_url against it
    pgadmin_url: str
    pgadmin_email: str
    secrets: dict[str, str]
    # API keys the tests use (made by `running_stack` once the stack is up, as `make key` does).
    api_key: str = ""
    read_key: str = ""

    def compose(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        files = [a for f in COMPOSE_FILES for a in ("-f", f)]
        return self.docker("compose", "--env-file", str(self.env_file), "-p", self.project, *files,
                           *args, check=check, timeout=timeout, env=self.env)

    @property
    def data_volume(self) -> str:
        return self.env["DATA_VOLUME"]

    def create_data_volume(self) -> None:
        """What `make up` does first: Compose never creates an external volume."""
        self.docker("volume", "create", "--label", "items.data=true", self.data_volume)

    def remove_data_volume(self) -> None:
        self.docker("volume", "rm", "--force", self.data_volume)

    def up(self) -> None:
        self.create_data_volume()
        r = self.compose("up", "--detach", "--wait", "--wait-timeout", "240", check=False, timeout=600)
        if r.returncode != 0:
            ps = self.compose("ps", "--all", check=False).stdout
            logs = self.compose("logs", "--no-color", "--tail", "60", check=False).stdout
            raise AssertionError(f"compose up failed ({r.returncode}):\n{r.stderr[-3000:]}\n{ps}\n{logs[-8000:]}")

    def down(self, *args: str) -> None:
        """`compose down`; with --volumes the external data volume goes too (tests leave nothing)."""
        self.compose("down", "--remove-orphans", *args, timeout=180)
        if "--volumes" in args:
            self.remove_data_volume()

    def create_key(self, name: str, scope: str) -> str:
        """A new API key, made inside the API container (`make key`): only its stdout holds it."""
        return self.compose("exec", "-T", "flask-api", "python", "-m", "app", "keys", "create",
                            "--name", name, "--scope", scope).stdout.strip()

    def log_lines(self, service: str, since: str | None = None) -> list[dict]:
        """The JSON lines the service wrote (since `since`, a timestamp `docker logs` takes), parsed:
        the API's request log (request_id, method, path, status, client), the edge's access log."""
        since_args = ("--since", since) if since else ()
        out = self.compose("logs", "--no-color", "--no-log-prefix", *since_args, service, timeout=60).stdout
        return json_records(out.splitlines())

    def logged(self, service: str, wanted: Callable[[dict], bool], count: int = 1, *,
               since: str | None = None, timeout: float = 5) -> list[dict]:
        """The service's JSON lines that `wanted` picks, once at least `count` are there; after
        `timeout` s, those there are, for the caller's assertions to judge. Neither log reaches
        `docker logs` at once: the edge writes its access log every second (buffer=4k flush=1s,
        build/edge/nginx.conf), the API its request lines every half second (app/logs.py)."""
        return poll(lambda: [line for line in self.log_lines(service, since) if wanted(line)],
                    lambda found: len(found) >= count, timeout, 0.2)

    def container(self, service: str) -> str:
        cid = self.compose("ps", "--quiet", service).stdout.strip()
        assert cid, f"no running container for {service}"
        return cid


def new_stack(docker: Docker, tmp: Path, *, project: str, label: str, api_port: int | None = None,
              pgadmin_port: int | None = None, tls_port: int | None = None) -> Stack:
    """The stack's settings (nothing started yet): secrets and an empty env file under `tmp`,
    free ports unless given; `label` names the env file and pgAdmin's login."""
    values = write_secrets(tmp / "secrets")
    api_port, pgadmin_port = api_port or free_port(), pgadmin_port or free_port()
    tls_port = tls_port or free_port()
    email = f"{label}@example.com"
    env_file = tmp / f"{label}.env"
    env_file.write_text("")
    env = {**os.environ, "SECRETS_DIR": str(tmp / "secrets"), "API_PORT": str(api_port),
           "API_TLS_PORT": str(tls_port), "PGADMIN_PORT": str(pgadmin_port), "PGADMIN_DEFAULT_EMAIL": email,
           "DATA_VOLUME": f"{project}_pgdata", **GENEROUS_EDGE_LIMITS}
    for name in FOREIGN_COMPOSE_SETTINGS:
        env.pop(name, None)
    bundle = ca_bundle()
    if bundle is not None:
        env["EXTRA_CA_BUNDLE"] = str(bundle)
    return Stack(docker=docker, project=project, env_file=env_file, env=env,
                 api_url=f"http://127.0.0.1:{api_port}", api_tls_url=f"https://localhost:{tls_port}",
                 tls_cert=tmp / "secrets" / "tls.crt", pgadmin_url=f"http://127.0.0.1:{pgadmin_port}",
                 pgadmin_email=email, secrets=values)


@contextmanager
def running_stack(stack: Stack) -> Iterator[Stack]:
    """The stack up and healthy, leftovers of an earlier run removed first; removed at the end."""
    stack.down("--volumes")
    try:
        started = time.monotonic()
        stack.up()
        stack.api_key, stack.read_key = stack.create_key("tests", "write"), stack.create_key("tests-read", "read")
        print(f"\n[{stack.project}] stack healthy in {time.monotonic() - started:.1f} s "
              f"(API {stack.api_url} and {stack.api_tls_url}, pgAdmin {stack.pgadmin_url})")
        yield stack
    finally:
        stack.down("--volumes")
