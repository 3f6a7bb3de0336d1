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

`--swarm [--stack NAME]` checks a Docker Swarm stack (tools/swarm.py,
`make swarm-up`) instead: the same checks, read from the services' specs and
their tasks (desired against running tasks, update, rollback and restart
policies, placement, secret owners and modes, the connection budget), with
the live probes run in the tasks that are on this node. Same output and exit
codes; the stack defaults to $SWARM_STACK or items-swarm.
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


class NotHere(Exception):
    """A live probe found no task of the service on this node (Swarm): a warning, not a failure."""


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
        return get_url(url)


def get_url(url: str) -> tuple[int, str]:
    """GET `url`; (status, the start of the body), error statuses included."""
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
        except NotHere as e:  # Swarm: no task of this service runs on this node
            outcome, detail = WARN, str(e)
        except Exception as e:  # a broken probe is a finding, not a crash of the verifier
            outcome, detail = FAIL, f"{type(e).__name__}: {e}"
    if outcome == FAIL and check.hardening and profile == "dev":
        outcome, detail = WARN, f"{detail} (dev profile: not required)"
    return Finding(t.service, check.id, check.title, check.cis, outcome, detail)


def verify(targets: dict[str, Target], profile: str, checks: tuple[Check, ...] = CHECKS,
           services: tuple[str, ...] = SERVICES) -> list[Finding]:
    findings = []
    for service in services:
        t = targets.get(service)
        if t is None:
            missing = "no container" if checks is CHECKS else "no Swarm service"
            findings.append(Finding(service, "RUNNING", checks[0].title, "", FAIL,
                                    f"{missing} for this service"))
            continue
        findings += [run_check(c, t, profile) for c in checks if service in c.services]
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
    f.result, f.detail = outage_verdict(
        saw_503, recovered, CHAOS_HEALTH_BOUND, after != before,
        "the API restarted during the outage",
        "/health 503 while stopped, 200 after restart, API not restarted",
    )
    return f


def outage_verdict(
    saw_503: bool, recovered: bool, recovery_bound: float, restarted: bool, restarted_detail: str, ok_detail: str
) -> tuple[str, str]:
    """The result of a PostgreSQL outage drill: 503 while down, 200 after, and no API restart."""
    if not saw_503:
        return FAIL, f"/health did not turn 503 within {CHAOS_HEALTH_BOUND:.0f}s of stopping PostgreSQL"
    if not recovered:
        return FAIL, f"/health not back to 200 within {recovery_bound:.0f}s of PostgreSQL's restart"
    if restarted:
        return FAIL, restarted_detail
    return PASS, ok_detail


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
# Docker Swarm (--swarm): the same checks, read from a stack's services and tasks.
# ---------------------------------------------------------------------------------------------

STACK_LABEL = "com.docker.stack.namespace"
DEFAULT_STACK = "items-swarm"
PROXY = "proxy"  # the API's entry point in the Swarm stack (tools/swarm_proxy.py)
SWARM_SERVICES = (API, POSTGRES, PGADMIN, PROXY)
# compose.swarm.yaml's restart policy: Swarm's counterpart of unless-stopped (no attempt limit).
SWARM_RESTART_POLICY = ("any", 0)
# Update order per service: the API overlaps old and new tasks; PostgreSQL must never run twice
# on one data directory; pgAdmin and the proxy hold a host port, which two tasks cannot share.
UPDATE_ORDER = {API: "start-first", POSTGRES: "stop-first", PGADMIN: "stop-first", PROXY: "stop-first"}
# Services whose data is on a node-local volume: pinned to exactly one node.
PINNED = (POSTGRES, PGADMIN)
# PostgreSQL connections kept out of the API's budget: pgAdmin sessions, psql, a starting
# task's `migrate`, monitoring.
DB_RESERVE = 10
PG_DEFAULTS = {"max_connections": 100, "superuser_reserved_connections": 3, "reserved_connections": 0}
GWBRIDGE = "docker_gwbridge"
HOST_BINDING = "com.docker.network.bridge.host_binding_ipv4"
NS = 1_000_000_000


def duration(ns: int | None) -> str:
    """Nanoseconds (Swarm's unit) as Compose writes them: 10s, 1m30s, 0s."""
    seconds = (ns or 0) / NS
    minutes, rest = divmod(seconds, 60)
    text = (f"{int(minutes)}m" if minutes else "") + (f"{rest:g}s" if rest or not minutes else "")
    return text


