#!/usr/bin/env python3
"""Prove that the running Compose stack is healthy and hardened.

Run it after `docker compose ... up` (or `make verify`):

    python tools/verify_stack.py [--project NAME] [--profile prod|dev] [--json] [--wait N] [--chaos]

It reads the engine's own records of the stack's containers (`docker inspect`
through the Docker SDK) and probes the live services, instead of trusting the
compose files: an override file, a stale container or a typo shows up here.
Each check has a stable ID, a title and, where one exists, the control of the
CIS Docker Benchmark 1.6.0 it maps to. The CIS numbering is 1.6.0's, which
differs from the older 1.2.0 numbers many articles quote (5.13 read-only here
is 5.12 there). The checks test the real values, not the loose string matches
docker-bench-security uses (`no-new-privileges:false` fails here).

Profiles: `prod` (the default when the containers were started with
compose.prod.yaml) requires every hardening setting; `dev` (the base file
alone) reports missing hardening as warnings, and says so.

Exit codes: 0 every check passes (warnings allowed), 1 at least one check
fails, 2 the verifier could not run (no engine, no such stack).

Live probes run from this host: HTTP goes to the services' published ports
on loopback, so they assume a local engine; `top` and `exec` go through the
engine and work anywhere. `exec` runs as the container's own user.

`--chaos` is opt-in and disruptive: it SIGKILLs the API container's main
process from the host and expects the restart policy to bring it back healthy,
then stops PostgreSQL and expects the API's /health to answer 503 and to
recover to 200 once PostgreSQL is back, without the API restarting.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

CIS = "CIS Docker Benchmark 1.6.0"
PASS, WARN, FAIL = "pass", "warn", "fail"

ROOT = Path(__file__).resolve().parent.parent
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
CONFIG_FILES_LABEL = "com.docker.compose.project.config_files"
ONEOFF_LABEL = "com.docker.compose.oneoff"
PROD_FILE = "compose.prod.yaml"

API, POSTGRES, PGADMIN = "flask-api", "postgres", "pgadmin"
SERVICES = (API, POSTGRES, PGADMIN)

# The restart policy compose.prod.yaml documents for every service, with its
# reasons (CIS 5.15 suggests on-failure:5, a budget the engine never resets).
RESTART_POLICY = ("unless-stopped", 0)

SECRETS_DIR = "/run/secrets/"
PG_DATA = "/var/lib/postgresql"
# Defaults when the API's DATABASE_URL does not say (see app/config.py).
DEFAULT_ROLE, DEFAULT_DB = "app", "appdb"
TOP_ARGS = "-o uid,pid,args"  # `docker top` runs ps on the host, so distroless images need no ps
HTTP_TIMEOUT = 5.0
CHAOS_RESTART_BOUND = 90.0  # seconds for a killed API to be running and healthy again
CHAOS_HEALTH_BOUND = 45.0  # seconds for /health to turn 503, and later back to 200


class CannotRun(Exception):
    """The verifier cannot do its job (no engine, no stack): exit code 2."""


# ---------------------------------------------------------------------------------------------
# The containers as the checks see them.
# ---------------------------------------------------------------------------------------------


class Target:
    """One service's container: its inspect record and the live calls the checks need.

    Unit tests build it from a captured inspect record (with a captured `top`
    under the key `_top`) and no container, so that every check that reads
    only the record runs without an engine.
    """

    def __init__(self, service: str, attrs: dict, container=None, stack: dict | None = None):
        self.service = service
        self.attrs = attrs
        self.container = container
        self.stack = stack if stack is not None else {}  # service -> Target, for cross-service checks

    @property
    def host_config(self) -> dict:
        return self.attrs.get("HostConfig") or {}

    @property
    def config(self) -> dict:
        return self.attrs.get("Config") or {}

    @property
    def running(self) -> bool:
        return bool((self.attrs.get("State") or {}).get("Running"))

    def env(self) -> dict[str, str]:
        pairs = (item.partition("=") for item in self.config.get("Env") or [])
        return {name: value for name, _, value in pairs}

    def top(self) -> dict:
        if "_top" in self.attrs:
            return self.attrs["_top"]
        return self.container.top(ps_args=TOP_ARGS)

    def exec(self, cmd: list[str], user: str = "") -> tuple[int, str]:
        """Run a command in the container, as its configured user unless `user` is given."""
        if self.container is None:
            raise CannotRun("no live container to exec in")
        result = self.container.exec_run(cmd, user=user, demux=False)
        return result.exit_code, (result.output or b"").decode("utf-8", "replace").strip()

    def http_get(self, path: str) -> tuple[int, str]:
        """GET a path on the service's published port, from this host; (status, body)."""
        port = published_port(self.attrs)
        if port is None:
            raise ConnectionError("no published port")
        host, number = port
        url = f"http://{host}:{number}{path}"
        try:
            with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as r:
                return r.status, r.read(4096).decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read(4096).decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------
