#!/usr/bin/env python3
"""`make bench`: the product against its peers and against this machine's limits, in one run.

What runs (see bench/README.md for the why of each choice):

* our prod stack (compose.yaml + compose.prod.yaml, own project name, free
  ports, own secrets), only the services `postgres` and `flask-api`;
* the two peers under bench/peers/, in containers with the same resource
  limits as our API container, against the same PostgreSQL and table;
* the framework ceiling: a constant Flask route in the product image, served
  by the product's own Granian settings (bench/ceiling/);
* PostgreSQL's ceiling: `pgbench -S -M prepared` over TCP loopback, same
  concurrency.

Throughput is closed-loop (wrk), alternating candidates within each
repetition, medians over repetitions. Latency percentiles come from a
fixed-rate generator (bench/loadgen.py) at 70% of the slowest peer's
throughput. Load goes to 127.0.0.1 only: inside each container's network
namespace (nsenter, as root) or else through the port published on 127.0.0.1.

Results: <out>/latest.json, latest.md, latest.png; the ratios and how they
compare with the issue's targets are printed. Nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import random
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
COMPOSE_FILES = ("compose.yaml", "compose.prod.yaml")
OUR_IMAGE = "items-api:local"
BASE_IMAGE = "python:3.14-slim-trixie"
PG_IMAGE = "postgres:18-trixie"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
ENGINE_DIR = Path("/opt/docker-engine")
# Variables of the product's configuration that the benchmark passes through to the stack.
OUR_SETTINGS = ("WORKERS", "BLOCKING_THREADS", "DB_POOL_MIN", "DB_POOL_MAX", "DB_POOL_TIMEOUT", "LOG_LEVEL")
SCENARIOS = ("get", "list", "post", "patch", "mix")
LATENCY_SCENARIOS = ("get", "mix")
SCENARIO_LABELS = {
    "get": "GET /items/<id>",
    "list": "GET /items?limit=20",
    "post": "POST /items",
    "patch": "PATCH /items/<id>",
    "mix": "mix (70% get, 15% list, 10% patch, 5% post)",
}
PEERS = {
    "flask": {
        "label": "Flask + Flask-SQLAlchemy + psycopg2 + Gunicorn sync",
        "dir": "flask_sqlalchemy",
        "image": "items-bench-peer-flask-sqlalchemy:local",
        "port": 5000,
        "driver": "postgresql+psycopg2",
        # 5 sync workers of ~45 MiB each: at our 256 MiB they sit at the limit.
        "limits": {"--memory": "1g", "--memory-swap": "1g"},
    },
    "fastapi": {
        "label": "FastAPI + SQLModel + Uvicorn workers",
        "dir": "fastapi_sqlmodel",
        "image": "items-bench-peer-fastapi-sqlmodel:local",
        "port": 8000,
        "driver": "postgresql+psycopg",
        # 4 Uvicorn workers of ~90 MiB each: at our 256 MiB the kernel OOM-kills them while they start.
        # Each worker runs sync endpoints on anyio's pool of up to 40 threads: at our 64 pids
        # threads fail to start ("can't start new thread") under load.
        "limits": {"--memory": "1g", "--memory-swap": "1g", "--pids-limit": "512"},
    },
}
COMPARISON_IMAGE = "items-bench-base-venv:local"
VENV_STAGE_IMAGE = "items-bench-venv-stage:local"
REBUILD_IMAGE = "items-bench-rebuild:local"

# The targets (issue 6, "Targets").
TARGETS = {
    "get_vs_flask": 2.5,
    "get_vs_fastapi": 4.0,
    "mix_vs_flask": 2.0,
    "mix_vs_fastapi": 3.0,
    "get_vs_ceiling": 0.6,
    "p99_vs_peer": 0.5,
    "scaling": 0.9,
    "cold_start_s": 2.0,
    "rebuild_s": 15.0,
}


def rotate(items: list, n: int) -> list:
    """`items` starting at position n (mod len): who goes first changes between repetitions."""
    n %= max(1, len(items))
    return items[n:] + items[:n]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- commands


def docker_binary() -> str:
    found = shutil.which("docker")
    if found:
        return found
    candidate = ENGINE_DIR / "usr/bin/docker"
    if candidate.exists():
        return str(candidate)
    raise SystemExit("bench: no docker client (PATH or /opt/docker-engine; see .ci/engine.sh)")


def run(cmd: list[str], *, check: bool = True, timeout: float = 600, env: dict | None = None,
        cwd: Path = ROOT, capture: bool = True, stdin=None) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, stdout=subprocess.PIPE if capture else None,
                       stderr=subprocess.PIPE if capture else None, text=True,
                       timeout=timeout, env=env, cwd=cwd, stdin=stdin, check=False)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}\n{(r.stdout or '')[-3000:]}\n"
                           f"{(r.stderr or '')[-3000:]}")
    return r


class Docker:
    def __init__(self) -> None:
        self.binary = docker_binary()

    def __call__(self, *args: str, check: bool = True, timeout: float = 600,
                 env: dict | None = None) -> subprocess.CompletedProcess:
        return run([self.binary, *args], check=check, timeout=timeout, env=env)

    def inspect(self, obj: str) -> dict:
        return json.loads(self("inspect", obj).stdout)[0]

    def exists(self, kind: str, name: str) -> bool:
        return self(kind, "inspect", name, check=False).returncode == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url: str, timeout: float = 1.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, ValueError):
        return None


def wait_http_ok(url: str, timeout: float, interval: float = 0.02) -> float:
    """Seconds until `url` answers 200; raises after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if http_status(url) == 200:
            return time.monotonic() - started
        time.sleep(interval)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f} s")


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("installing wrk from Debian's packages")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-q"], env=env, timeout=300)
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "wrk"], env=env, timeout=300)
        found = shutil.which("wrk")
    if not found:
        raise SystemExit("bench: wrk is missing (apt-get install wrk)")
    return found