def update_surge(replicas: int, order: str, parallelism: int) -> int:
    """Extra tasks an update (or rollback) runs next to the old ones: start-first only.

    Parallelism 0 means all at once, as in Swarm.
    """
    if order != "start-first" or replicas <= 0:
        return 0
    return replicas if parallelism <= 0 else min(parallelism, replicas)


def postgres_settings(command: list[str] | None, live: dict[str, str] | None = None) -> dict[str, int]:
    """max_connections and the reserved slots, from `SHOW` output (live) or `-c name=value` arguments."""
    settings = dict(PG_DEFAULTS)
    args = list(command or [])
    for i, arg in enumerate(args):
        pair = args[i + 1] if arg == "-c" and i + 1 < len(args) else arg[2:] if arg.startswith("--") else ""
        name, _, value = pair.partition("=")
        name = name.replace("-", "_")
        if name in settings and value.strip().isdigit():
            settings[name] = int(value)
    for name, value in (live or {}).items():
        if name in settings and str(value).strip().isdigit():
            settings[name] = int(value)
    return settings


def connection_budget(api_env: dict[str, str], replicas: int, surge: int, settings: dict[str, int],
                      reserve: int = DB_RESERVE) -> tuple[bool, str]:
    """Whether every API task's pools fit in PostgreSQL, with room to spare.

    Each task opens at most WORKERS x DB_POOL_MAX connections (app/config.py's
    defaults: 1 and max(4, DB_POOL_MIN)); a start-first update runs `surge` more
    tasks for a while. That must fit under max_connections minus the slots
    PostgreSQL keeps for superusers (and for pg_use_reserved_connections) minus
    `reserve` for everything else.
    """
    try:
        workers = int(str(api_env.get("WORKERS") or "1"))
        pool_min = int(str(api_env.get("DB_POOL_MIN") or "2"))
        pool_max = int(str(api_env.get("DB_POOL_MAX") or max(4, pool_min)))
    except ValueError as e:
        return False, f"unreadable pool settings ({e})"
    tasks = replicas + surge
    need = tasks * workers * pool_max
    room = (settings["max_connections"] - settings["superuser_reserved_connections"]
            - settings["reserved_connections"] - reserve)
    detail = (f"{tasks} tasks ({replicas} + {surge} while updating) x {workers} workers x {pool_max} "
              f"connections = {need}, room {room} (max_connections {settings['max_connections']} - "
              f"{settings['superuser_reserved_connections']} superuser - {settings['reserved_connections']} "
              f"reserved - {reserve} spare)")
    return need <= room, detail


def spec_attrs(record: dict, image: dict | None = None, local: list[dict] | None = None,
               networks: dict[str, dict] | None = None) -> dict:
    """A service spec in the shape of a container's inspect record, for the record-reading checks.

    Where Swarm leaves a setting to each node's engine (no log driver in the
    spec; privileged mode, PID and IPC namespaces, which a stack cannot set),
    the containers of this node's tasks (`local`) say what the engine did.
    """
    task = record["Spec"]["TaskTemplate"]
    spec = task.get("ContainerSpec") or {}
    limits = (task.get("Resources") or {}).get("Limits") or {}
    local = local or []
    host0 = (local[0].get("HostConfig") or {}) if local else {}
    log = task.get("LogDriver")
    mounts = []
    for m in spec.get("Mounts") or []:
        mounts.append({"Type": m.get("Type"), "Name": m.get("Source") if m.get("Type") == "volume" else "",
                       "Source": m.get("Source") or "", "Destination": m.get("Target"),
                       "RW": not m.get("ReadOnly")})
    for ref in spec.get("Secrets") or []:
        name = (ref.get("File") or {}).get("Name") or ref.get("SecretName")
        mounts.append({"Type": "secret", "Name": ref.get("SecretName"), "Source": "",
                       "Destination": name if name.startswith("/") else SECRETS_DIR + name, "RW": False})
    nets = networks or {}
    on_host = any((nets.get(n.get("Target")) or {}).get("Driver") == "host" or n.get("Target") == "host"
                  for n in task.get("Networks") or [])
    # A service's health check, or else its image's (as for a container).
    healthcheck = spec.get("Healthcheck") or ((image or {}).get("Config") or {}).get("Healthcheck")
    return {
        "Name": record["Spec"]["Name"],
        "Config": {"User": spec.get("User") or "", "Env": spec.get("Env") or [], "Healthcheck": healthcheck,
                   "Labels": record["Spec"].get("Labels") or {}, "Image": spec.get("Image")},
        "HostConfig": {
            "ReadonlyRootfs": bool(spec.get("ReadOnly")),
            "CapDrop": spec.get("CapabilityDrop") or [],
            "CapAdd": spec.get("CapabilityAdd") or [],
            "Privileged": bool(host0.get("Privileged")),
            "NetworkMode": "host" if on_host else "overlay",
            "PidMode": host0.get("PidMode") or "",
            "IpcMode": host0.get("IpcMode") or "",
            "Memory": int(limits.get("MemoryBytes") or 0),
            "NanoCpus": int(limits.get("NanoCPUs") or 0),
            "PidsLimit": int(limits.get("Pids") or 0),
            "LogConfig": ({"Type": log.get("Name"), "Config": log.get("Options") or {}} if log
                          else host0.get("LogConfig") or {}),
        },
        "Mounts": mounts,
    }