# Pure helpers: parse the engine's values (unit-tested on their own).
# ---------------------------------------------------------------------------------------------


def no_new_privileges(security_opt: list[str] | None) -> bool | None:
    """True/False when SecurityOpt sets no-new-privileges, None when it does not.

    The engine accepts `no-new-privileges`, `no-new-privileges:true` and
    `no-new-privileges=true` (and false with either separator). Matching the
    bare string, as docker-bench does, would also accept `:false`. The last
    setting wins, as in the engine.
    """
    value = None
    for opt in security_opt or []:
        m = re.fullmatch(r"\s*no-new-privileges\s*(?:[:=]\s*(\S*))?\s*", opt, re.IGNORECASE)
        if m:
            # The engine parses the value with Go's strconv.ParseBool.
            value = m.group(1) is None or m.group(1).lower() in ("1", "t", "true")
    return value


def capabilities(host_config: dict) -> tuple[bool, list[str]]:
    """(all capabilities dropped, capabilities added back), normalised without `CAP_`.

    The engine stores what it was given, upper-cased with `CAP_` for names;
    `ALL` stays `ALL`.
    """

    def norm(caps):
        return [c.upper().removeprefix("CAP_") for c in caps or []]

    return "ALL" in norm(host_config.get("CapDrop")), sorted(norm(host_config.get("CapAdd")))


def port_bindings(attrs: dict) -> list[tuple[str, str, str]]:
    """Every published binding as (container port, host ip, host port).

    The live NetworkSettings.Ports is what the engine really bound; it falls
    back to HostConfig.PortBindings for a container that is not running.
    An empty host ip means every interface, as `0.0.0.0` does.
    """
    ports = (attrs.get("NetworkSettings") or {}).get("Ports")
    if not ports:
        ports = (attrs.get("HostConfig") or {}).get("PortBindings") or {}
    out = []
    for container_port, bindings in sorted(ports.items()):
        for b in bindings or []:
            out.append((container_port, b.get("HostIp") or "0.0.0.0", b.get("HostPort") or ""))
    return out


def is_loopback(host_ip: str) -> bool:
    try:
        return ipaddress.ip_address(host_ip).is_loopback
    except ValueError:
        return False


def published_port(attrs: dict) -> tuple[str, int] | None:
    """Where this host reaches the service: (host, port) of the first TCP binding."""
    for container_port, host_ip, host_port in port_bindings(attrs):
        if container_port.endswith("/tcp") and host_port.isdigit() and host_port != "0":
            if host_ip in ("0.0.0.0", "::", ""):
                host_ip = "127.0.0.1"
            return (f"[{host_ip}]" if ":" in host_ip else host_ip), int(host_port)
    return None


SECRET_WORDS = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|PRIVATE")
# A word that ends in KEY (API_KEY, APIKEY, SECRET_KEY) or is PASS / PW.
SECRET_WORD_ENDINGS = ("KEY", "KEYS")
SECRET_EXACT_WORDS = {"PASS", "PW"}
# Names that look secret but are not: the official python image's GPG_KEY is
# the fingerprint of the CPython release key, public by design.
NOT_SECRET = {"GPG_KEY"}
BOOLEAN_WORDS = {"true", "false", "yes", "no", "on", "off", "0", "1"}


def looks_secret(name: str) -> bool:
    """Whether an environment variable's name suggests a password, secret, key or token."""
    upper = name.upper()
    if upper in NOT_SECRET:
        return False
    if SECRET_WORDS.search(upper):
        return True
    return any(w.endswith(SECRET_WORD_ENDINGS) or w in SECRET_EXACT_WORDS for w in upper.split("_"))


def env_secret_problem(name: str, value: str) -> str | None:
    """Why this variable exposes a secret, or None.

    Secrets belong in files under /run/secrets, never in the environment:
    `docker inspect`, /proc/<pid>/environ, crash reports and (under Granian)
    every WSGI environ show the environment. A `*_FILE` name pointing under
    /run/secrets is the safe convention; an empty value or a boolean switch
    (`..._PASSWORD_REQUIRED=False`) carries nothing; a URL with a password
    inside is a secret whatever the variable is called.
    """
    if "://" in value:
        try:
            if urlsplit(value).password:
                return f"{name} holds a URL with a password"
        except ValueError:
            pass
    if not looks_secret(name) or not value.strip():
        return None
    if name.upper().endswith("_FILE"):
        return None if value.startswith(SECRETS_DIR) else f"{name} points outside {SECRETS_DIR}"
    if value.strip().lower() in BOOLEAN_WORDS:
        return None
    return f"{name} carries a value"


def restart_policy(host_config: dict) -> tuple[str, int]:
    policy = host_config.get("RestartPolicy") or {}
    return policy.get("Name") or "no", int(policy.get("MaximumRetryCount") or 0)


def format_restart(name: str, retries: int) -> str:
    return f"{name}:{retries}" if name == "on-failure" and retries else name


