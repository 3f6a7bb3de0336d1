"""Our prod stack as the benchmark runs it: compose.yaml + compose.prod.yaml (+ the benchmark's
layer, bench/compose.bench.yaml), services `postgres`, `flask-api` and `edge`, under a compose
project of its own, on free ports of 127.0.0.1, with random secrets and a self-signed TLS pair in a
temporary directory, so that nothing of a developer's own stack or .env leaks in. Our API runs
as it ships, with API keys required: once it is up, the run makes its own key inside the API
container (`python -m app keys create`, as `make key` does), which only the load generators'
environment and the harness's memory ever hold.

It also builds every image the run measures (ours, the edge, the peers, the footprint comparison)
and seeds the data; `containers` starts the other candidates beside it."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from .cgroup import cpu_counter, memory_counter
from .config import (
    BENCH,
    COMPARISON_IMAGE,
    COMPOSE_FILES,
    EDGE_IMAGE,
    EDGE_ROUTES,
    EDGES,
    ENGINE_DIR,
    HOST_CA_BUNDLE,
    OUR_IMAGE,
    OUR_SETTINGS,
    PEERS,
    ROOT,
    VENV_STAGE_IMAGE,
    Settings,
)
from .shell import Docker, free_port, log, run, wait_http_ok

# Variables that would make Compose read other files, start other services or mount another TLS
# pair than the run's own (the Makefile exports TLS_CERT_FILE/TLS_KEY_FILE for `make up`).
FOREIGN_SETTINGS = ("COMPOSE_PROJECT_NAME", "COMPOSE_FILE", "COMPOSE_PROFILES", "TLS_CERT_FILE",
                    "TLS_KEY_FILE")
EDGE_PORTS = {False: 8080, True: 8443}      # the edge's HTTP and HTTPS ports, by TLS


@dataclass
class Candidate:
    """An API under test: a running container, reached on its own loopback or a published port.
    Through the edge, the container is the edge's and `upstream` the API behind it."""

    key: str
    label: str
    container: str
    port: int          # inside the container
    host_port: int     # published on 127.0.0.1
    scheme: str = "http"
    upstream: Candidate | None = None
    api_key: str = ""   # sent as `Authorization: Bearer` when set (ours, and the edge in front of it)
    pid: int = 0
    backend_ip: str = ""
    cpu: Path | None = None
    memory: Path | None = None

    def refresh(self, docker: Docker) -> None:
        """Read the container's pid, cgroup counters and backend address again (they change on restart)."""
        info = docker.inspect(self.container)
        self.pid = info["State"]["Pid"]
        self.cpu = cpu_counter(self.pid)
        self.memory = memory_counter(self.pid)
        for name, net in info["NetworkSettings"]["Networks"].items():
            if name.endswith("_backend"):
                self.backend_ip = net["IPAddress"]

    @property
    def url(self) -> str:
        """Its published address (an HTTPS candidate's certificate names 127.0.0.1)."""
        return f"{self.scheme}://127.0.0.1:{self.host_port}"

    @property
    def ready_url(self) -> str:
        return f"{self.url}/health/ready"

    @property
    def headers(self) -> dict[str, str]:
        """The headers every request to it carries: its API key, if it needs one."""
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


def _ca_bundle() -> Path | None:
    if os.environ.get("EXTRA_CA_BUNDLE"):
        return Path(os.environ["EXTRA_CA_BUNDLE"])
    return HOST_CA_BUNDLE if HOST_CA_BUNDLE.exists() else None