def task_state(task: dict) -> str:
    return (task.get("Status") or {}).get("State", "")


def running_tasks(tasks: list[dict]) -> list[dict]:
    return [t for t in tasks if t.get("DesiredState") == "running" and task_state(t) == "running"]


class SwarmTarget(Target):
    """One Swarm service: its spec, its tasks, and the containers of its tasks on this node.

    `attrs` is the spec in a container record's shape (see spec_attrs), so the
    checks written for containers run unchanged; what only Swarm has is in
    `record` (docker service inspect), `tasks` and `facts` (node id, nodes,
    docker_gwbridge, the engine's security options). `local` holds the inspect
    records of this node's running task containers. Unit tests pass captured
    records (with `_top`) and no engine; live use adds the container objects.
    """

    def __init__(self, service: str, record: dict, tasks: list[dict], local: list[dict] | None = None,
                 containers: list | None = None, facts: dict | None = None, image: dict | None = None,
                 stack: dict | None = None):
        self.record = record
        self.tasks = tasks
        self.local = local or []
        self.containers = containers or []
        self.facts = facts or {}
        attrs = spec_attrs(record, image, self.local, self.facts.get("networks"))
        attrs["State"] = {"Running": bool(running_tasks(tasks)), "Status": "running"}
        super().__init__(service, attrs, None, stack)

    @property
    def spec(self) -> dict:
        return self.record["Spec"]

    @property
    def container_spec(self) -> dict:
        return self.spec["TaskTemplate"].get("ContainerSpec") or {}

    def desired(self) -> int:
        mode = self.spec.get("Mode") or {}
        if "Replicated" in mode:
            return int(mode["Replicated"].get("Replicas") or 0)
        status = self.record.get("ServiceStatus") or {}
        if "DesiredTasks" in status:
            return int(status["DesiredTasks"])
        return len({t.get("NodeID") for t in self.tasks if t.get("DesiredState") == "running"})

    def endpoint_ports(self) -> list[dict]:
        return ((self.spec.get("EndpointSpec") or {}).get("Ports")
                or (self.record.get("Endpoint") or {}).get("Ports") or [])

    def binding(self) -> str:
        """The address host-mode ports bind to on this node: docker_gwbridge's default binding."""
        gw = self.facts.get("gwbridge") or {}
        return (gw.get("Options") or {}).get(HOST_BINDING) or "0.0.0.0"

    def need_local(self) -> None:
        if not self.local:
            raise NotHere("no running task of this service on this node to probe")

    def top(self) -> dict:
        self.need_local()
        merged: dict = {"Titles": None, "Processes": []}
        for i, attrs in enumerate(self.local):
            top = attrs["_top"] if "_top" in attrs else self.containers[i].top(ps_args=TOP_ARGS)
            merged["Titles"] = merged["Titles"] or top.get("Titles")
            merged["Processes"] += top.get("Processes") or []
        return merged

    def exec(self, cmd: list[str], user: str = "") -> tuple[int, str]:
        self.need_local()
        if not self.containers:
            raise CannotRun("no live container to exec in")
        result = self.containers[0].exec_run(cmd, user=user, demux=False)
        return result.exit_code, (result.output or b"").decode("utf-8", "replace").strip()

    def http_get(self, path: str) -> tuple[int, str]:
        """GET on the service's published port, or for the API on the proxy's (its entry point)."""
        t = self
        if not t.endpoint_ports() and self.service == API and PROXY in self.stack:
            t = self.stack[PROXY]
        ports = [p for p in t.endpoint_ports()
                 if p.get("PublishedPort") and p.get("Protocol", "tcp") == "tcp"]
        if not ports:
            raise ConnectionError("no published port")
        host = t.binding() if ports[0].get("PublishMode") == "host" else "127.0.0.1"
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        url = f"http://{host}:{ports[0]['PublishedPort']}{path}"
        return get_url(url)