def config_uid(user: str | None) -> str | None:
    """The user part of Config.User ('999:999' -> '999'); None when unset."""
    user = (user or "").strip()
    return user.split(":", 1)[0] if user else None


def database_target(api_env: dict[str, str]) -> tuple[str, str]:
    """The API's database role and name, from its DATABASE_URL."""
    try:
        url = urlsplit(api_env.get("DATABASE_URL", ""))
        role = url.username or DEFAULT_ROLE
        db = url.path.lstrip("/") or DEFAULT_DB
    except ValueError:
        return DEFAULT_ROLE, DEFAULT_DB
    return role, db


def compose_project_name(root: Path = ROOT, environ: dict | None = None) -> str:
    """The project name Compose derives when no -p is given.

    In Compose's order: COMPOSE_PROJECT_NAME from the environment, then from
    the project's .env file, then the top-level `name:` of compose.yaml, then
    the directory's name; lowercased with every character outside [a-z0-9_-]
    dropped, as Compose normalises it.
    """
    environ = os.environ if environ is None else environ
    name = environ.get("COMPOSE_PROJECT_NAME", "")
    if not name and (root / ".env").is_file():
        for line in (root / ".env").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.strip().partition("=")
            if key.strip() == "COMPOSE_PROJECT_NAME":
                name = value.strip().strip("'\"")
    if not name and (root / "compose.yaml").is_file():
        found = re.search(r"^name:\s*['\"]?([^'\"\s#]+)", (root / "compose.yaml").read_text(), re.M)
        name = found.group(1) if found else ""
    name = name or root.name
    return re.sub(r"[^a-z0-9_-]", "", name.lower()).lstrip("_-")


def detect_profile(targets: dict[str, Target]) -> str:
    """prod when the containers were created with compose.prod.yaml among the files."""
    for t in targets.values():
        files = (t.config.get("Labels") or {}).get(CONFIG_FILES_LABEL, "")
        if any(Path(f).name == PROD_FILE for f in files.split(",")):
            return "prod"
    return "dev"


# ---------------------------------------------------------------------------------------------
# Checks: one function each, returning (result, detail).
# ---------------------------------------------------------------------------------------------


def result(ok: bool, good: str, bad: str) -> tuple[str, str]:
    return (PASS, good) if ok else (FAIL, bad)


def check_running(t: Target) -> tuple[str, str]:
    """Everything else assumes a live container; a restarting one is crash-looping."""
    state = t.attrs.get("State") or {}
    ok = state.get("Running") and not state.get("Restarting")
    detail = f"{state.get('Status', 'unknown')}, restarts {t.attrs.get('RestartCount', 0)}"
    return result(bool(ok), detail, f"{detail} (exit code {state.get('ExitCode')})")


def check_healthy(t: Target) -> tuple[str, str]:
    """Running is not serving: only the health check says the service answers."""
    health = (t.attrs.get("State") or {}).get("Health")
    if not health:
        return FAIL, "no health status (no health check)"
    status = health.get("Status")
    hint = "" if status == "healthy" else " (try --wait 60)" if status == "starting" else ""
    return result(status == "healthy", status, f"{status}{hint}")


def check_healthcheck(t: Target) -> tuple[str, str]:
    """Without a health check the engine, Compose's depends_on and people cannot tell serving from up."""
    test = (t.config.get("Healthcheck") or {}).get("Test") or []
    if not test or test[0] == "NONE":
        return FAIL, "none defined" if not test else "disabled (NONE)"
    command = " ".join(test[1:])
    return PASS, command if len(command) <= 60 else command[:59] + "…"


def check_user(t: Target) -> tuple[str, str]:
    """An image or service user that is unset or root makes every escape a root escape."""
    uid = config_uid(t.config.get("User"))
    if uid is None:
        return FAIL, "Config.User unset: the container starts as root"
    return result(uid not in ("0", "root"), f"user {t.config['User']}", f"user {t.config['User']} is root")


def check_processes(t: Target) -> tuple[str, str]:
    """The configured user can be dropped or changed by an entrypoint: look at what really runs.

    `docker top` runs ps on the host, so it works on images without ps and
    shows host uids (with user-namespace remapping, root appears non-zero:
    USER catches that case).
    """
    top = t.top()
    titles = top.get("Titles") or []
    if "UID" not in titles:
        return WARN, f"docker top gave no UID column: {titles}"
    col = titles.index("UID")
    uids = sorted({p[col] for p in top.get("Processes") or []})
    root = [p for p in top.get("Processes") or [] if p[col] in ("0", "root")]
    if not uids:
        return FAIL, "no processes"
    if root:
        return FAIL, f"{len(root)} process(es) as root, e.g. {root[0][-1][:40]}"
    return PASS, f"uids {', '.join(uids)} ({len(top['Processes'])} processes)"


def check_read_only(t: Target) -> tuple[str, str]:
    """A read-only root filesystem stops an intruder from planting files or changing the app."""
    return result(bool(t.host_config.get("ReadonlyRootfs")), "read-only", "root filesystem is writable")