class Stack:
    """Our stack and everything the run started beside it (`candidates`, by key)."""

    def __init__(self, settings: Settings, docker: Docker):
        self.settings = settings
        self.docker = docker
        self.tmp = Path(tempfile.mkdtemp(prefix="items-bench-"))
        self.secrets: dict[str, str] = {}
        self.env: dict[str, str] = {}
        self.env_file = self.tmp / "bench.env"
        self.candidates: dict[str, Candidate] = {}
        self.pg_container = ""
        self.pg_cpu: Path | None = None
        self.id_range = (1, settings.seed_items)
        self.ca_bundle = _ca_bundle()
        self.tls_cert = self.tmp / "secrets" / "tls.crt"    # the edge's, self-signed for localhost

    @contextlib.contextmanager
    def session(self) -> Iterator[Stack]:
        """The stack's environment, leftovers of an earlier run removed; afterwards everything
        the run started is removed too, unless the settings say keep."""
        self.prepare_env()
        self.cleanup()
        try:
            yield self
        finally:
            if not self.settings.keep:
                self.cleanup()
                shutil.rmtree(self.tmp, ignore_errors=True)

    def compose(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        files = [a for f in COMPOSE_FILES for a in ("-f", f)]
        return self.docker("compose", "--env-file", str(self.env_file), "-p", self.settings.project, *files,
                           *args, check=check, timeout=timeout, env=self.env)

    def _write_secrets(self) -> Path:
        secrets_dir = self.tmp / "secrets"
        secrets_dir.mkdir(mode=0o700)
        # Every file secret the compose files name (backup_db_password: PostgreSQL's init script
        # makes the backup role with it, though the benchmark does not start the backup service;
        # likewise monitoring_db_password and the monitoring role).
        for name in ("postgres_password", "app_db_password", "pgadmin_password", "backup_db_password",
                     "monitoring_db_password"):
            self.secrets[name] = secrets.token_urlsafe(32)
            path = secrets_dir / name
            path.write_text(self.secrets[name] + "\n")
            path.chmod(0o644)  # bind-mounted, read by the containers' own users
        run(["sh", str(ROOT / "tools" / "self_signed_tls.sh"), str(self.tls_cert),
             str(secrets_dir / "tls.key")])
        return secrets_dir

    def prepare_env(self) -> None:
        secrets_dir = self._write_secrets()
        self.env_file.write_text("")  # a user's .env must not change the stack under test
        # Only what the benchmark is told, else the stack's own defaults.
        env = {k: v for k, v in os.environ.items()
               if k not in (*FOREIGN_SETTINGS, *OUR_SETTINGS) and not k.startswith("EDGE_")}
        env.update(self.settings.ours_env)
        env["API_AUTH"] = "required"    # as it ships, whatever the caller's environment says
        # The database's volume is external (compose.yaml): made by `start`, removed by `cleanup`.
        env.update({"DATA_VOLUME": f"{self.settings.project}_pgdata",
                    "SECRETS_DIR": str(secrets_dir), "BENCH_API_PORT": str(free_port()),
                    "API_PORT": str(free_port()), "API_TLS_PORT": str(free_port()),
                    "PGADMIN_PORT": str(free_port())})
        if self.ca_bundle is not None:
            env["EXTRA_CA_BUNDLE"] = str(self.ca_bundle)
        if ENGINE_DIR.exists():
            env["PATH"] = f"{ENGINE_DIR}/usr/sbin:{ENGINE_DIR}/usr/bin:{env.get('PATH', '')}"
        self.env = env

    def cleanup(self) -> None:
        labelled = self.docker("ps", "-aq", "--filter", f"label=items-bench.project={self.settings.project}",
                               check=False).stdout.split()
        if labelled:
            self.docker("rm", "-f", *labelled, check=False)
        if self.env:
            self.compose("down", "--volumes", "--remove-orphans", check=False, timeout=300)
            self.docker("volume", "rm", "--force", self.env["DATA_VOLUME"], check=False)

    # ---------------------------------------------------------------- images

    def buildx(self, *args: str, ca_secret: bool = True) -> None:
        """`docker buildx build`, with the CA bundle as the build secret the Dockerfiles expect."""
        secret = ["--secret", f"id=extra_ca,src={self.ca_bundle}"] if ca_secret and self.ca_bundle else []
        self.docker("buildx", "build", "--progress=plain", *secret, *args, timeout=1800)

    def _build_comparison(self) -> None:
        """Python base image + exactly our venv: the product Dockerfile's own builder stage."""
        self.buildx("-f", "build/Dockerfile", "--target", "build", "-t", VENV_STAGE_IMAGE, ".")
        self.buildx("-f", "bench/footprint/Dockerfile", "--build-arg", f"VENV_STAGE={VENV_STAGE_IMAGE}",
                    "-t", COMPARISON_IMAGE, ".", ca_secret=False)

    def build_images(self) -> dict[str, float]:
        """Build ours, the edge, the peers and the footprint comparison image; seconds each took."""
        def timed(image: str, build: Callable[[], object]) -> float:
            started = time.monotonic()
            build()
            seconds = time.monotonic() - started
            log(f"built {image} in {seconds:.1f} s")
            return seconds

        builds = {"ours_s": timed(OUR_IMAGE, partial(self.compose, "build", "flask-api", timeout=1800)),
                  "edge_s": timed(EDGE_IMAGE, partial(self.compose, "build", "edge", timeout=1800))}
        for key, peer in PEERS.items():
            builds[f"{key}_s"] = timed(peer.image, partial(self.buildx, "-t", peer.image,
                                                           str(BENCH / "peers" / peer.directory)))
        builds["comparison_s"] = timed(COMPARISON_IMAGE, self._build_comparison)
        return builds

    # ---------------------------------------------------------------- ours

    def start(self) -> Candidate:
        """`compose up --wait` of postgres, flask-api and edge; our API is the candidate "ours" (with a
        key of its own), the edge in front of it the candidates of EDGE_ROUTES with api "ours"."""
        t = time.monotonic()
        self.docker("volume", "create", "--label", "items.data=true", self.env["DATA_VOLUME"])
        r = self.compose("up", "--detach", "--wait", "--wait-timeout", "240", "postgres", "flask-api", "edge",
                         check=False, timeout=600)
        if r.returncode != 0:
            logs = self.compose("logs", "--no-color", "--tail", "80", check=False).stdout
            raise RuntimeError(f"compose up failed:\n{r.stderr[-3000:]}\n{logs[-6000:]}")
        log(f"stack {self.settings.project} healthy in {time.monotonic() - t:.1f} s")
        self.pg_container = self.compose("ps", "--quiet", "postgres").stdout.strip()
        self.pg_cpu = cpu_counter(self.docker.inspect(self.pg_container)["State"]["Pid"])
        api = self.compose("ps", "--quiet", "flask-api").stdout.strip()
        label = "ours (Flask + psycopg 3 pool + Granian)"
        ours = Candidate("ours", label, api, 5000, int(self.env["BENCH_API_PORT"]))
        ours.refresh(self.docker)
        self.candidates["ours"] = ours
        wait_http_ok(ours.ready_url, 60)
        ours.api_key = self.create_key("bench", "write")
        edge = self.compose("ps", "--quiet", "edge").stdout.strip()
        self.add_edge(edge, "ours", {False: int(self.env["API_PORT"]), True: int(self.env["API_TLS_PORT"])})
        return ours

    def add_edge(self, container: str, api: str, host_ports: dict[bool, int]) -> None:
        """The routes of EDGE_ROUTES through the edge `container` to `api`: its HTTP and HTTPS ports."""
        for route in EDGE_ROUTES.values():
            if route.api == api:
                c = Candidate(route.key, route.label, container, EDGE_PORTS[route.tls], host_ports[route.tls],
                              scheme="https" if route.tls else "http", upstream=self.candidates[api],
                              api_key=self.candidates[api].api_key)
                c.refresh(self.docker)
                self.candidates[route.key] = c
        wait_http_ok(self.candidates[EDGES[api]].ready_url, 60)

    def create_key(self, name: str, scope: str) -> str:
        """A new API key, made inside our API container as `make key` does: only its stdout holds it."""
        key = self.compose("exec", "-T", "flask-api", "python", "-m", "app", "keys", "create",
                           "--name", name, "--scope", scope).stdout.strip()
        if not key:
            raise RuntimeError("`python -m app keys create` printed no key")
        log(f"API key {name!r} ({scope}) created for the load")
        return key

    def ours_info(self) -> dict:
        """`docker inspect` of our API container."""
        return self.docker.inspect(self.candidates["ours"].container)

    def our_config(self) -> dict[str, str]:
        env = dict(e.split("=", 1) for e in self.ours_info()["Config"]["Env"])
        return {k: env.get(k, "") for k in OUR_SETTINGS}

    def pool_budget(self) -> int:
        """Most PostgreSQL connections our API may open: WORKERS × DB_POOL_MAX (the app's defaults)."""
        cfg = self.our_config()
        workers = int(cfg["WORKERS"] or 1)
        pool_min = int(cfg["DB_POOL_MIN"] or 2)
        pool_max = int(cfg["DB_POOL_MAX"] or max(4, pool_min))
        return workers * pool_max

    # ---------------------------------------------------------------- data

    def psql(self, sql: str, db: str = "appdb") -> str:
        return self.docker("exec", self.pg_container, "psql", "-U", "postgres", "-d", db, "-v",
                           "ON_ERROR_STOP=1", "-AtqX", "-c", sql).stdout.strip()

    def seed(self) -> None:
        """The seeded items GET and PATCH pick from, and pgbench's own tables (scale 1)."""
        n = self.settings.seed_items
        self.psql(
            "INSERT INTO app.items (name, description, price, quantity) "
            f"SELECT 'seed-' || g, 'Seeded item number ' || g, round((g % 10000) / 100.0 + 1, 2), g % 1000 "
            f"FROM generate_series(1, {n}) g"
        )
        self.psql("VACUUM ANALYZE app.items")
        lo, hi = self.psql(f"SELECT min(id), max(id) FROM (SELECT id FROM app.items ORDER BY id LIMIT {n}) s"
                           ).split("|")
        self.id_range = (int(lo), int(hi))
        self.psql("CREATE DATABASE pgbench", db="postgres")
        self.docker("exec", self.pg_container, "pgbench", "-U", "postgres", "-i", "-s", "1", "-q", "pgbench")
        log(f"seeded {n} items (ids {lo}..{hi}) and pgbench scale 1")