def check_swarm_running(t: SwarmTarget) -> tuple[str, str]:
    """Swarm keeps `desired` tasks running; fewer means tasks fail, wait for resources or cannot be placed."""
    desired, running = t.desired(), len(running_tasks(t.tasks))
    failed = sum(task_state(x) in ("failed", "rejected") for x in t.tasks)
    detail = f"{running}/{desired} tasks running, {failed} failed in history"
    if desired == 0:
        return FAIL, f"{detail} (scaled to 0)"
    if running < desired:
        pending = [x for x in t.tasks if x.get("DesiredState") == "running" and task_state(x) != "running"]
        why = ((pending[0].get("Status") or {}).get("Err") or task_state(pending[0])) if pending else ""
        return FAIL, f"{detail}{f' ({why[:60]})' if why else ''}"
    return PASS, detail


def check_swarm_healthy(t: SwarmTarget) -> tuple[str, str]:
    """Swarm counts a task as running once its health check passes, and replaces one turning unhealthy.

    The tasks on this node are read from their containers; elsewhere "running"
    says that the check passed.
    """
    if not (t.attrs["Config"].get("Healthcheck") or {}).get("Test"):
        return FAIL, "no health status (no health check)"
    states = [((c.get("State") or {}).get("Health") or {}).get("Status", "none") for c in t.local]
    remote = len(running_tasks(t.tasks)) - len(states)
    bad = [s for s in states if s != "healthy"]
    detail = f"{len(states) - len(bad)}/{len(states)} healthy here"
    detail += f", {remote} running elsewhere" if remote > 0 else ""
    if not states and remote <= 0:
        return FAIL, "no running task"
    return result(not bad, detail, f"{detail}: {', '.join(sorted(set(bad)))}")


def check_swarm_no_new_privileges(t: SwarmTarget) -> tuple[str, str]:
    """no-new-privileges, from the spec, this engine's default, or the task containers here.

    `docker stack deploy` ignores security_opt and `docker service` has no
    flag for it, so a stack cannot ask for it: a warning (not a failure) says
    where it has to come from, the engine's daemon.json on every node.
    """
    if ((t.container_spec.get("Privileges") or {}).get("NoNewPrivileges")):
        return PASS, "no-new-privileges (service spec)"
    if "name=no-new-privileges" in (t.facts.get("security_options") or []):
        return PASS, "no-new-privileges (engine default on this node)"
    effective = [no_new_privileges((c.get("HostConfig") or {}).get("SecurityOpt")) for c in t.local]
    if effective and all(effective):
        return PASS, "no-new-privileges:true (task containers)"
    return WARN, ("not set: a stack cannot set it (security_opt is ignored); set \"no-new-privileges\": true "
                  "in each node's daemon.json")


def check_swarm_restart(t: SwarmTarget) -> tuple[str, str]:
    """Swarm restarts by policy: `any` with no attempt limit is compose.prod.yaml's unless-stopped.

    on-failure would leave a task that exits 0 down; a max_attempts budget
    leaves a crash-looping service down for good once spent.
    """
    policy = t.spec["TaskTemplate"].get("RestartPolicy") or {}
    condition, attempts = policy.get("Condition") or "any", int(policy.get("MaxAttempts") or 0)
    shown = f"{condition}, delay {duration(policy.get('Delay'))}, " + (
        f"{attempts} attempts per {duration(policy.get('Window'))}" if attempts else "no attempt limit")
    expected = f"{SWARM_RESTART_POLICY[0]}, no attempt limit"
    return result((condition, attempts) == SWARM_RESTART_POLICY, shown, f"{shown}, expected {expected}")


def check_update_policy(t: SwarmTarget) -> tuple[str, str]:
    """Rolling updates as compose.swarm.yaml sets them: health-gated, rolled back when a new task fails.

    The API starts a new task before stopping an old one; PostgreSQL, and
    services that hold a host port, stop the old one first. Without
    `failure_action: rollback` Swarm pauses a failed update half-way, on a mix
    of old and new tasks.
    """
    update, rollback = t.spec.get("UpdateConfig"), t.spec.get("RollbackConfig")
    if not update:
        return FAIL, "no update_config: Swarm's default stops first and pauses on failure"
    order, action = update.get("Order") or "stop-first", update.get("FailureAction") or "pause"
    monitor, parallelism = update.get("Monitor") or 5 * NS, int(update.get("Parallelism") or 0)
    shown = (f"{order}, {parallelism or 'all'} at a time, {action} on failure, monitor {duration(monitor)}")
    expected = UPDATE_ORDER.get(t.service, order)
    problems = ([f"order {order}, expected {expected}"] if order != expected else []) + \
               ([f"failure action {action}, expected rollback"] if action != "rollback" else []) + \
               (["no rollback_config"] if not rollback else []) + \
               (["updates every task at once"] if parallelism == 0 and t.desired() > 1 else [])
    return result(not problems, shown, "; ".join(problems))