def check_no_new_privileges(t: Target) -> tuple[str, str]:
    """no-new-privileges blocks gaining privileges through setuid binaries or file capabilities."""
    opts = t.host_config.get("SecurityOpt") or []
    value = no_new_privileges(opts)
    shown = ", ".join(o for o in opts if o.lower().startswith("no-new-privileges")) or "not set"
    return result(value is True, shown, shown)


def check_capabilities(t: Target) -> tuple[str, str]:
    """None of these services needs a Linux capability: drop ALL and add nothing back."""
    dropped_all, added = capabilities(t.host_config)
    if not dropped_all:
        return FAIL, f"cap_drop lacks ALL (default set kept){'; added ' + ', '.join(added) if added else ''}"
    return result(not added, "ALL dropped, none added", f"ALL dropped but added back: {', '.join(added)}")


def check_not_privileged(t: Target) -> tuple[str, str]:
    """A privileged container is root on the host: never acceptable, in any profile."""
    return result(not t.host_config.get("Privileged"), "not privileged", "privileged: true")


def check_host_namespaces(t: Target) -> tuple[str, str]:
    """Sharing the host's network, PID or IPC namespace removes the isolation those give."""
    shared = [f"{kind}=host" for kind, key in (("network", "NetworkMode"), ("pid", "PidMode"),
                                                 ("ipc", "IpcMode")) if t.host_config.get(key) == "host"]
    return result(not shared, "own network, PID and IPC namespaces", "shares " + ", ".join(shared))


def check_docker_socket(t: Target) -> tuple[str, str]:
    """Whoever can reach the Docker socket controls the engine, hence the host."""
    bad = [m.get("Source", "") for m in t.attrs.get("Mounts") or []
           if m.get("Source", "").endswith("docker.sock") or m.get("Destination", "").endswith("docker.sock")
           or m.get("Source") in ("/run", "/var/run")]
    return result(not bad, "not mounted", "mounts " + ", ".join(bad))


def check_memory(t: Target) -> tuple[str, str]:
    """A memory limit keeps one leaking service from taking the host's memory (and its neighbours)."""
    memory = int(t.host_config.get("Memory") or 0)
    return result(memory > 0, f"{memory / 2**20:g} MiB", "no memory limit")


def check_cpu(t: Target) -> tuple[str, str]:
    """A CPU limit keeps a busy or runaway service from starving the others (CpuShares alone is relative)."""
    nano = int(t.host_config.get("NanoCpus") or 0)
    quota, period = int(t.host_config.get("CpuQuota") or 0), int(t.host_config.get("CpuPeriod") or 0)
    if nano > 0:
        return PASS, f"{nano / 1e9:g} CPUs"
    if quota > 0:
        return PASS, f"{quota / (period or 100000):g} CPUs (quota)"
    return FAIL, "no CPU limit"


def check_pids(t: Target) -> tuple[str, str]:
    """A pids limit stops a fork bomb or a thread leak before it exhausts the host's process table."""
    pids = int(t.host_config.get("PidsLimit") or 0)
    return result(pids > 0, f"{pids} pids", "no pids limit")


def check_restart(t: Target) -> tuple[str, str]:
    """The documented restart policy brings a crashed service back; anything else is drift.

    compose.prod.yaml documents `unless-stopped` and why it departs from CIS
    5.15's `on-failure:5`: the engine never resets a container's restart
    count, so the sixth crash in its life would leave the service down for
    good. `no` leaves a crash down at once; `always` also revives a container
    an operator stopped on purpose when the engine restarts.
    """
    name, retries = restart_policy(t.host_config)
    shown, expected = format_restart(name, retries), format_restart(*RESTART_POLICY)
    return result((name, retries) == RESTART_POLICY, shown, f"{shown}, expected {expected}")


def check_ports_loopback(t: Target) -> tuple[str, str]:
    """A port published on all interfaces is reachable from the network; these are for this host only."""
    bindings = port_bindings(t.attrs)
    if not bindings:
        return PASS, "nothing published"
    shown = ", ".join(f"{ip}:{hp}->{cp}" for cp, ip, hp in bindings)
    return result(all(is_loopback(ip) for _, ip, _ in bindings), shown, shown)


def check_db_unpublished(t: Target) -> tuple[str, str]:
    """The API and pgAdmin reach PostgreSQL on the Compose network; a published port only adds exposure."""
    bindings = port_bindings(t.attrs)
    shown = ", ".join(f"{ip}:{hp}->{cp}" for cp, ip, hp in bindings)
    return result(not bindings, "not published", f"published on {shown}")


def secret_mounts(attrs: dict) -> list[dict]:
    return [m for m in attrs.get("Mounts") or [] if m.get("Destination", "").startswith(SECRETS_DIR)]