def cpu_counter(pid: int) -> Path | None:
    """The file that counts the CPU time of `pid`'s cgroup (a container), v1 or v2; None if unknown."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        mounts = [line.split() for line in Path("/proc/self/mounts").read_text().splitlines()]
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "cpuacct" in controllers.split(","):
            for m in mounts:
                if m[2] == "cgroup" and "cpuacct" in m[3].split(","):
                    f = Path(m[1]) / path.lstrip("/") / "cpuacct.usage"
                    if f.exists():
                        return f
    for line in lines:
        if line.startswith("0::"):
            for m in mounts:
                if m[2] == "cgroup2":
                    f = Path(m[1]) / line[3:].lstrip("/") / "cpu.stat"
                    if f.exists():
                        return f
    return None


def cpu_seconds(counter: Path | None) -> float:
    if counter is None:
        return float("nan")
    try:
        text = counter.read_text()
    except OSError:
        return float("nan")
    if counter.name == "cpuacct.usage":
        return int(text) / 1e9
    for line in text.splitlines():
        if line.startswith("usage_usec "):
            return int(line.split()[1]) / 1e6
    return float("nan")


def median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]  # failed runs count as missing, not as zero
    return statistics.median(values) if values else float("nan")


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else float("nan")


# --------------------------------------------------------------------------- settings


@dataclass
class Settings:
    smoke: bool = False
    duration: int = 6           # seconds per closed-loop run
    reps: int = 3               # alternating repetitions
    warmup: int = 2             # seconds per candidate and scenario before the first repetition
    connections: int = 32
    high_connections: int = 256
    latency_duration: float = 8.0
    latency_warmup: float = 2.0
    latency_reps: int = 3
    latency_fraction: float = 0.7
    seed_items: int = 10_000
    cold_start_reps: int = 3
    project: str = "items-bench"
    out: Path = BENCH / "results"
    keep: bool = False
    build: bool = True
    ours_env: dict[str, str] = field(default_factory=dict)
    chart: bool = True

    @classmethod
    def for_smoke(cls, **kw) -> Settings:
        return cls(smoke=True, duration=1, reps=1, warmup=0, latency_duration=1.0, latency_warmup=0.5,
                   latency_reps=1, seed_items=1000, cold_start_reps=1, project="items-bench-smoke",
                   out=BENCH / "results" / "tmp" / "smoke", **kw)


# --------------------------------------------------------------------------- candidates


@dataclass
class Candidate:
    key: str
    label: str
    container: str
    port: int          # inside the container
    host_port: int     # published on 127.0.0.1
    pid: int = 0
    backend_ip: str = ""
    cpu: Path | None = None

    def refresh(self, docker: Docker) -> None:
        info = docker.inspect(self.container)
        self.pid = info["State"]["Pid"]
        self.cpu = cpu_counter(self.pid)
        for name, net in info["NetworkSettings"]["Networks"].items():
            if name.endswith("_backend"):
                self.backend_ip = net["IPAddress"]

    @property
    def ready_url(self) -> str:
        return f"http://127.0.0.1:{self.host_port}/health/ready"


def context_copy(ctx: Path) -> Path:
    """A copy of what build/Dockerfile's context holds (the .dockerignore allowlist and the Dockerfile)."""
    ctx.mkdir(parents=True)
    shutil.copytree(ROOT / "app", ctx / "app", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(ROOT / "build", ctx / "build")
    (ctx / "requirements").mkdir()
    shutil.copy2(ROOT / "requirements" / "prod.txt", ctx / "requirements" / "prod.txt")
    shutil.copy2(ROOT / ".dockerignore", ctx / ".dockerignore")
    return ctx


class Bench:
    def __init__(self, settings: Settings):
        self.s = settings
        self.docker = Docker()
        self.wrk = ensure_wrk()
        self.nsenter = shutil.which("nsenter") if os.geteuid() == 0 else None
        self.tmp = Path(tempfile.mkdtemp(prefix="items-bench-"))
        self.secrets: dict[str, str] = {}
        self.env: dict[str, str] = {}
        self.env_file = self.tmp / "bench.env"
        self.candidates: dict[str, Candidate] = {}
        self.pg_container = ""
        self.pg_cpu: Path | None = None
        self.id_range = (1, settings.seed_items)
        self.run_tag = uuid.uuid4().hex[:8]
        self.results: dict = {
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(settings).items()},
            "runs": [],
            "latency_runs": [],
            "builds": {},
            "footprint": {},
            "pg_connections": {},
        }
        self.monitor: PgMonitor | None = None
        self.ca_bundle = Path(os.environ["EXTRA_CA_BUNDLE"]) if os.environ.get("EXTRA_CA_BUNDLE") else (
            HOST_CA_BUNDLE if HOST_CA_BUNDLE.exists() else None)

    # ---------------------------------------------------------------- stack

    def compose(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        files = [a for f in COMPOSE_FILES for a in ("-f", f)]
        return self.docker("compose", "--env-file", str(self.env_file), "-p", self.s.project, *files, *args,
                           check=check, timeout=timeout, env=self.env)

    def prepare_env(self) -> None:
        secrets_dir = self.tmp / "secrets"
        secrets_dir.mkdir(mode=0o700)
        for name in ("postgres_password", "app_db_password", "pgadmin_password"):
            self.secrets[name] = secrets.token_urlsafe(32)
            path = secrets_dir / name
            path.write_text(self.secrets[name] + "\n")
            path.chmod(0o644)  # bind-mounted, read by the containers' own users
        self.env_file.write_text("")  # a user's .env must not change the stack under test
        env = {k: v for k, v in os.environ.items() if k not in ("COMPOSE_PROJECT_NAME", "COMPOSE_FILE")}
        for k in OUR_SETTINGS:  # only what the benchmark is told, else the stack's own defaults
            env.pop(k, None)
        env.update(self.s.ours_env)
        env.update({"SECRETS_DIR": str(secrets_dir), "API_PORT": str(free_port()),
                    "PGADMIN_PORT": str(free_port())})
        if self.ca_bundle is not None:
            env["EXTRA_CA_BUNDLE"] = str(self.ca_bundle)
        if ENGINE_DIR.exists():
            env["PATH"] = f"{ENGINE_DIR}/usr/sbin:{ENGINE_DIR}/usr/bin:{env.get('PATH', '')}"
        self.env = env

    def cleanup(self) -> None:
        labelled = self.docker("ps", "-aq", "--filter", f"label=items-bench.project={self.s.project}",
                               check=False).stdout.split()
        if labelled:
            self.docker("rm", "-f", *labelled, check=False)
        if self.env:
            self.compose("down", "--volumes", "--remove-orphans", check=False, timeout=300)

    def build_images(self) -> None:
        secret = ["--secret", f"id=extra_ca,src={self.ca_bundle}"] if self.ca_bundle else []
        builds = self.results["builds"]
        t = time.monotonic()
        self.compose("build", "flask-api", timeout=1800)
        builds["ours_s"] = time.monotonic() - t
        log(f"built {OUR_IMAGE} in {builds['ours_s']:.1f} s")
        for key, peer in PEERS.items():
            t = time.monotonic()
            self.docker("buildx", "build", "--progress=plain", *secret, "-t", peer["image"],
                        str(BENCH / "peers" / peer["dir"]), timeout=1800)
            builds[f"{key}_s"] = time.monotonic() - t
            log(f"built {peer['image']} in {builds[f'{key}_s']:.1f} s")
        # Python base image + exactly our venv: the product Dockerfile's own builder stage.
        t = time.monotonic()
        self.docker("buildx", "build", "--progress=plain", *secret, "-f", "build/Dockerfile",
                    "--target", "build", "-t", VENV_STAGE_IMAGE, ".", timeout=1800)
        self.docker("buildx", "build", "--progress=plain", "-f", "bench/footprint/Dockerfile",
                    "--build-arg", f"VENV_STAGE={VENV_STAGE_IMAGE}", "-t", COMPARISON_IMAGE, ".",
                    timeout=1800)
        builds["comparison_s"] = time.monotonic() - t
        log(f"built {COMPARISON_IMAGE} in {builds['comparison_s']:.1f} s")

    def start_stack(self) -> None:
        t = time.monotonic()
        r = self.compose("up", "--detach", "--wait", "--wait-timeout", "240", "postgres", "flask-api",
                         check=False, timeout=600)
        if r.returncode != 0:
            logs = self.compose("logs", "--no-color", "--tail", "80", check=False).stdout
            raise RuntimeError(f"compose up failed:\n{r.stderr[-3000:]}\n{logs[-6000:]}")
        log(f"stack {self.s.project} healthy in {time.monotonic() - t:.1f} s")
        self.pg_container = self.compose("ps", "--quiet", "postgres").stdout.strip()
        self.pg_cpu = cpu_counter(self.docker.inspect(self.pg_container)["State"]["Pid"])
        api = self.compose("ps", "--quiet", "flask-api").stdout.strip()
        port = int(self.env["API_PORT"])
        self.candidates["ours"] = Candidate("ours", "ours (Flask + psycopg 3 pool + Granian)", api, 5000, port)
        self.candidates["ours"].refresh(self.docker)
        wait_http_ok(self.candidates["ours"].ready_url, 60)

    def our_config(self) -> dict[str, str]:
        env = dict(e.split("=", 1) for e in self.docker.inspect(self.candidates["ours"].container)["Config"]["Env"])
        return {k: env.get(k, "") for k in OUR_SETTINGS}

    def pool_budget(self) -> int:
        cfg = self.our_config()
        workers = int(cfg["WORKERS"] or 1)
        pool_min = int(cfg["DB_POOL_MIN"] or 2)
        pool_max = int(cfg["DB_POOL_MAX"] or max(4, pool_min))
        return workers * pool_max

    def psql(self, sql: str, db: str = "appdb") -> str:
        return self.docker("exec", self.pg_container, "psql", "-U", "postgres", "-d", db, "-v",
                           "ON_ERROR_STOP=1", "-AtqX", "-c", sql).stdout.strip()

    def seed(self) -> None:
        n = self.s.seed_items
        self.psql(
            "INSERT INTO app.items (name, description, price, quantity) "
            f"SELECT 'seed-' || g, 'Seeded item number ' || g, round((g % 10000) / 100.0 + 1, 2), g % 1000 "
            f"FROM generate_series(1, {n}) g"
        )
        self.psql("VACUUM ANALYZE app.items")
        lo, hi = self.psql(f"SELECT min(id), max(id) FROM (SELECT id FROM app.items ORDER BY id LIMIT {n}) s").split("|")
        self.id_range = (int(lo), int(hi))
        self.psql("CREATE DATABASE pgbench", db="postgres")
        self.docker("exec", self.pg_container, "pgbench", "-U", "postgres", "-i", "-s", "1", "-q", "pgbench")
        log(f"seeded {n} items (ids {lo}..{hi}) and pgbench scale 1")

    def limits(self, overrides: dict[str, str] | None = None) -> list[str]:
        """`docker run` options for the resource limits of our API container (with `overrides`)."""
        host = self.docker.inspect(self.candidates["ours"].container)["HostConfig"]
        opts = []
        if host.get("NanoCpus"):
            opts += ["--cpus", f"{host['NanoCpus'] / 1e9:g}"]
        if host.get("Memory"):
            opts += ["--memory", str(host["Memory"])]
            if host.get("MemorySwap"):
                opts += ["--memory-swap", str(host["MemorySwap"])]
        if host.get("PidsLimit"):
            opts += ["--pids-limit", str(host["PidsLimit"])]
        logc = host.get("LogConfig") or {}
        if logc.get("Type"):
            opts += ["--log-driver", logc["Type"]]
            for k, v in (logc.get("Config") or {}).items():
                opts += ["--log-opt", f"{k}={v}"]
        self.results["limits"] = {"docker_run_options": opts}
        for flag, value in (overrides or {}).items():
            if flag in opts:
                opts[opts.index(flag) + 1] = value
            else:
                opts += [flag, value]
        return opts

    def networks(self) -> tuple[str, str]:
        nets = self.docker.inspect(self.candidates["ours"].container)["NetworkSettings"]["Networks"]
        backend = next(n for n in nets if n.endswith("_backend"))
        edge = next(n for n in nets if n.endswith("_edge"))
        return backend, edge

    def start_container(self, key: str, label: str, name: str, port: int, options: list[str],
                        image_and_cmd: list[str], limits: dict[str, str] | None = None) -> Candidate:
        backend, edge = self.networks()
        host_port = free_port()
        self.docker("rm", "-f", name, check=False)
        self.docker("create", "--name", name, "--label", f"items-bench.project={self.s.project}",
                    "--network", edge, "-p", f"127.0.0.1:{host_port}:{port}",
                    *self.limits(limits), *options, *image_and_cmd)
        self.docker("network", "connect", backend, name)
        self.docker("start", name)
        c = Candidate(key, label, name, port, host_port)
        try:
            wait_http_ok(c.ready_url, 90)
        except RuntimeError:
            logs = self.docker("logs", "--tail", "60", name, check=False)
            raise RuntimeError(f"{name} did not get ready:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}") from None
        c.refresh(self.docker)
        return c

    def start_peers(self) -> None:
        pw = self.secrets["app_db_password"]
        for key, peer in PEERS.items():
            url = f"{peer['driver']}://app:{pw}@postgres:5432/appdb"
            self.candidates[key] = self.start_container(
                key, peer["label"], f"{self.s.project}-peer-{key}", peer["port"],
                ["-e", f"DATABASE_URL={url}"], [peer["image"]], peer.get("limits"))
            self.results.setdefault("peer_limit_overrides", {})[key] = peer.get("limits", {})
        log("peers ready")

    def hardening(self, info: dict) -> list[str]:
        """`docker run` options for the hardening of a container we inspected (ours)."""
        host = info["HostConfig"]
        options = ["--user", info["Config"].get("User") or "10001:10001"]
        if host.get("ReadonlyRootfs"):
            options.append("--read-only")
        for cap in host.get("CapDrop") or []:
            options += ["--cap-drop", cap]
        for opt in host.get("SecurityOpt") or []:
            options += ["--security-opt", opt]
        if host.get("Init"):
            options.append("--init")
        return options

    def start_ceiling(self, source: str = "ours", key: str = "ceiling") -> Candidate:
        """A constant Flask route in our image, under the Granian settings and hardening of `source`."""
        info = self.docker.inspect(self.candidates[source].container)
        env = [e for e in info["Config"]["Env"] if e.split("=", 1)[0] in OUR_SETTINGS or e.startswith("MAX_BODY")]
        options = [*self.hardening(info),
                   "-v", f"{BENCH / 'ceiling'}:/bench:ro", "-e", "PYTHONPATH=/bench:/app",
                   # Read by the product's Config, never connected to.
                   "-e", "DATABASE_URL=postgresql://ceiling@127.0.0.1:1/none",
                   "--entrypoint", "python"]
        for e in env:
            options += ["-e", e]
        c = self.start_container(
            key, "framework ceiling (constant Flask route, same Granian settings)",
            f"{self.s.project}-{key}", 5000, options, [info["Config"]["Image"], "/bench/serve_ceiling.py"])
        self.candidates[key] = c
        log(f"framework ceiling {key} ready")
        return c

    def clone_ours(self, key: str, overrides: dict[str, str]) -> Candidate:
        """Our API once more, as compose runs it (image, environment, secret, limits, hardening,
        networks), with other settings: configurations measured side by side, not one after another."""
        info = self.docker.inspect(self.candidates["ours"].container)
        env = dict(e.split("=", 1) for e in info["Config"]["Env"])
        overrides = dict(overrides)
        image = overrides.pop("IMAGE", None) or info["Config"]["Image"]
        env.update(overrides)
        options = self.hardening(info)
        for m in info["Mounts"]:
            if m["Type"] == "bind":
                options += ["-v", f"{m['Source']}:{m['Destination']}{'' if m['RW'] else ':ro'}"]
        for k, v in env.items():
            options += ["-e", f"{k}={v}"]
        label = "ours " + " ".join(f"{k}={v}" for k, v in overrides.items())
        name = f"{self.s.project}-{key}"
        c = self.start_container(key, label, name, 5000, options, [image])
        self.candidates[key] = c
        return c

    def contract_check(self) -> dict:
        """Every candidate answers the benchmarked reads with the same JSON as ours (values, not bytes)."""
        item_id = self.id_range[0]

        def get(c: Candidate, path: str) -> tuple[int, dict | None]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{c.host_port}{path}", timeout=10) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, None

        def same_item(a: dict, b: dict) -> bool:
            if set(a) != set(b):
                return False
            for k, value in a.items():
                if k in ("created_at", "updated_at"):
                    if dt.datetime.fromisoformat(value) != dt.datetime.fromisoformat(b[k]):
                        return False
                elif value != b[k]:
                    return False
            return True

        ours = {p: get(self.candidates["ours"], p) for p in (f"/items/{item_id}", "/items?limit=20")}
        report: dict = {"ok": True, "problems": []}
        for key in PEERS:
            for path, (status, body) in ours.items():
                pstatus, pbody = get(self.candidates[key], path)
                if pstatus != status or pbody is None or body is None:
                    ok = False
                elif "items" in body:
                    ok = (set(pbody) == set(body) and len(pbody["items"]) == len(body["items"])
                          and all(same_item(x, y) for x, y in zip(body["items"], pbody["items"]))
                          and (pbody["next_cursor"] is None) == (body["next_cursor"] is None))
                else:
                    ok = same_item(body, pbody)
                if not ok:
                    report["ok"] = False
                    report["problems"].append(f"{key} {path}: {pstatus} {json.dumps(pbody)[:300]} "
                                              f"vs ours {status} {json.dumps(body)[:300]}")
        if report["ok"]:
            log("contract check: the peers answer GET /items/<id> and GET /items?limit=20 with our JSON")
        else:
            log("contract check FAILED: " + "; ".join(report["problems"]))
        return report

    # ---------------------------------------------------------------- load

    def in_netns(self, c: Candidate) -> tuple[list[str], int]:
        """Command prefix and port for load on 127.0.0.1: the container's own loopback if we can."""
        if self.nsenter and c.pid:
            return [self.nsenter, "-t", str(c.pid), "-n", "--"], c.port
        return [], c.host_port

    def wrk_run(self, c: Candidate, scenario: str, connections: int, duration: int) -> dict:
        """One closed-loop run; a candidate that is not there (restarted, gone) is a failed run, not a crash."""
        try:
            return self._wrk_run(c, scenario, connections, duration)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            state = self.docker("inspect", "-f", "{{.State.Status}} {{.State.Pid}}", c.container, check=False)
            log(f"  {c.key} {scenario}: wrk failed ({str(e).strip().splitlines()[-1][:200]}); container: "
                f"{state.stdout.strip() or 'gone'}")
            if state.returncode == 0 and state.stdout.startswith("running"):
                c.refresh(self.docker)
                try:
                    return self._wrk_run(c, scenario, connections, duration)
                except (RuntimeError, subprocess.TimeoutExpired):
                    pass
            return {"rps": float("nan"), "requests": 0, "errors": 0, "failed": True,
                    "error_detail": {}, "p50_ms": float("nan"), "p99_ms": float("nan"),
                    "cpu_us": float("nan"), "pg_cpu_us": float("nan")}

    def _wrk_run(self, c: Candidate, scenario: str, connections: int, duration: int) -> dict:
        prefix, port = self.in_netns(c)
        env = {**os.environ, "BENCH_SCENARIO": scenario, "BENCH_ID_MIN": str(self.id_range[0]),
               "BENCH_ID_MAX": str(self.id_range[1]),
               "BENCH_TAG": f"b{self.run_tag}-{c.key}-{uuid.uuid4().hex[:6]}"}
        cmd = [*prefix, self.wrk, "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "5s",
               "-s", str(BENCH / "wrk" / "bench.lua"), f"http://127.0.0.1:{port}"]
        api0, pg0 = cpu_seconds(c.cpu), cpu_seconds(self.pg_cpu)
        r = run(cmd, env=env, timeout=duration + 60)
        api_cpu, pg_cpu = cpu_seconds(c.cpu) - api0, cpu_seconds(self.pg_cpu) - pg0
        m = re.search(r"^BENCH_RESULT (\{.*\})$", r.stdout, re.MULTILINE)
        if not m:
            raise RuntimeError(f"no result from wrk:\n{r.stdout}\n{r.stderr}")
        data = json.loads(m.group(1))
        if not data["requests"]:  # seen once: a peer that answered nothing for a whole run, no error either
            raise RuntimeError(f"wrk completed no request in {duration} s:\n{r.stdout[-1500:]}")
        seconds = data["duration_us"] / 1e6
        errors = sum(data[k] for k in ("connect", "read", "write", "status", "timeout"))
        n = max(1, data["requests"])
        return {"rps": data["requests"] / seconds if seconds else 0.0, "requests": data["requests"],
                # CPU time of the API's container and of PostgreSQL's, per request (cgroup counters)
                "cpu_us": api_cpu / n * 1e6, "pg_cpu_us": pg_cpu / n * 1e6,
                "errors": errors, "error_detail": {k: data[k] for k in ("connect", "read", "write", "status",
                                                                         "timeout")},
                "p50_ms": data["p50_us"] / 1000, "p99_ms": data["p99_us"] / 1000}

    def pgbench_run(self, connections: int, duration: int) -> dict:
        r = self.docker("run", "--rm", "--network", f"container:{self.pg_container}",
                        "-e", f"PGPASSWORD={self.secrets['postgres_password']}", "--entrypoint", "pgbench",
                        PG_IMAGE, "-h", "127.0.0.1", "-U", "postgres", "-S", "-M", "prepared", "-n",
                        "-c", str(connections), "-j", "2", "-T", str(duration), "pgbench",
                        timeout=duration + 120)
        m = re.search(r"tps = ([0-9.]+)", r.stdout)
        if not m:
            raise RuntimeError(f"no tps from pgbench:\n{r.stdout}\n{r.stderr}")
        failed = re.search(r"number of failed transactions: (\d+)", r.stdout)
        return {"rps": float(m.group(1)), "errors": int(failed.group(1)) if failed else 0}

    def record(self, rep: int, scenario: str, key: str, connections: int, result: dict) -> None:
        self.results["runs"].append({"rep": rep, "scenario": scenario, "candidate": key,
                                     "connections": connections, **result})
        errs = f", {result['errors']} errors" if result.get("errors") else ""
        errs += ", FAILED" if result.get("failed") else ""
        log(f"  rep {rep} {scenario:<6} c{connections:<3} {key:<8} {result['rps']:9.0f} req/s{errs}")

    def throughput(self) -> None:
        s = self.s
        apis = ["ours", "flask", "fastapi"]
        if s.warmup:
            log("warm-up")
            for key in apis:
                for scenario in SCENARIOS:
                    self.wrk_run(self.candidates[key], scenario, s.connections, s.warmup)
            self.wrk_run(self.candidates["ceiling"], "get", s.connections, s.warmup)
        plan = [(scn, s.connections, apis + ["ceiling", "pgbench"] if scn == "get" else apis)
                for scn in SCENARIOS]
        plan.append(("live", s.connections, ["ours"]))
        plan.append(("get", s.high_connections, apis))
        for rep in range(1, s.reps + 1):
            log(f"throughput, repetition {rep}/{s.reps}")
            for scenario, conns, keys in plan:
                order = rotate(keys, rep - 1)  # nobody always goes first
                for key in order:
                    if self.monitor:
                        self.monitor.current = (key, conns)
                    if key == "pgbench":
                        result = self.pgbench_run(conns, s.duration)
                    else:
                        result = self.wrk_run(self.candidates[key], scenario, conns, s.duration)
                    self.record(rep, scenario, key, conns, result)
        if self.monitor:
            self.monitor.current = None

    def throughput_median(self, key: str, scenario: str, conns: int | None = None) -> float:
        conns = conns or self.s.connections
        return median([r["rps"] for r in self.results["runs"]
                       if r["candidate"] == key and r["scenario"] == scenario and r["connections"] == conns])

    def latency(self) -> None:
        s = self.s
        rates = {}
        for scenario in LATENCY_SCENARIOS:
            slowest = min(self.throughput_median(k, scenario) for k in PEERS)
            rates[scenario] = max(10.0, round(s.latency_fraction * slowest))
        self.results["latency_rates"] = rates
        keys = ["ours", "flask", "fastapi"]
        for rep in range(1, s.latency_reps + 1):
            log(f"fixed-rate latency, repetition {rep}/{s.latency_reps} (rates {rates})")
            for scenario in LATENCY_SCENARIOS:
                order = rotate(keys, rep - 1)
                for key in order:
                    out = self.loadgen_run(self.candidates[key], scenario, rates[scenario], rep)
                    self.results["latency_runs"].append({"rep": rep, "candidate": key, **out})
                    log(f"  rep {rep} {scenario:<4} {key:<8} p50 {out['p50_ms']:7.2f} ms  p99 "
                        f"{out['p99_ms']:7.2f} ms  ({out['count']} requests, {out['errors']} errors, "
                        f"generator lag p99 {out['send_lag_p99_ms']:.2f} ms)")

    def loadgen_run(self, c: Candidate, scenario: str, rate: float, rep: int) -> dict:
        s = self.s
        prefix, port = self.in_netns(c)
        cmd = [*prefix, sys.executable, str(BENCH / "loadgen.py"), "--port", str(port),
               "--rate", str(rate), "--duration", str(s.latency_duration),
               "--warmup", str(s.latency_warmup), "--scenario", scenario,
               "--id-min", str(self.id_range[0]), "--id-max", str(self.id_range[1]),
               "--tag", f"l{self.run_tag}-{c.key}-{rep}-{scenario}"]
        return json.loads(run(cmd, timeout=s.latency_duration + s.latency_warmup + 120).stdout)

    # ---------------------------------------------------------------- footprint

    def memory(self) -> None:
        names = {c.container: k for k, c in self.candidates.items() if k != "ceiling"}
        r = self.docker("stats", "--no-stream", "--format", "{{.ID}}|{{.Name}}|{{.MemUsage}}", *names)
        mem = {}
        for line in r.stdout.splitlines():
            cid, name, usage = line.split("|")
            key = names.get(name) or next(k for c, k in names.items() if c.startswith(cid) or cid.startswith(c))
            mem[key] = parse_size(usage.split("/")[0])
        self.results["footprint"]["memory_mib"] = mem
        log(f"memory after the run (MiB): {fmt_dict(mem)}")

    def image_sizes(self) -> None:
        images = {"ours": OUR_IMAGE, "flask": PEERS["flask"]["image"], "fastapi": PEERS["fastapi"]["image"],
                  "python_base": BASE_IMAGE, "python_base_plus_our_venv": COMPARISON_IMAGE}
        sizes = {k: self.docker.inspect(v)["Size"] / 1e6 for k, v in images.items()}
        self.results["footprint"]["image_mb"] = sizes
        log(f"image sizes (MB): {fmt_dict(sizes)}")

    def cold_starts(self) -> None:
        keys = ["ours", "flask", "fastapi"]
        times: dict[str, list[float]] = {k: [] for k in keys}
        for rep in range(self.s.cold_start_reps):
            for key in rotate(keys, rep):
                c = self.candidates[key]
                self.docker("stop", "-t", "20", c.container, timeout=120)
                t = time.monotonic()
                self.docker("start", c.container)
                wait_http_ok(c.ready_url, 60, interval=0.02)
                times[key].append(time.monotonic() - t)
                c.refresh(self.docker)
        self.results["footprint"]["cold_start_s"] = {k: median(v) for k, v in times.items()}
        self.results["footprint"]["cold_start_all_s"] = times
        log(f"cold start, docker start to 200 on /health/ready (s): "
            f"{fmt_dict(self.results['footprint']['cold_start_s'], '.2f')}")

    def rebuild(self) -> None:
        """Rebuild our image after a one-file change under app/, with a warm cache (a copy of the context)."""
        ctx = context_copy(self.tmp / "rebuild-context")
        secret = ["--secret", f"id=extra_ca,src={self.ca_bundle}"] if self.ca_bundle else []
        cmd = ["buildx", "build", "--progress=plain", *secret, "-f", "build/Dockerfile", "-t", REBUILD_IMAGE,
               str(ctx)]
        t = time.monotonic()
        self.docker(*cmd, timeout=1800)
        unchanged = time.monotonic() - t
        target = ctx / "app" / "health.py"
        target.write_text(target.read_text() + f"\n# benchmark rebuild marker {uuid.uuid4().hex}\n")
        t = time.monotonic()
        self.docker(*cmd, timeout=1800)
        changed = time.monotonic() - t
        self.docker("image", "rm", REBUILD_IMAGE, check=False)
        self.results["footprint"]["rebuild_s"] = changed
        self.results["footprint"]["rebuild_unchanged_s"] = unchanged
        log(f"rebuild after changing app/health.py: {changed:.1f} s (nothing changed: {unchanged:.1f} s)")

    # ---------------------------------------------------------------- the run

    def execute(self) -> dict:
        s = self.s
        started = time.monotonic()
        self.prepare_env()
        self.cleanup()  # leftovers of an earlier run under the same project name
        try:
            if s.build:
                self.build_images()
            self.start_stack()
            self.seed()
            self.start_peers()
            self.start_ceiling()
            self.results["contract_check"] = self.contract_check()
            self.results["ours_config"] = self.our_config()
            self.results["pool_budget"] = self.pool_budget()
            self.results["machine"] = machine_info(self.docker)
            self.results["load_path"] = ("nsenter into each container's network namespace, 127.0.0.1"
                                         if self.nsenter else "ports published on 127.0.0.1")
            self.monitor = PgMonitor(self.docker, self.pg_container)
            self.monitor.start()
            self.throughput()
            self.latency()
            self.monitor.stop()
            self.results["pg_connections"] = self.monitor.summary(self.candidates)
            self.memory()
            self.image_sizes()
            self.cold_starts()
            self.rebuild()
        finally:
            if self.monitor:
                self.monitor.stop()
            if not s.keep:
                self.cleanup()
                shutil.rmtree(self.tmp, ignore_errors=True)
        self.results["elapsed_s"] = time.monotonic() - started
        return self.results


def tune(bench: Bench, variants: list[dict[str, str]], scenarios: tuple[str, ...], latency_rate: int = 0) -> dict:
    """Measure several configurations of our API side by side (closed loop), with their ceilings."""
    s = bench.s
    res = bench.results
    res["variants"] = {}
    bench.prepare_env()
    bench.cleanup()
    try:
        if s.build:
            bench.build_images()
        bench.start_stack()
        bench.seed()
        pw = bench.secrets["app_db_password"]
        peer = PEERS["flask"]
        bench.candidates["flask"] = bench.start_container(
            "flask", peer["label"], f"{s.project}-peer-flask", peer["port"],
            ["-e", f"DATABASE_URL={peer['driver']}://app:{pw}@postgres:5432/appdb"], [peer["image"]],
            peer.get("limits"))
        keys = []
        for i, v in enumerate(variants):
            key = f"v{i}"
            bench.clone_ours(key, v)
            bench.start_ceiling(key, f"ceiling-v{i}")
            res["variants"][key] = v
            keys.append(key)
        log(f"variants: {res['variants']}")
        for key in keys + ["flask"]:
            for scn in scenarios:
                bench.wrk_run(bench.candidates[key], scn, s.connections, max(1, s.warmup))
        plan = [(scn, s.connections, keys + ["flask"] + ([f"ceiling-{k}" for k in keys] if scn == "get" else []))
                for scn in scenarios]
        plan.append(("get", s.high_connections, keys))
        for rep in range(1, s.reps + 1):
            log(f"tuning, repetition {rep}/{s.reps}")
            for scn, conns, ks in plan:
                for key in rotate(ks, rep - 1):
                    bench.record(rep, scn, key, conns, bench.wrk_run(bench.candidates[key], scn, conns, s.duration))
        if latency_rate:
            for rep in range(1, s.latency_reps + 1):
                for key in rotate(keys + ["flask"], rep - 1):
                    out = bench.loadgen_run(bench.candidates[key], "get", latency_rate, rep)
                    res["latency_runs"].append({"rep": rep, "candidate": key, **out})
                    log(f"  rep {rep} latency get @ {latency_rate}/s {key:<6} p50 {out['p50_ms']:.2f} ms "
                        f"p99 {out['p99_ms']:.2f} ms")
    finally:
        if not s.keep:
            bench.cleanup()
            shutil.rmtree(bench.tmp, ignore_errors=True)
    rows = []
    for i, key in enumerate(res["variants"]):
        def m(k: str, scn: str, c: int = s.connections) -> float:
            return median([r["rps"] for r in res["runs"] if r["candidate"] == k and r["scenario"] == scn
                           and r["connections"] == c])
        row = {"variant": " ".join(f"{a}={b}" for a, b in res["variants"][key].items()) or "(defaults)"}
        for scn in scenarios:
            row[scn] = m(key, scn)
            row[f"{scn}_vs_flask"] = ratio(m(key, scn), m("flask", scn))
        row["ceiling"] = m(f"ceiling-{key}", "get")
        row["get_vs_ceiling"] = ratio(row.get("get", float("nan")), row["ceiling"])
        row["get_c256"] = m(key, "get", s.high_connections)
        row["scaling"] = ratio(row["get_c256"], row.get("get", float("nan")))
        row["errors"] = sum(r["errors"] for r in res["runs"] if r["candidate"] == key)
        p99 = [r["p99_ms"] for r in res["runs"] if r["candidate"] == key and r["scenario"] == "get"
               and r["connections"] == s.connections]
        row["wrk_p99_ms_get"] = median(p99)
        lat = [r for r in res["latency_runs"] if r["candidate"] == key]
        row["lat_p50_ms"] = median([r["p50_ms"] for r in lat])
        row["lat_p99_ms"] = median([r["p99_ms"] for r in lat])
        row["cpu_us_get"] = median([r["cpu_us"] for r in res["runs"] if r["candidate"] == key
                                    and r["scenario"] == "get" and r["connections"] == s.connections])
        row["pg_cpu_us_get"] = median([r["pg_cpu_us"] for r in res["runs"] if r["candidate"] == key
                                       and r["scenario"] == "get" and r["connections"] == s.connections])
        rows.append(row)
    res["tuning"] = rows
    lines = [f"Tuning run {res['started']}: {s.duration} s per run, {s.reps} alternating repetitions, wrk -t1 "
             f"-c{s.connections}; Flask peer alongside for reference ("
             + ", ".join(f"{scn} {f0(median([r['rps'] for r in res['runs'] if r['candidate'] == 'flask' and r['scenario'] == scn]))}/s"
                         for scn in scenarios)
             + (f"; Flask peer at the fixed rate: p50 {f2(median([r['p50_ms'] for r in res['latency_runs'] if r['candidate'] == 'flask']))} ms, p99 "
                f"{f2(median([r['p99_ms'] for r in res['latency_runs'] if r['candidate'] == 'flask']))} ms" if latency_rate else "")
             + ").", "",
             "| configuration | " + " | ".join(f"{scn} req/s | ÷ Flask" for scn in scenarios)
             + " | ceiling req/s | get ÷ ceiling | get c256 ÷ c32 | wrk p99 get ms | get: API CPU µs/req "
               f"| get: PostgreSQL CPU µs/req | get @ {latency_rate}/s p50 / p99 ms (fixed rate) | errors |",
             "|---|" + "---|---|" * len(scenarios) + "---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| `{row['variant']}` | " + " | ".join(f"{f0(row[scn])} | {f2(row[f'{scn}_vs_flask'])}×"
                                                            for scn in scenarios)
                     + f" | {f0(row['ceiling'])} | {f2(row['get_vs_ceiling'])}× | {f2(row['scaling'])}× | "
                       f"{f2(row['wrk_p99_ms_get'])} | {f0(row['cpu_us_get'])} | {f0(row['pg_cpu_us_get'])} | "
                       f"{f2(row['lat_p50_ms'])} / {f2(row['lat_p99_ms'])} | {row['errors']} |")
    s.out.mkdir(parents=True, exist_ok=True)
    (s.out / "tune.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (s.out / "tune.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return res


class PgMonitor:
    """Samples pg_stat_activity (connections of role `app`, by client address) four times a second."""

    QUERY = ("SELECT coalesce(string_agg(a || '=' || n, ' '), '') FROM (SELECT host(client_addr) a, count(*) n "
             "FROM pg_stat_activity WHERE usename = 'app' AND backend_type = 'client backend' GROUP BY 1) s;\n")

    def __init__(self, docker: Docker, container: str):
        self.proc = subprocess.Popen(
            [docker.binary, "exec", "-i", container, "psql", "-U", "postgres", "-d", "appdb", "-AtqX"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.peak: dict[str, int] = {}
        self.peak_loaded: dict[str, int] = {}   # ip -> peak while its own candidate was under load
        self.current: tuple[str, int] | None = None
        self.ip_of: dict[str, str] = {}
        self.samples = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _loop(self) -> None:
        assert self.proc.stdin and self.proc.stdout
        while not self._stop.is_set():
            try:
                self.proc.stdin.write(self.QUERY)
                self.proc.stdin.flush()
                line = self.proc.stdout.readline()
            except (OSError, ValueError):
                return
            if not line:
                return
            self.samples += 1
            for part in line.split():
                ip, _, n = part.partition("=")
                self.peak[ip] = max(self.peak.get(ip, 0), int(n))
                self.peak_loaded.setdefault(ip, 0)
                if self.current:
                    self.peak_loaded[f"{self.current[0]}@{self.current[1]}|{ip}"] = max(
                        self.peak_loaded.get(f"{self.current[0]}@{self.current[1]}|{ip}", 0), int(n))
            self._stop.wait(0.25)

    def stop(self) -> None:
        self._stop.set()
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self.proc.stdin.close()  # type: ignore[union-attr]
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def summary(self, candidates: dict[str, Candidate]) -> dict:
        out = {"samples": self.samples}
        for key, c in candidates.items():
            if c.backend_ip and key != "ceiling":
                out[key] = {"peak": self.peak.get(c.backend_ip, 0)}
                for conns in (32, 256):
                    v = self.peak_loaded.get(f"{key}@{conns}|{c.backend_ip}")
                    if v is not None:
                        out[key][f"peak_under_own_load_c{conns}"] = v
        return out


def parse_size(text: str) -> float:
    m = re.match(r"\s*([0-9.]+)\s*([KMGT]?i?B)", text)
    if not m:
        return float("nan")
    factor = {"B": 1 / 2**20, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024, "kB": 1e3 / 2**20, "KB": 1e3 / 2**20,
              "MB": 1e6 / 2**20, "GB": 1e9 / 2**20}.get(m.group(2), 1)
    return float(m.group(1)) * factor


def fmt_dict(d: dict, spec: str = ".0f") -> str:
    return ", ".join(f"{k} {v:{spec}}" for k, v in d.items())


def machine_info(docker: Docker) -> dict:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "kernel": platform.release(),
        "docker": docker("version", "--format", "{{.Server.Version}}", check=False).stdout.strip(),
        "wrk": run(["wrk", "-v"], check=False).stdout.splitlines()[0] if shutil.which("wrk") else "",
        "loadavg_at_start": [round(x, 2) for x in load],
    }


# --------------------------------------------------------------------------- analysis


def analyse(results: dict) -> dict:
    s = results["settings"]
    conns, high = s["connections"], s["high_connections"]
    runs = results["runs"]

    def med(key: str, scenario: str, c: int = conns) -> dict:
        values = [r["rps"] for r in runs if r["candidate"] == key and r["scenario"] == scenario
                  and r["connections"] == c and not r.get("failed")]
        sel = [r for r in runs if r["candidate"] == key and r["scenario"] == scenario and r["connections"] == c]
        errors = sum(r.get("errors", 0) for r in sel)
        return {"median": median(values), "min": min(values) if values else float("nan"),
                "max": max(values) if values else float("nan"), "n": len(values), "runs": len(sel),
                "errors": errors,
                "cpu_us": median([r["cpu_us"] for r in sel if "cpu_us" in r]),
                "pg_cpu_us": median([r["pg_cpu_us"] for r in sel if "pg_cpu_us" in r])}

    tp = {scn: {k: med(k, scn) for k in ("ours", "flask", "fastapi")} for scn in SCENARIOS}
    tp["get"]["ceiling"] = med("ceiling", "get")
    tp["get"]["pgbench"] = med("pgbench", "get")
    live = med("ours", "live")
    high_tp = {k: med(k, "get", high) for k in ("ours", "flask", "fastapi")}
    ratios = {}
    for scn in SCENARIOS:
        for peer in PEERS:
            ratios[f"{scn}_vs_{peer}"] = ratio(tp[scn]["ours"]["median"], tp[scn][peer]["median"])
    ratios["get_vs_ceiling"] = ratio(tp["get"]["ours"]["median"], tp["get"]["ceiling"]["median"])
    ratios["get_vs_pgbench"] = ratio(tp["get"]["ours"]["median"], tp["get"]["pgbench"]["median"])
    # Decomposition of the distance to the ceiling: our middleware without the database (/health/live),
    # then the database path on top of it.
    ratios["live_vs_ceiling"] = ratio(live["median"], tp["get"]["ceiling"]["median"])
    ratios["get_vs_live"] = ratio(tp["get"]["ours"]["median"], live["median"])
    for scn in SCENARIOS:
        for peer in PEERS:
            ratios[f"cpu_{scn}_{peer}_vs_ours"] = ratio(tp[scn][peer]["cpu_us"], tp[scn]["ours"]["cpu_us"])
    scaling = {k: ratio(high_tp[k]["median"], tp["get"][k]["median"]) for k in high_tp}

    lat: dict = {}
    for scn in LATENCY_SCENARIOS:
        lat[scn] = {}
        for key in ("ours", "flask", "fastapi"):
            rs = [r for r in results["latency_runs"] if r["candidate"] == key and r["scenario"] == scn]
            lat[scn][key] = {m: median([r[m] for r in rs]) for m in ("p50_ms", "p90_ms", "p99_ms", "max_ms",
                                                                      "achieved_rps", "send_lag_p99_ms")}
            lat[scn][key]["errors"] = sum(r["errors"] for r in rs)
        for peer in PEERS:
            ratios[f"p99_{scn}_vs_{peer}"] = ratio(lat[scn]["ours"]["p99_ms"], lat[scn][peer]["p99_ms"])

    fp = results.get("footprint", {})
    pgc = results.get("pg_connections", {})
    ours_errors = sum(r.get("errors", 0) for r in runs if r["candidate"] == "ours")
    ours_errors += sum(r["errors"] for r in results["latency_runs"] if r["candidate"] == "ours")
    budget = results.get("pool_budget")
    peak_ours = pgc.get("ours", {}).get("peak")

    checks = []

    def check(name: str, value: float, target: float, ok: bool, detail: str) -> None:
        checks.append({"target": name, "value": value, "goal": target, "met": bool(ok), "detail": detail})

    for scn, peer in (("get", "flask"), ("get", "fastapi"), ("mix", "flask"), ("mix", "fastapi")):
        t = TARGETS[f"{scn}_vs_{peer}"]
        v = ratios[f"{scn}_vs_{peer}"]
        check(f"{SCENARIO_LABELS[scn].split(' (')[0]}: ours / {peer} peer", v, t, v >= t, f"≥ {t}×")
    v = ratios["get_vs_ceiling"]
    check("GET /items/<id>: ours / framework ceiling", v, TARGETS["get_vs_ceiling"], v >= TARGETS["get_vs_ceiling"],
          f"≥ {TARGETS['get_vs_ceiling']}×")
    for scn in LATENCY_SCENARIOS:
        for peer in PEERS:
            v = ratios[f"p99_{scn}_vs_{peer}"]
            check(f"p99 at fixed rate, {scn}: ours / {peer} peer", v, TARGETS["p99_vs_peer"],
                  v <= TARGETS["p99_vs_peer"], f"≤ {TARGETS['p99_vs_peer']}×")
    v = scaling["ours"]
    check(f"ours at {high} / at {conns} connections", v, TARGETS["scaling"], v >= TARGETS["scaling"],
          f"≥ {TARGETS['scaling']}×")
    check("ours: errors in every run", ours_errors, 0, ours_errors == 0, "= 0")
    if budget is not None and peak_ours is not None:
        check("ours: peak PostgreSQL connections / pool budget", peak_ours, budget, peak_ours <= budget,
              f"≤ {budget} (WORKERS × DB_POOL_MAX)")
    sizes = fp.get("image_mb", {})
    if sizes:
        check("image: ours / python base + same venv", ratio(sizes["ours"], sizes["python_base_plus_our_venv"]),
              1.0, sizes["ours"] < sizes["python_base_plus_our_venv"], "< 1×")
    if "cold_start_s" in fp:
        v = fp["cold_start_s"]["ours"]
        check("cold start, docker start → 200 on /health/ready (s)", v, TARGETS["cold_start_s"],
              v <= TARGETS["cold_start_s"], f"≤ {TARGETS['cold_start_s']} s")
    if "rebuild_s" in fp:
        v = fp["rebuild_s"]
        check("rebuild after one app/ file changed, warm cache (s)", v, TARGETS["rebuild_s"],
              v <= TARGETS["rebuild_s"], f"≤ {TARGETS['rebuild_s']} s")
    return {"throughput": tp, "throughput_high": high_tp, "live": live, "ratios": ratios, "scaling": scaling,
            "latency": lat, "checks": checks, "ours_errors": ours_errors}


# --------------------------------------------------------------------------- reports


def f0(x: float) -> str:
    return "—" if math.isnan(x) else f"{x:,.0f}"


def f2(x: float) -> str:
    return "—" if math.isnan(x) else f"{x:.2f}"


def markdown(results: dict, a: dict) -> str:
    s = results["settings"]
    conns, high = s["connections"], s["high_connections"]
    tp, r = a["throughput"], a["ratios"]
    m = results.get("machine", {})
    cfg = results.get("ours_config", {})
    lines = [
        f"# Benchmark results ({'smoke run: timings meaningless' if s['smoke'] else 'full run'})",
        "",
        (f"Run {results['started']}, {results.get('elapsed_s', 0) / 60:.1f} min, on {m.get('cpus')} × "
        f"{m.get('cpu_model', '?')} (kernel {m.get('kernel')}, Docker {m.get('docker')}, load average at start "
        f"{m.get('loadavg_at_start')}). Every number below was measured in this one run: absolute numbers on "
        "a shared 2-core machine are noise, the ratios are the result."),
        "",
        (f"- Closed loop: wrk `-t1 -c{conns}` (and `-c{high}` for scaling), {s['duration']} s per run, "
        f"{s['reps']} alternating repetitions after a {s['warmup']} s warm-up per candidate and endpoint; "
        "median (min–max) req/s."),
        f"- Load path: {results.get('load_path')}.",
        (f"- Ours: `{' '.join(f'{k}={v}' for k, v in cfg.items() if v)}` (the rest at the stack's defaults); "
        f"every API container: `{' '.join(results.get('limits', {}).get('docker_run_options', []))}`."),
        "- Where a peer's defaults do not fit our limits it gets what they need instead: "
        + "; ".join(f"{k}: `{' '.join(f'{a} {b}' for a, b in v.items())}`"
                    for k, v in results.get("peer_limit_overrides", {}).items() if v) + " (see bench/README.md).",
        (f"- Data: {s['seed_items']:,} seeded items, ids drawn uniformly; PostgreSQL 18 of the stack (its own "
        "prod limits). Peers' answers equal ours: "
        f"{'yes' if results.get('contract_check', {}).get('ok') else 'NO, see latest.json'}."),
        "",
        "## Throughput (req/s) and ratios",
        "",
        "| endpoint | ours | Flask peer | FastAPI peer | ours ÷ Flask | ours ÷ FastAPI |",
        "|---|---|---|---|---|---|",
    ]

    def cell(d: dict) -> str:
        failed = d["runs"] - d["n"]
        return (f"{f0(d['median'])} ({f0(d['min'])}–{f0(d['max'])})"
                + (f", {d['errors']} err" if d["errors"] else "")
                + (f", {failed} failed run{'s' * (failed > 1)}" if failed else ""))

    for scn in SCENARIOS:
        t = {"get": TARGETS["get_vs_flask"], "mix": TARGETS["mix_vs_flask"]}.get(scn)
        t2 = {"get": TARGETS["get_vs_fastapi"], "mix": TARGETS["mix_vs_fastapi"]}.get(scn)
        lines.append(
            f"| {SCENARIO_LABELS[scn]} | {cell(tp[scn]['ours'])} | {cell(tp[scn]['flask'])} | "
            f"{cell(tp[scn]['fastapi'])} | **{f2(r[f'{scn}_vs_flask'])}×**{f' (≥ {t})' if t else ''} | "
            f"**{f2(r[f'{scn}_vs_fastapi'])}×**{f' (≥ {t2})' if t2 else ''} |")
    lines += [
        "",
        "## Against the machine's limits",
        "",
        "| | req/s or tps | ours `GET /items/<id>` ÷ it |",
        "|---|---|---|",
        (f"| framework ceiling: constant Flask route, same image, same Granian settings, same limits | "
        f"{cell(tp['get']['ceiling'])} | **{f2(r['get_vs_ceiling'])}×** (≥ {TARGETS['get_vs_ceiling']}) |"),
        (f"| PostgreSQL ceiling: `pgbench -S -M prepared -c{conns} -j2` over TCP 127.0.0.1 | "
        f"{cell(tp['get']['pgbench'])} | **{f2(r['get_vs_pgbench'])}×** |"),
        (f"| ours `GET /health/live`: the product's Flask app and middleware (request id, JSON log line), "
        f"no database | {cell(a['live'])} | {f2(r['get_vs_live'])}× |"),
        "",
        (f"Where the distance to the framework ceiling goes: our middleware alone reaches "
        f"{f2(r['live_vs_ceiling'])}× of the bare constant route, and the database path keeps "
        f"{f2(r['get_vs_live'])}× of that."),
        "",
        "## CPU time per request (µs, median; cgroup counters of each container)",
        "",
        ("| endpoint | ours API | ours PostgreSQL | Flask API | Flask PostgreSQL | FastAPI API | FastAPI PostgreSQL "
        "| API CPU: Flask ÷ ours | FastAPI ÷ ours |"),
        "|---|---|---|---|---|---|---|---|---|",
        *[f"| {scn} | {f0(tp[scn]['ours']['cpu_us'])} | {f0(tp[scn]['ours']['pg_cpu_us'])} | "
          f"{f0(tp[scn]['flask']['cpu_us'])} | {f0(tp[scn]['flask']['pg_cpu_us'])} | {f0(tp[scn]['fastapi']['cpu_us'])} | "
          f"{f0(tp[scn]['fastapi']['pg_cpu_us'])} | {f2(r[f'cpu_{scn}_flask_vs_ours'])}× | "
          f"{f2(r[f'cpu_{scn}_fastapi_vs_ours'])}× |" for scn in SCENARIOS],
        f"| constant route (ceiling) | {f0(tp['get']['ceiling']['cpu_us'])} | | | | | | | |",
        f"| ours /health/live | {f0(a['live']['cpu_us'])} | | | | | | | |",
        "",
        ("Every API container has the same CPU limit, so the CPU a request costs bounds its throughput; this "
        "measure moves less than req/s when other work shares the machine."),
        "",
        (f"## Latency at a fixed rate ({int(s['latency_fraction'] * 100)}% of the slowest peer's throughput), "
        "open loop, coordinated omission accounted for"),
        "",
        (f"bench/loadgen.py: requests due at fixed intervals, latency measured from the intended send time, "
        f"{s['latency_duration']:g} s after {s['latency_warmup']:g} s unrecorded, median of {s['latency_reps']} "
        "repetitions."),
        "",
        "| endpoint | rate | candidate | p50 ms | p90 ms | p99 ms | max ms | errors | ours p99 ÷ its p99 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for scn in LATENCY_SCENARIOS:
        rate = results.get("latency_rates", {}).get(scn, float("nan"))
        for key in ("ours", "flask", "fastapi"):
            d = a["latency"][scn][key]
            rr = "" if key == "ours" else f"**{f2(r[f'p99_{scn}_vs_{key}'])}×** (≤ {TARGETS['p99_vs_peer']})"
            lines.append(f"| {scn} | {f0(rate)}/s | {key} | {f2(d['p50_ms'])} | {f2(d['p90_ms'])} | "
                         f"{f2(d['p99_ms'])} | {f2(d['max_ms'])} | {d['errors']} | {rr} |")
    pgc = results.get("pg_connections", {})
    lines += [
        "",
        f"## Scaling, errors, PostgreSQL connections (`GET /items/<id>`, {high} vs {conns} connections)",
        "",
        (f"| candidate | req/s at {conns} | req/s at {high} | {high} ÷ {conns} | errors, all runs | peak PostgreSQL "
        "connections |"),
        "|---|---|---|---|---|---|",
    ]
    for key in ("ours", "flask", "fastapi"):
        errs = sum(x.get("errors", 0) for x in results["runs"] if x["candidate"] == key)
        peak = pgc.get(key, {}).get("peak", "—")
        if key == "ours" and results.get("pool_budget") is not None:
            peak = f"{peak} (budget {results['pool_budget']})"
        lines.append(f"| {key} | {f0(tp['get'][key]['median'])} | {f0(a['throughput_high'][key]['median'])} | "
                     f"**{f2(a['scaling'][key])}×** | {errs} | {peak} |")
    fp = results.get("footprint", {})
    if fp:
        sizes, mem, cold = fp.get("image_mb", {}), fp.get("memory_mib", {}), fp.get("cold_start_s", {})
        lines += [
            "",
            "## Footprint",
            "",
            "| | ours | Flask peer | FastAPI peer |",
            "|---|---|---|---|",
            (f"| image size (MB) | {f0(sizes.get('ours', float('nan')))} | {f0(sizes.get('flask', float('nan')))} | "
            f"{f0(sizes.get('fastapi', float('nan')))} |"),
            (f"| memory after the run (MiB) | {f0(mem.get('ours', float('nan')))} | "
            f"{f0(mem.get('flask', float('nan')))} | {f0(mem.get('fastapi', float('nan')))} |"),
            (f"| cold start, `docker start` → 200 on /health/ready (s) | {f2(cold.get('ours', float('nan')))} | "
            f"{f2(cold.get('flask', float('nan')))} | {f2(cold.get('fastapi', float('nan')))} |"),
            "",
            (f"- Python base image `{BASE_IMAGE}` (the local stand-in): {f0(sizes.get('python_base', float('nan')))} MB; "
            f"that image plus exactly our venv (the product Dockerfile's builder stage, libpq5, app/): "
            f"{f0(sizes.get('python_base_plus_our_venv', float('nan')))} MB; ours ÷ that: "
            f"**{f2(ratio(sizes.get('ours', float('nan')), sizes.get('python_base_plus_our_venv', float('nan'))))}×**."),
            (f"- Rebuild of our image after changing one file under app/, warm cache: "
            f"**{f2(fp.get('rebuild_s', float('nan')))} s** (≤ {TARGETS['rebuild_s']:g}); with nothing changed "
            f"{f2(fp.get('rebuild_unchanged_s', float('nan')))} s."),
        ]
    lines += ["", "## Targets (issue 6)", "", "| target | measured | goal | |", "|---|---|---|---|"]
    for c in a["checks"]:
        v = c["value"]
        vs = f2(v) if isinstance(v, float) else str(v)
        lines.append(f"| {c['target']} | {vs} | {c['detail']} | {'met' if c['met'] else '**missed**'} |")
    lines += ["", "![throughput and latency](latest.png)", ""]
    return "\n".join(lines)


def chart(results: dict, a: dict, path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no chart (make bench installs it in bench/.venv)")
        return False
    tp = a["throughput"]
    keys = ("ours", "flask", "fastapi")
    colors = {"ours": "#2b7bba", "flask": "#e08a2c", "fastapi": "#4c9a4c"}
    names = {"ours": "ours", "flask": "Flask peer", "fastapi": "FastAPI peer"}
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.2), gridspec_kw={"width_ratios": [2.2, 1, 1.2]})
    ax = axes[0]
    scns = list(SCENARIOS) + ["get@256"]
    width = 0.26
    for i, k in enumerate(keys):
        vals = [tp[s][k]["median"] for s in SCENARIOS] + [a["throughput_high"][k]["median"]]
        lo = [v - (tp[s][k]["min"] if s in tp else a["throughput_high"][k]["min"]) for s, v in zip(scns, vals)]
        hi = [(tp[s][k]["max"] if s in tp else a["throughput_high"][k]["max"]) - v for s, v in zip(scns, vals)]
        ax.bar([x + (i - 1) * width for x in range(len(scns))], vals, width, yerr=[lo, hi], capsize=2,
               label=names[k], color=colors[k])
    ax.set_xticks(range(len(scns)), ["get", "list", "post", "patch", "mix", "get c256"])
    ax.set_ylabel("req/s (median, min–max)")
    ax.set_title("Throughput, closed loop (wrk)")
    ax.legend()
    ax = axes[1]
    lim = [("ceiling", tp["get"]["ceiling"]["median"]), ("ours get", tp["get"]["ours"]["median"]),
           ("pgbench -S", tp["get"]["pgbench"]["median"])]
    bars = ax.bar([n for n, _ in lim], [v for _, v in lim], color=["#999999", colors["ours"], "#7a5cad"])
    for bar, (_, v) in zip(bars, lim, strict=True):
        ax.annotate(f"{v:,.0f}", (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("req/s or tps (log)")
    ax.set_title(f"Limits: ours ÷ ceiling {a['ratios']['get_vs_ceiling']:.2f}×, ÷ pgbench "
                 f"{a['ratios']['get_vs_pgbench']:.3f}×", fontsize=10)
    ax = axes[2]
    lat = a["latency"]
    for i, k in enumerate(keys):
        p50 = [lat[s][k]["p50_ms"] for s in LATENCY_SCENARIOS]
        p99 = [lat[s][k]["p99_ms"] for s in LATENCY_SCENARIOS]
        xs = [x + (i - 1) * width for x in range(len(LATENCY_SCENARIOS))]
        ax.bar(xs, p99, width, color=colors[k], alpha=0.45, label=f"{names[k]} p99")
        ax.bar(xs, p50, width, color=colors[k], label=f"{names[k]} p50")
    rates = results.get("latency_rates", {})
    ax.set_xticks(range(len(LATENCY_SCENARIOS)), [f"{s} @ {rates.get(s, 0):.0f}/s" for s in LATENCY_SCENARIOS])
    ax.set_yscale("log")
    ax.set_ylabel("ms (log)")
    ax.set_title("Latency at a fixed rate (open loop)")
    ax.legend(fontsize=7)
    fig.suptitle(f"Items API benchmark {results['started']}  —  ours ÷ Flask peer: get "
                 f"{a['ratios']['get_vs_flask']:.2f}×, mix {a['ratios']['mix_vs_flask']:.2f}×;  ours ÷ FastAPI "
                 f"peer: get {a['ratios']['get_vs_fastapi']:.2f}×, mix {a['ratios']['mix_vs_fastapi']:.2f}×")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def print_summary(a: dict) -> None:
    r = a["ratios"]
    print("\nRatios (medians of this run):")
    for scn in SCENARIOS:
        print(f"  {SCENARIO_LABELS[scn]:<46} ours ÷ Flask {r[f'{scn}_vs_flask']:5.2f}×   "
              f"ours ÷ FastAPI {r[f'{scn}_vs_fastapi']:5.2f}×")
    print(f"  {'GET /items/<id> ÷ framework ceiling':<46} {r['get_vs_ceiling']:5.2f}×")
    print(f"  {'GET /items/<id> ÷ pgbench -S':<46} {r['get_vs_pgbench']:5.3f}×")
    print("\nTargets (issue 6; reported, never asserted):")
    for c in a["checks"]:
        v = c["value"]
        vs = f"{v:.2f}" if isinstance(v, float) else str(v)
        print(f"  [{'met   ' if c['met'] else 'MISSED'}] {c['target']}: {vs} (goal {c['detail']})")


def write_outputs(results: dict, out: Path, want_chart: bool) -> dict:
    a = analyse(results)
    results["analysis"] = a
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    md = markdown(results, a)
    (out / "latest.md").write_text(md + "\n")
    if want_chart:
        chart(results, a, out / "latest.png")
    log(f"wrote {out / 'latest.json'}, latest.md{', latest.png' if want_chart else ''}")
    return a


def parse_env_overrides(items: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        if item.strip() in ("defaults", "-"):
            continue
        for part in item.replace(",", " ").split():
            k, sep, v = part.partition("=")
            if not sep or k not in (*OUR_SETTINGS, "IMAGE"):
                raise SystemExit(f"bench: --ours-env takes {', '.join(OUR_SETTINGS)} as KEY=VALUE, got {part!r}")
            env[k] = v
    return env


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="seconds, not minutes: every step, tiny durations (CI)")
    p.add_argument("--out", type=Path, help="results directory (default bench/results, smoke: bench/results/tmp/smoke)")
    p.add_argument("--duration", type=int, help="seconds per closed-loop run")
    p.add_argument("--reps", type=int, help="alternating repetitions")
    p.add_argument("--latency-duration", type=float)
    p.add_argument("--project", help="compose project name")
    p.add_argument("--ours-env", action="append", default=[],
                   help="product settings for our stack, e.g. 'WORKERS=2 BLOCKING_THREADS=2' "
                        "(default: the stack's own defaults; the same variables in the environment also count)")
    p.add_argument("--no-build", action="store_true", help="use the images as they are")
    p.add_argument("--no-chart", action="store_true")
    p.add_argument("--keep", action="store_true", help="leave the containers running afterwards")
    p.add_argument("--tune", metavar="CONFIGS",
                   help="instead of the comparison: configurations of ours side by side, separated by ';', "
                        "e.g. 'WORKERS=1 BLOCKING_THREADS=4; WORKERS=2 BLOCKING_THREADS=2' (results: tune.md)")
    p.add_argument("--tune-scenarios", default="get,mix")
    p.add_argument("--tune-latency-rate", type=int, default=0, metavar="RPS",
                   help="with --tune: also GET /items/<id> at this fixed rate (p50/p99)")
    args = p.parse_args(argv)

    ours_env = {k: os.environ[k] for k in OUR_SETTINGS if os.environ.get(k)}
    ours_env.update(parse_env_overrides(args.ours_env))
    if "IMAGE" in ours_env:
        p.error("IMAGE= works with --tune only (the comparison always measures compose's own build)")
    kw = {"ours_env": ours_env, "keep": args.keep, "build": not args.no_build, "chart": not args.no_chart}
    s = Settings.for_smoke(**kw) if args.smoke else Settings(**kw)
    if args.out:
        s.out = args.out
    if args.duration:
        s.duration = args.duration
    if args.reps:
        s.reps = args.reps
    if args.latency_duration:
        s.latency_duration = args.latency_duration
    if args.project:
        s.project = args.project
    random.seed()
    bench = Bench(s)
    if args.tune:
        variants = [parse_env_overrides([part]) for part in args.tune.split(";") if part.strip()]
        tune(bench, variants, tuple(args.tune_scenarios.split(",")), args.tune_latency_rate)
        return 0
    log(f"{'smoke' if s.smoke else 'full'} run, project {s.project}, results in {s.out}")
    results = bench.execute()
    a = write_outputs(results, s.out, s.chart)
    print_summary(a)
    log(f"done in {results['elapsed_s'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