def swarm_ports(t: SwarmTarget) -> list[tuple[str, str]]:
    """(shown binding, mode) of each published port."""
    out = []
    for p in t.endpoint_ports():
        mode = p.get("PublishMode") or "ingress"
        host = t.binding() if mode == "host" else "*"
        target = f"{p.get('TargetPort')}/{p.get('Protocol', 'tcp')}"
        out.append((f"{host}:{p.get('PublishedPort')}->{target} ({mode})", mode))
    return out


def check_swarm_ports_loopback(t: SwarmTarget) -> tuple[str, str]:
    """Swarm ports have no host IP: the routing mesh publishes on every address of every node.

    Host-mode ports bind to the address of the node's docker_gwbridge
    (tools/swarm.py makes it 127.0.0.1 on a swarm it creates); this node's is
    what is checked.
    """
    ports = swarm_ports(t)
    if not ports:
        return PASS, "nothing published"
    shown = ", ".join(s for s, _ in ports)
    ok = all(mode == "host" and is_loopback(t.binding()) for _, mode in ports)
    return result(ok, shown, shown)


def check_swarm_db_unpublished(t: SwarmTarget) -> tuple[str, str]:
    """The API and pgAdmin reach PostgreSQL on the backend overlay network; publishing only adds exposure."""
    ports = swarm_ports(t)
    return result(not ports, "not published", "published on " + ", ".join(s for s, _ in ports))


def check_secret_owner(t: SwarmTarget) -> tuple[str, str]:
    """Swarm sets each secret file's owner and mode per service (Compose cannot): its user, no one else.

    A secret readable by others is readable by any process of any uid in the
    container; one owned by another uid may not be readable at all.
    """
    refs = t.container_spec.get("Secrets") or []
    if not refs:
        return FAIL, "no secrets"
    uid = config_uid(t.config.get("User")) or "0"
    problems, modes = [], set()
    for ref in refs:
        f = ref.get("File") or {}
        mode, owner = int(f.get("Mode") or 0o444), str(f.get("UID") or "0")
        modes.add(f"{mode:04o}")
        if mode & 0o007:
            problems.append(f"{f.get('Name')} mode {mode:04o} is readable by others")
        if owner != uid:
            problems.append(f"{f.get('Name')} owned by {owner}, the service runs as {uid}")
    good = f"{len(refs)} owned by {uid}, mode {', '.join(sorted(modes))}"
    return result(not problems, good, "; ".join(problems))


CONSTRAINT = re.compile(r"\s*([\w.\-]+)\s*(==|!=)\s*(\S+)\s*")


def node_matches(node: dict, constraint: str) -> bool | None:
    """Whether a node satisfies one placement constraint; None for a key this does not know."""
    m = CONSTRAINT.fullmatch(constraint)
    if not m:
        return None
    key, op, value = m.groups()
    spec, desc = node.get("Spec") or {}, node.get("Description") or {}
    if key == "node.id":
        actual = node.get("ID")
    elif key == "node.hostname":
        actual = desc.get("Hostname")
    elif key == "node.role":
        actual = spec.get("Role")
    elif key.startswith("node.labels."):
        actual = (spec.get("Labels") or {}).get(key.removeprefix("node.labels."))
    elif key.startswith("engine.labels."):
        actual = ((desc.get("Engine") or {}).get("Labels") or {}).get(key.removeprefix("engine.labels."))
    else:
        return None
    return (actual == value) if op == "==" else (actual != value)


def check_placement(t: SwarmTarget) -> tuple[str, str]:
    """A named volume lives on one node: its service must always be placed on that node, as one task.

    Unpinned, a rescheduled PostgreSQL would start on another node with an
    empty volume, initialise a new cluster there and serve it.
    """
    constraints = (t.spec["TaskTemplate"].get("Placement") or {}).get("Constraints") or []
    nodes = t.facts.get("nodes") or []
    if t.desired() > 1:
        return FAIL, f"{t.desired()} replicas of a service with a local volume"
    if not constraints:
        return FAIL, "no placement constraint: any node may run it, with an empty volume"
    if nodes and any(node_matches(nodes[0], c) is None for c in constraints):
        return WARN, f"cannot evaluate {', '.join(constraints)}"
    matches = [n for n in nodes if all(node_matches(n, c) for c in constraints)]
    names = ", ".join((n.get("Description") or {}).get("Hostname", n.get("ID", "?")[:12]) for n in matches)
    if len(matches) != 1:
        return FAIL, f"{', '.join(constraints)} matches {len(matches)} nodes{f' ({names})' if names else ''}"
    return PASS, f"{', '.join(constraints)} (node {names})"