def check_secrets_mounted(t: Target) -> tuple[str, str]:
    """Secrets arrive as read-only files under /run/secrets, and every *_FILE variable names one of them.

    A writable secret mount would let one service rewrite a password file it
    shares with another (Compose bind-mounts the same host file).
    """
    mounts = secret_mounts(t.attrs)
    if not mounts:
        return FAIL, f"nothing mounted under {SECRETS_DIR}"
    paths = {m["Destination"] for m in mounts}
    writable = sorted(m["Destination"] for m in mounts if m.get("RW"))
    dangling = sorted(f"{n}={v}" for n, v in t.env().items()
                      if n.endswith("_FILE") and v.startswith(SECRETS_DIR) and v not in paths)
    problems = ([f"writable: {', '.join(writable)}"] if writable else []) + \
               ([f"not mounted: {', '.join(dangling)}"] if dangling else [])
    return result(not problems, ", ".join(sorted(paths)), "; ".join(problems))


READ_TEST = "import sys; open(sys.argv[1], 'rb').close()"
# Ways to test that the container's user can read a file, tried in order: the
# postgres and pgAdmin images have sh; the API image has sh and its venv python.
READERS = (
    ["sh", "-c", 'test -r "$1"', "sh"],
    ["/opt/venv/bin/python", "-c", READ_TEST],
    ["/venv/bin/python3", "-c", READ_TEST],
    ["python3", "-c", READ_TEST],
)


def check_secrets_readable(t: Target) -> tuple[str, str]:
    """Compose ignores uid/gid/mode for file secrets: the host file's mode decides who can read it.

    The test runs inside the container as its own user, so it sees exactly
    what the service sees; it opens the file without printing it.
    """
    paths = sorted(m["Destination"] for m in secret_mounts(t.attrs))
    if not paths:
        return FAIL, "no secrets to read"
    unreadable = []
    for path in paths:
        for reader in READERS:
            code, output = t.exec([*reader, path])
            if code not in (126, 127):  # 126/127: this reader does not exist here
                break
        else:
            return WARN, f"no way to test reading inside the container: {output[:60]}"
        if code != 0:
            unreadable.append(path)
    who = f"user {t.config.get('User') or 'root'}"
    return result(not unreadable, f"{len(paths)} readable by {who}", f"not readable by {who}: {', '.join(unreadable)}")


def check_env_secrets(t: Target) -> tuple[str, str]:
    """Environment variables leak (inspect, /proc, crash dumps, WSGI environ): secrets go in files."""
    problems = [p for name, value in sorted(t.env().items()) if (p := env_secret_problem(name, value))]
    return result(not problems, "no secret values in the environment", "; ".join(problems))


def check_db_volume(t: Target) -> tuple[str, str]:
    """PostgreSQL 18 keeps its data under /var/lib/postgresql: a named volume there survives `down`/`up`.

    An anonymous volume (the image's VOLUME) is orphaned by the next
    `up --force-recreate`; a mount at .../data misses PostgreSQL 18's PGDATA.
    """
    for m in t.attrs.get("Mounts") or []:
        if m.get("Destination") == PG_DATA:
            name = m.get("Name") or ""
            if m.get("Type") != "volume":
                return FAIL, f"{PG_DATA} is a {m.get('Type')} mount of {m.get('Source')}"
            if re.fullmatch(r"[0-9a-f]{64}", name):
                return FAIL, f"{PG_DATA} is on an anonymous volume"
            return PASS, f"volume {name}"
    return FAIL, f"nothing mounted at {PG_DATA}"


def check_log_rotation(t: Target) -> tuple[str, str]:
    """Without rotation a chatty container fills the engine's disk; json-file rotates only with max-size."""
    log = t.host_config.get("LogConfig") or {}
    driver, opts = log.get("Type") or "json-file", log.get("Config") or {}
    if driver == "local":
        return PASS, f"local, max-size {opts.get('max-size', '20m (default)')}"
    if driver == "json-file":
        size = opts.get("max-size")
        return result(bool(size), f"json-file, max-size {size}, max-file {opts.get('max-file', '1')}",
                      "json-file without max-size: grows without bound")
    if driver == "none":
        return FAIL, "logging disabled (driver none)"
    return WARN, f"driver {driver}: rotation is that system's job"


def check_api_health(t: Target) -> tuple[str, str]:
    """/health runs a query through the pool: 200 with database ok proves the API reaches PostgreSQL."""
    try:
        status, body = t.http_get("/health")
    except (OSError, ValueError) as e:
        return FAIL, f"/health unreachable: {e}"
    try:
        database = (json.loads(body).get("checks") or {}).get("database")
    except (ValueError, AttributeError):
        database = None
    return result(status == 200 and database == "ok", f"/health {status}, database {database}",
                  f"/health {status}, database {database}")


def check_pgadmin_ping(t: Target) -> tuple[str, str]:
    """/misc/ping answers without a login: pgAdmin's web server is up behind its published port."""
    try:
        status, body = t.http_get("/misc/ping")
    except (OSError, ValueError) as e:
        return FAIL, f"/misc/ping unreachable: {e}"
    return result(status == 200, f"/misc/ping {status} {body.strip()[:20]}", f"/misc/ping {status}")