def check_connection_budget(t: SwarmTarget) -> tuple[str, str]:
    """replicas x workers x DB_POOL_MAX (plus the tasks an update adds) must fit PostgreSQL's max_connections.

    Read live from PostgreSQL (SHOW), so a server started with other settings
    is judged by what it really allows.
    """
    db = t.stack.get(POSTGRES)
    if db is None:
        return FAIL, "no PostgreSQL service"
    names = "', '".join(PG_DEFAULTS)
    code, output = db.exec(["psql", "-U", db.env().get("POSTGRES_USER") or "postgres", "-d",
                            db.env().get("POSTGRES_DB") or DEFAULT_DB, "-AtF=", "-c",
                            f"select name, setting from pg_settings where name in ('{names}')"])
    if code != 0:
        return FAIL, f"psql failed ({code}): {output[:80]}"
    live = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    replicas = t.desired()
    surges = [update_surge(replicas, c.get("Order") or "stop-first", int(c.get("Parallelism") or 0))
              for c in (t.spec.get("UpdateConfig") or {}, t.spec.get("RollbackConfig") or {})]
    ok, detail = connection_budget(t.env(), replicas, max(surges), postgres_settings(None, live))
    return result(ok, detail, detail)


SECRET_SERVICES = (API, POSTGRES, PGADMIN)
SWARM_CHECKS = (
    Check("RUNNING", "desired tasks running", "", check_swarm_running, SWARM_SERVICES),
    Check("HEALTHY", "tasks are healthy", "5.27", check_swarm_healthy, SWARM_SERVICES),
    Check("HEALTHCHECK", "a health check is defined", "4.6", check_healthcheck, SWARM_SERVICES),
    Check("USER", "configured user is set and not root", "4.1", check_user, SWARM_SERVICES, hardening=True),
    Check("PROCS-NONROOT", "running processes have non-zero uids", "4.1", check_processes, SWARM_SERVICES,
          hardening=True, live=True),
    Check("READ-ONLY", "root filesystem is read-only", "5.13", check_read_only, SWARM_SERVICES,
          hardening=True),
    Check("NO-NEW-PRIVS", "no-new-privileges is true", "5.26", check_swarm_no_new_privileges, SWARM_SERVICES,
          hardening=True),
    Check("CAPS", "all capabilities dropped, none added", "5.4", check_capabilities, SWARM_SERVICES,
          hardening=True),
    Check("NOT-PRIVILEGED", "not privileged", "5.5", check_not_privileged, SWARM_SERVICES),
    Check("HOST-NS", "no host network, PID or IPC namespace", "5.10, 5.16, 5.17", check_host_namespaces,
          SWARM_SERVICES),
    Check("DOCKER-SOCK", "Docker socket not mounted", "5.32", check_docker_socket, SWARM_SERVICES),
    Check("MEMORY", "memory limit set", "5.11", check_memory, SWARM_SERVICES, hardening=True),
    Check("CPU", "CPU limit set", "5.12", check_cpu, SWARM_SERVICES, hardening=True),
    Check("PIDS", "pids limit set", "5.29", check_pids, SWARM_SERVICES, hardening=True),
    Check("RESTART", "restart policy as documented", "5.15", check_swarm_restart, SWARM_SERVICES,
          hardening=True),
    Check("UPDATE-POLICY", "rolling updates gated on health, rolled back on failure", "",
          check_update_policy, SWARM_SERVICES, hardening=True),
    Check("PORTS-LOOPBACK", "published ports bound to loopback only", "5.14", check_swarm_ports_loopback,
          SWARM_SERVICES, hardening=True),
    Check("DB-UNPUBLISHED", "PostgreSQL port not published", "5.9", check_swarm_db_unpublished, (POSTGRES,),
          hardening=True),
    Check("PLACEMENT", "a service with a local volume is pinned to one node", "", check_placement, PINNED),
    Check("SECRETS-MOUNTED", "secrets mounted read-only under /run/secrets", "", check_secrets_mounted,
          SECRET_SERVICES),
    Check("SECRETS-OWNER", "secret files owned by the service's user, not readable by others", "",
          check_secret_owner, SECRET_SERVICES, hardening=True),
    Check("SECRETS-READABLE", "secrets readable by the service's user", "", check_secrets_readable,
          SECRET_SERVICES, live=True),
    Check("ENV-NO-SECRETS", "no secret values in the environment", "", check_env_secrets, SWARM_SERVICES),
    Check("DB-VOLUME", "PostgreSQL data on a named volume", "", check_db_volume, (POSTGRES,)),
    Check("LOG-ROTATION", "log rotation configured", "", check_log_rotation, SWARM_SERVICES, hardening=True),
    Check("CONN-BUDGET", "API connections fit PostgreSQL's max_connections", "", check_connection_budget,
          (API,), live=True),
    Check("API-HEALTH", "/health answers 200 with database ok", "", check_api_health, (API,), live=True),
    Check("PGADMIN-PING", "/misc/ping answers 200", "", check_pgadmin_ping, (PGADMIN,), live=True),
    Check("DB-ROLE", "the API's database role is not a superuser", "", check_db_role, (POSTGRES,), live=True),
)


def load_swarm(client, stack: str) -> dict[str, SwarmTarget]:
    """The stack's services, their tasks, and the containers of the tasks running on this node."""
    info = client.info()
    swarm = info.get("Swarm") or {}
    if swarm.get("LocalNodeState") != "active":
        raise CannotRun("this engine is not part of a swarm (deploy with `make swarm-up`)")
    if not swarm.get("ControlAvailable"):
        raise CannotRun("this node is not a swarm manager: run the verifier on a manager")
    services = client.api.services(filters={"label": f"{STACK_LABEL}={stack}"}, status=True)
    if not services:
        raise CannotRun(f"no services for Swarm stack '{stack}' (is it deployed? pass --stack NAME "
                        f"or set SWARM_STACK)")
    node_id = swarm["NodeID"]
    networks = {n["Id"]: n for n in client.api.networks()}
    try:
        gwbridge = client.api.inspect_network(GWBRIDGE)
    except Exception:
        gwbridge = {}
    facts = {"node_id": node_id, "nodes": client.api.nodes(), "gwbridge": gwbridge, "networks": networks,
             "security_options": info.get("SecurityOptions") or []}
    targets: dict[str, SwarmTarget] = {}
    for record in services:
        name = record["Spec"]["Name"].removeprefix(f"{stack}_")
        tasks = client.api.tasks(filters={"service": record["ID"]})
        local, containers = [], []
        for task in running_tasks(tasks):
            cid = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
            if task.get("NodeID") == node_id and cid:
                try:
                    c = client.containers.get(cid)
                except Exception:
                    continue  # gone between the two calls
                local.append(c.attrs)
                containers.append(c)
        image_ref = (record["Spec"]["TaskTemplate"].get("ContainerSpec") or {}).get("Image", "")
        try:
            image = client.api.inspect_image(image_ref)
        except Exception:
            image = None
        targets[name] = SwarmTarget(name, record, tasks, local, containers, facts, image, targets)
    return targets


def swarm_health_word(t: SwarmTarget | None) -> str:
    if t is None:
        return "missing"
    running, desired = len(running_tasks(t.tasks)), t.desired()
    unhealthy = [c for c in t.local
                 if ((c.get("State") or {}).get("Health") or {}).get("Status") != "healthy"]
    ready = running == desired and not unhealthy and desired
    return f"{running}/{desired}" + ("" if ready else " (not ready)")


def wait_swarm(client, stack: str, seconds: float, out=sys.stderr) -> dict[str, SwarmTarget]:
    """Poll until every service runs its desired tasks, healthy here; one progress line per change."""
    deadline = time.monotonic() + seconds
    last = ""
    while True:
        targets = load_swarm(client, stack)
        words = {s: swarm_health_word(targets.get(s)) for s in SWARM_SERVICES}
        line = ", ".join(f"{s} {w}" for s, w in words.items())
        left = deadline - time.monotonic()
        if all("(" not in w and w != "missing" for w in words.values()) or left <= 0:
            if last:
                print(f"waited: {line}", file=out)
            return targets
        if line != last:
            print(f"waiting up to {left:.0f}s: {line}", file=out, flush=True)
            last = line
        time.sleep(1)