def check_db_role(t: Target) -> tuple[str, str]:
    """The API's role must not be a superuser: a SQL injection would otherwise own the cluster (and COPY TO PROGRAM the container)."""
    api = t.stack.get(API)
    role, db = database_target(api.env() if api else {})
    admin = t.env().get("POSTGRES_USER") or "postgres"
    sql = f"select rolsuper from pg_roles where rolname = '{role.replace(chr(39), '')}'"
    code, output = t.exec(["psql", "-U", admin, "-d", db, "-Atc", sql])
    if code != 0:
        return FAIL, f"psql failed ({code}): {output[:80]}"
    if output not in ("t", "f"):
        return FAIL, f"role {role} not found in {db}"
    return result(output == "f", f"role {role} is not a superuser", f"role {role} IS a superuser")


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    cis: str  # CIS Docker Benchmark 1.6.0 control(s), "" when none exists
    fn: Callable[[Target], tuple[str, str]]
    services: tuple[str, ...] = SERVICES
    hardening: bool = False  # required by prod only: a warning under --profile dev
    live: bool = False  # needs the running container (top, exec, HTTP)


CHECKS = (
    Check("RUNNING", "container is running", "", check_running),
    Check("HEALTHY", "health status is healthy", "5.27", check_healthy),
    Check("HEALTHCHECK", "a health check is defined", "4.6", check_healthcheck),
    Check("USER", "configured user is set and not root", "4.1", check_user, hardening=True),
    Check("PROCS-NONROOT", "running processes have non-zero uids", "4.1", check_processes,
          hardening=True, live=True),
    Check("READ-ONLY", "root filesystem is read-only", "5.13", check_read_only, hardening=True),
    Check("NO-NEW-PRIVS", "no-new-privileges is true", "5.26", check_no_new_privileges, hardening=True),
    Check("CAPS", "all capabilities dropped, none added", "5.4", check_capabilities, hardening=True),
    Check("NOT-PRIVILEGED", "not privileged", "5.5", check_not_privileged),
    Check("HOST-NS", "no host network, PID or IPC namespace", "5.10, 5.16, 5.17", check_host_namespaces),
    Check("DOCKER-SOCK", "Docker socket not mounted", "5.32", check_docker_socket),
    Check("MEMORY", "memory limit set", "5.11", check_memory, hardening=True),
    Check("CPU", "CPU limit set", "5.12", check_cpu, hardening=True),
    Check("PIDS", "pids limit set", "5.29", check_pids, hardening=True),
    Check("RESTART", "restart policy as documented", "5.15", check_restart, hardening=True),
    Check("PORTS-LOOPBACK", "published ports bound to loopback only", "5.14", check_ports_loopback,
          hardening=True),
    Check("DB-UNPUBLISHED", "PostgreSQL port not published", "5.9", check_db_unpublished, (POSTGRES,),
          hardening=True),
    Check("SECRETS-MOUNTED", "secrets mounted read-only under /run/secrets", "", check_secrets_mounted),
    Check("SECRETS-READABLE", "secrets readable by the service's user", "", check_secrets_readable,
          live=True),
    Check("ENV-NO-SECRETS", "no secret values in the environment", "", check_env_secrets),
    Check("DB-VOLUME", "PostgreSQL data on a named volume", "", check_db_volume, (POSTGRES,)),
    Check("LOG-ROTATION", "log rotation configured", "", check_log_rotation, hardening=True),
    Check("API-HEALTH", "/health answers 200 with database ok", "", check_api_health, (API,), live=True),
    Check("PGADMIN-PING", "/misc/ping answers 200", "", check_pgadmin_ping, (PGADMIN,), live=True),
    Check("DB-ROLE", "the API's database role is not a superuser", "", check_db_role, (POSTGRES,),
          live=True),
)


# ---------------------------------------------------------------------------------------------
# Running the checks.
# ---------------------------------------------------------------------------------------------


@dataclass
class Finding:
    service: str
    id: str
    title: str
    cis: str
    result: str
    detail: str


def run_check(check: Check, t: Target, profile: str) -> Finding:
    """One check on one service; an exception becomes a failure, dev softens hardening."""
    if check.live and not t.running:
        outcome, detail = FAIL, "container not running"
    else:
        try:
            outcome, detail = check.fn(t)
        except Exception as e:  # a broken probe is a finding, not a crash of the verifier
            outcome, detail = FAIL, f"{type(e).__name__}: {e}"
    if outcome == FAIL and check.hardening and profile == "dev":
        outcome, detail = WARN, f"{detail} (dev profile: not required)"
    return Finding(t.service, check.id, check.title, check.cis, outcome, detail)