def swarm_chaos(client, stack: str, targets: dict[str, SwarmTarget], out=sys.stderr) -> list[Finding]:
    """Crash one API task (SIGKILL of its main process from the host) and expect Swarm to replace it.

    Then stop PostgreSQL's task the way an outage looks (its container stops):
    the API must answer /health 503 and then 200 once Swarm has started a new
    PostgreSQL task, with no API task replaced on the way.
    """
    api = targets.get(API)
    kill = Finding(API, "CHAOS-API-KILL", "a crashed API task is replaced", "5.15", FAIL, "")
    outage = Finding(API, "CHAOS-DB-STOP", "API survives a PostgreSQL outage", "", FAIL, "")
    if api is None or not api.local or POSTGRES not in targets or not targets[POSTGRES].containers:
        kill.detail = outage.detail = "needs an API task and PostgreSQL's task on this node"
        return [kill, outage]
    victim, pid = api.local[0], api.local[0]["State"].get("Pid") or 0
    print(f"chaos: will SIGKILL the main process (pid {pid}) of API task container "
          f"{victim['Name'].lstrip('/')} from the host and wait up to {CHAOS_RESTART_BOUND:.0f}s for Swarm "
          f"to "
          f"replace it; then stop PostgreSQL's task container, expect /health 503, and 200 once Swarm has "
          f"started a new one, with no API task replaced.", file=out, flush=True)
    if os.geteuid() != 0 or not os.path.exists(f"/proc/{pid}"):
        kill.result, kill.detail = WARN, "skipped: needs root on the engine's host (a local engine)"
    else:
        os.kill(pid, signal.SIGKILL)
        started = time.monotonic()

        def replaced() -> bool:
            now = load_swarm(client, stack)[API]
            ids = {c["Id"] for c in now.local}
            return victim["Id"] not in ids and swarm_health_word(now) == f"{now.desired()}/{now.desired()}"

        if poll(replaced, CHAOS_RESTART_BOUND):
            kill.result = PASS
            kill.detail = f"killed pid {pid}; {api.desired()}/{api.desired()} healthy again in " \
                          f"{time.monotonic() - started:.0f}s"
        else:
            kill.detail = f"killed pid {pid}; not back to {api.desired()} healthy tasks within " \
                          f"{CHAOS_RESTART_BOUND:.0f}s"
    api = load_swarm(client, stack)[API]
    before = {x["ID"] for x in running_tasks(api.tasks)}
    db = load_swarm(client, stack)[POSTGRES]
    db.containers[0].stop()
    saw_503 = poll(lambda: api_health_status(api) == 503, CHAOS_HEALTH_BOUND)
    recovered = poll(lambda: api_health_status(api) == 200, 2 * CHAOS_HEALTH_BOUND)
    after = {x["ID"] for x in running_tasks(load_swarm(client, stack)[API].tasks)}
    outage.result, outage.detail = outage_verdict(
        saw_503, recovered, 2 * CHAOS_HEALTH_BOUND, after != before,
        "API tasks were replaced during the outage",
        "/health 503 while stopped, 200 after Swarm restarted it, no API task replaced",
    )
    return [kill, outage]


def main_swarm(args: argparse.Namespace) -> int:
    stack = args.stack or os.environ.get("SWARM_STACK") or DEFAULT_STACK
    try:
        client = connect()
        targets = wait_swarm(client, stack, args.wait) if args.wait > 0 else load_swarm(client, stack)
    except CannotRun as e:
        print(f"verify_stack: {e}", file=sys.stderr)
        return 2
    profile = args.profile or "prod"
    findings = verify(targets, profile, SWARM_CHECKS, SWARM_SERVICES)
    if args.chaos:
        findings += swarm_chaos(client, stack, targets)
    code = exit_code(findings)
    if args.json:
        print(json.dumps({"project": stack, "orchestrator": "swarm", "profile": profile, "benchmark": CIS,
                          "summary": summary(findings), "exit_code": code,
                          "findings": [asdict(f) for f in findings]}, indent=2))
    else:
        print(render(findings, stack, profile, kind="Swarm stack"))
    return code


# ---------------------------------------------------------------------------------------------
# Output and command line.
# ---------------------------------------------------------------------------------------------


def summary(findings: list[Finding]) -> dict[str, int]:
    return {r: sum(f.result == r for f in findings) for r in (PASS, WARN, FAIL)}


def exit_code(findings: list[Finding]) -> int:
    return 1 if any(f.result == FAIL for f in findings) else 0


def render(findings: list[Finding], project: str, profile: str, kind: str = "Stack") -> str:
    lines = [f"{kind} '{project}', profile {profile}, checks mapped to {CIS}"]
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
    p.add_argument("--swarm", action="store_true",
                   help="check a Docker Swarm stack instead of a Compose project")
    p.add_argument("--stack", help=f"Swarm stack name (default: $SWARM_STACK or {DEFAULT_STACK}; "
                   "implies --swarm)")
    args = p.parse_args(argv)
    if args.stack:
        args.swarm = True
    if args.swarm and args.project:
        p.error("--project names a Compose project; a Swarm stack is --stack")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.swarm:
        return main_swarm(args)
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