def verify(targets: dict[str, Target], profile: str) -> list[Finding]:
    findings = []
    for service in SERVICES:
        t = targets.get(service)
        if t is None:
            findings.append(Finding(service, "RUNNING", CHECKS[0].title, "", FAIL, "no container for this service"))
            continue
        findings += [run_check(c, t, profile) for c in CHECKS if service in c.services]
    return findings


def connect():
    try:
        import docker
    except ImportError:
        raise CannotRun("the Docker SDK is missing: pip install docker (or use .venv/bin/python)") from None
    try:
        client = docker.from_env()
        client.ping()
    except Exception as e:
        raise CannotRun(f"cannot reach the Docker engine ({type(e).__name__}: {e})") from None
    return client


def load_targets(client, project: str) -> dict[str, Target]:
    """The project's service containers (not `compose run` one-offs), keyed by service."""
    containers = client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={project}"})
    targets: dict[str, Target] = {}
    for c in containers:
        labels = c.labels or {}
        if labels.get(ONEOFF_LABEL, "False") == "True":
            continue
        service = labels.get(SERVICE_LABEL, c.name)
        current = targets.get(service)
        # With several containers for one service (scale), judge the running one.
        if current is None or (not current.running and c.attrs["State"].get("Running")):
            targets[service] = Target(service, c.attrs, c, targets)
    if not targets:
        raise CannotRun(f"no containers for Compose project '{project}' "
                        f"(is the stack up? pass --project NAME or set COMPOSE_PROJECT_NAME)")
    return targets


def wait_healthy(client, project: str, seconds: float, out=sys.stderr) -> dict[str, Target]:
    """Poll until every service is running and healthy, or the time is up; show progress on one line."""
    deadline = time.monotonic() + seconds
    last, tty = "", out.isatty()
    while True:
        targets = load_targets(client, project)
        states = {s: health_word(targets.get(s)) for s in SERVICES}
        line = ", ".join(f"{s} {w}" for s, w in states.items())
        left = deadline - time.monotonic()
        if all(w == "healthy" for w in states.values()) or left <= 0:
            if last:
                print(("\r" if tty else "") + f"waited: {line}" + (" " * 10), file=out)
            return targets
        if line != last or tty:
            print(("\r" if tty else "") + f"waiting up to {left:.0f}s: {line}", end="" if tty else "\n",
                  file=out, flush=True)
            last = line
        time.sleep(1)


def health_word(t: Target | None) -> str:
    if t is None:
        return "missing"
    state = t.attrs.get("State") or {}
    if not state.get("Running"):
        return state.get("Status", "stopped")
    return (state.get("Health") or {}).get("Status", "no-healthcheck")


# ---------------------------------------------------------------------------------------------
# Chaos: opt-in fault injection.
# ---------------------------------------------------------------------------------------------


def poll(what: Callable[[], bool], seconds: float, step: float = 1.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(step)
    return what()


def api_health_status(api: Target) -> int | None:
    try:
        return api.http_get("/health")[0]
    except (OSError, ValueError):
        return None


def fresh_health(t: Target) -> str:
    """The container's state now, as one word (reloads the inspect record)."""
    t.container.reload()
    t.attrs = t.container.attrs
    return health_word(t)


def chaos_kill_api(api: Target) -> Finding:
    """Crash the API (SIGKILL of its main process from the host) and expect the restart policy to act.

    `docker kill` would not do: the engine treats it as a manual stop and
    never restarts the container. Killing State.Pid from the host is what an
    OOM kill or a segfault looks like to the engine; it needs root on the
    engine's own host.
    """
    f = Finding(API, "CHAOS-API-KILL", "a crashed API comes back healthy", "5.15", FAIL, "")
    fresh_health(api)
    before, pid = api.attrs["RestartCount"], api.attrs["State"].get("Pid") or 0
    name, retries = restart_policy(api.host_config)
    if name == "no":
        f.detail = "restart policy 'no': a crash would leave the API down (not killed)"
    elif name == "on-failure" and retries and before >= retries:
        f.detail = f"restart budget used up ({before}/{retries}): a crash would leave it down (not killed)"
    elif not api.running or pid <= 0:
        f.detail = "API container not running"
    elif os.geteuid() != 0 or not os.path.exists(f"/proc/{pid}"):
        f.result, f.detail = WARN, "skipped: needs root on the engine's host (a local engine)"
    else:
        os.kill(pid, signal.SIGKILL)
        started = time.monotonic()
        if poll(lambda: fresh_health(api) == "healthy" and api.attrs["RestartCount"] > before,
                CHAOS_RESTART_BOUND):
            f.result = PASS
            f.detail = (f"killed pid {pid}; restart {api.attrs['RestartCount']}, healthy again in "
                        f"{time.monotonic() - started:.0f}s")
        else:
            f.detail = (f"killed pid {pid}; not back healthy within {CHAOS_RESTART_BOUND:.0f}s "
                        f"({health_word(api)}, restarts {api.attrs['RestartCount']})")
    return f


def chaos_stop_db(api: Target, db: Target) -> Finding:
    """Stop PostgreSQL: /health must say 503 (not hang, not crash), then recover alone.

    The API must ride out the outage without a restart (its container
    health check uses /health/live for that reason), and its pool must
    reconnect once PostgreSQL is back.
    """
    f = Finding(API, "CHAOS-DB-STOP", "API survives a PostgreSQL outage", "", FAIL, "")
    fresh_health(api)
    before = (api.attrs["State"]["StartedAt"], api.attrs["RestartCount"])
    db.container.stop()
    try:
        saw_503 = poll(lambda: api_health_status(api) == 503, CHAOS_HEALTH_BOUND)
    finally:
        db.container.start()
    if not poll(lambda: fresh_health(db) == "healthy", CHAOS_HEALTH_BOUND):
        f.detail = "PostgreSQL did not come back healthy"
        return f
    recovered = poll(lambda: api_health_status(api) == 200, CHAOS_HEALTH_BOUND)
    fresh_health(api)
    after = (api.attrs["State"]["StartedAt"], api.attrs["RestartCount"])
    if not saw_503:
        f.detail = f"/health did not turn 503 within {CHAOS_HEALTH_BOUND:.0f}s of stopping PostgreSQL"
    elif not recovered:
        f.detail = f"/health not back to 200 within {CHAOS_HEALTH_BOUND:.0f}s of PostgreSQL's restart"
    elif after != before:
        f.detail = "the API restarted during the outage"
    else:
        f.result, f.detail = PASS, "/health 503 while stopped, 200 after restart, API not restarted"
    return f


def chaos(targets: dict[str, Target], out=sys.stderr) -> list[Finding]:
    api, db = targets.get(API), targets.get(POSTGRES)
    if api is None or db is None or not api.running or not db.running:
        return [Finding(API, "CHAOS-API-KILL", "a crashed API comes back healthy", "5.15", FAIL,
                        "the API and PostgreSQL must be running")]
    print(f"chaos: will SIGKILL the main process of {api.attrs['Name'].lstrip('/')} from the host and wait "
          f"up to {CHAOS_RESTART_BOUND:.0f}s for its restart policy to bring it back healthy; then stop "
          f"{db.attrs['Name'].lstrip('/')}, expect /health 503, start it again and expect /health 200 "
          f"with no API restart.", file=out, flush=True)
    findings = [chaos_kill_api(api)]
    findings.append(chaos_stop_db(api, db))
    return findings


# ---------------------------------------------------------------------------------------------
# Output and command line.
# ---------------------------------------------------------------------------------------------


def summary(findings: list[Finding]) -> dict[str, int]:
    return {r: sum(f.result == r for f in findings) for r in (PASS, WARN, FAIL)}


def exit_code(findings: list[Finding]) -> int:
    return 1 if any(f.result == FAIL for f in findings) else 0


def render(findings: list[Finding], project: str, profile: str) -> str:
    lines = [f"Stack '{project}', profile {profile}, checks mapped to {CIS}"]
    if profile == "dev":
        lines.append("dev profile: missing hardening is reported as warnings, not failures")
    width = max(len(f.id) for f in findings)
    for service in dict.fromkeys(f.service for f in findings):
        lines += ["", service, f"  {'CHECK':<{width}}  {'CIS':<16}  RESULT  DETAIL"]
        for f in (f for f in findings if f.service == service):
            lines.append(f"  {f.id:<{width}}  {f.cis or '-':<16}  {f.result.upper():<6}  {f.detail}")
    counts = summary(findings)
    verdict = "FAILED" if counts[FAIL] else "OK"
    lines += ["", f"{verdict}: {counts[PASS]} passed, {counts[WARN]} warnings, {counts[FAIL]} failed"]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--project", help="Compose project name (default: as Compose derives it)")
    p.add_argument("--profile", choices=("prod", "dev"), help="expectations (default: prod when "
                   "compose.prod.yaml was used, else dev)")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.add_argument("--wait", type=float, default=0, metavar="N", help="wait up to N seconds for healthy")
    p.add_argument("--chaos", action="store_true", help="also kill the API and stop PostgreSQL (disruptive)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    project = args.project or compose_project_name()
    try:
        client = connect()
        targets = (wait_healthy(client, project, args.wait) if args.wait > 0
                   else load_targets(client, project))
    except CannotRun as e:
        print(f"verify_stack: {e}", file=sys.stderr)
        return 2
    profile = args.profile or detect_profile(targets)
    findings = verify(targets, profile)
    if args.chaos:
        findings += chaos(targets)
    code = exit_code(findings)
    if args.json:
        print(json.dumps({"project": project, "profile": profile, "benchmark": CIS,
                          "summary": summary(findings), "exit_code": code,
                          "findings": [asdict(f) for f in findings]}, indent=2))
    else:
        print(render(findings, project, profile))
    return code


if __name__ == "__main__":
    sys.exit(main())
