#!/usr/bin/env python3
"""Run the stack on Docker Swarm: compose.yaml + compose.prod.yaml + compose.swarm.yaml.

    python3 tools/swarm.py up      [--stack NAME] [--image REF]   (`make swarm-up`)
    python3 tools/swarm.py update  [--stack NAME] [--image REF]   (`make swarm-update`)
    python3 tools/swarm.py down    [--stack NAME] [--volumes]     (`make swarm-down`)
    python3 tools/swarm.py render  [--stack NAME]                 (what would be deployed)
    python3 tools/swarm.py key --name N --scope read|write [--expires-in DAYS]   (`make swarm-key`)
    python3 tools/swarm.py keys | revoke-key --name N           (`make swarm-keys`, `swarm-revoke-key`)

`up` initialises a single-node swarm when the engine is in none (advertising
127.0.0.1, its control port on loopback, published ports bound to
SWARM_BIND_ADDRESS, 127.0.0.1 by default), labels the node for PostgreSQL,
builds the API and edge images and tags them by content, checks the
connection budget, deploys with `docker stack deploy` and waits until every
service runs its desired tasks, healthy. `update` does the same to an existing stack and
reports whether the rolling update completed or was rolled back. `down`
removes the stack with its secrets and configs (volumes only with --volumes)
and leaves the swarm if this tool created it and no other service runs there.
`key`, `keys` and `revoke-key` run `python -m app keys create|list|revoke` in a
running API task on this node: `key` prints the new key alone on stdout.

`docker stack deploy` reads only the old version-3 compose format, so the
three files are merged by `docker compose config` and the result adapted
here: types the old loader wants, networks as lists, and versioned names for
secrets and configs. Keys that Swarm ignores are refused, not dropped: the
swarm file must say what replaces them.

Settings (environment, or .env / --env-file for the compose variables):
    SWARM_STACK          stack name (default items-swarm; not `items`, whose
                         volume names belong to the Compose stack)
    API_IMAGE            deploy this API image instead of building one
    EDGE_IMAGE           deploy this edge (nginx) image instead of building one
    BACKUP_IMAGE         deploy this backup (Barman) image instead of building one
    API_REPLICAS         API tasks (default 3)
    SWARM_API_PORT       the API's HTTP port, on the edge (default 5100)
    SWARM_API_TLS_PORT   the API's HTTPS port, on the edge (default 5543)
    SWARM_PGADMIN_PORT   pgAdmin's port (default 5150)
    SWARM_BIND_ADDRESS   address published ports bind to, for a swarm this
                         tool creates (default 127.0.0.1)
    SWARM_BACKEND_SUBNET the backend overlay's subnet, where the API's tasks
                         bind their metrics port (default 10.231.0.0/24)
    PG_MAX_CONNECTIONS   PostgreSQL's max_connections (default 100; see the budget)
    SECRETS_DIR          the secret files (default ./secrets)
    TLS_CERT_FILE, TLS_KEY_FILE   the edge's certificate and key (default: a
                         self-signed pair for localhost, made in SECRETS_DIR)
    EXTRA_CA_BUNDLE      CA bundle for pip while building (see README)

Exit codes: 0 done, 1 the stack did not converge (or an update rolled back),
2 it could not run (no engine, a refused key, a broken connection budget).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the checkout, not tools/
from tools import docker_cli  # noqa: E402
from tools.verify import budget as db_budget  # noqa: E402  (the verifier's connection budget)

ROOT = Path(__file__).resolve().parent.parent
BUILD_FILES = ("compose.yaml", "compose.prod.yaml")
STACK_FILES = (*BUILD_FILES, "compose.swarm.yaml")
DEFAULT_STACK = "items-swarm"
API_SERVICE = "flask-api"
EDGE_SERVICE = "edge"
# The services built here, with the variable that names a prebuilt image instead. Their
# images (items-api:local, items-edge:local) are tagged here by content.
BACKUP_SERVICE = "backup"
BUILT = {API_SERVICE: "API_IMAGE", EDGE_SERVICE: "EDGE_IMAGE", BACKUP_SERVICE: "BACKUP_IMAGE"}
NAMESPACE = "com.docker.stack.namespace"
DB_NODE_LABEL = "items.db"  # where PostgreSQL (and its volume) live: compose.swarm.yaml's constraint
INIT_LABEL = "items.swarm-init"  # on the node: this tool initialised the swarm
CREATED_BY = "items.created-by"  # on docker_gwbridge: this tool created it
GWBRIDGE = "docker_gwbridge"
SALT_FILE = ".swarm-salt"
WAIT_SECONDS = 300.0
FINAL_UPDATES = ("completed", "paused", "rollback_completed", "rollback_paused")
FAILED_UPDATES = ("paused", "rollback_completed", "rollback_paused")
UPDATE_GRACE = 15.0  # seconds for Swarm to start the update of a changed service

# Service keys that `docker stack deploy` ignores (or that mean nothing to Swarm),
# and what a reader of compose.swarm.yaml should know about each.
SWARM_IGNORES = {
    "build": "Swarm runs images: build first, deploy a tag",
    "pull_policy": "not part of Swarm",
    "restart": "Swarm uses deploy.restart_policy",
    "depends_on": "Swarm starts services in no order",
    "security_opt": "Swarm cannot set no-new-privileges or other security options from a stack",
    "tmpfs": "use a volume of type tmpfs",
    "container_name": "Swarm names tasks itself",
    "devices": "not supported by Swarm",
    "privileged": "not supported by Swarm",
    "network_mode": "use networks",
    "pid": "not supported by Swarm",
    "ipc": "not supported by Swarm",
    "userns_mode": "not supported by Swarm",
    "cgroup_parent": "not supported by Swarm",
    "cgroupns_mode": "not supported by Swarm",
    "shm_size": "not supported by Swarm",
    "mac_address": "not supported by Swarm",
    "domainname": "not supported by Swarm",
    "links": "use networks",
    "external_links": "use networks",
    "expose": "not needed on overlay networks",
    "volumes_from": "not supported by Swarm",
}


class CannotRun(Exception):
    """Exit code 2: nothing was changed, or what was cannot go on."""


class NotConverged(Exception):
    """Exit code 1: deployed, but not every service became healthy (or an update rolled back)."""


def say(message: str) -> None:
    print(f"swarm: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# The docker command line.
# ---------------------------------------------------------------------------------------------


class Docker(docker_cli.Docker):
    """The docker client (tools/docker_cli.py), whose failures are CannotRun, as everything here."""

    def __init__(self, env: dict[str, str]):
        binary = docker_cli.docker_binary()
        if not binary:
            raise CannotRun("no docker client (PATH, $DOCKER)")
        super().__init__(binary, env=env)

    def __call__(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        try:
            return super().__call__(*args, **kwargs)
        except docker_cli.DockerError as e:
            detail = (e.stderr or e.stdout).strip()
            raise CannotRun(f"docker {' '.join(args[:3])} ... failed ({e.returncode}): {detail[-1500:]}") from None


# ---------------------------------------------------------------------------------------------
# Rendering: the three files as `docker stack deploy` can read them (pure functions, unit-tested).
# ---------------------------------------------------------------------------------------------


def content_version(data: bytes, salt: bytes = b"") -> str:
    """12 hex digits naming one content. Secrets are salted so that the name says nothing of them."""
    return hashlib.sha256(salt + data).hexdigest()[:12]


def ignored_keys(rendered: dict) -> list[str]:
    """`service.key` for every key Swarm would ignore, and published ports with a host IP."""
    found = []
    for name, service in sorted((rendered.get("services") or {}).items()):
        for key in sorted(SWARM_IGNORES):
            if service.get(key) not in (None, [], {}, ""):
                found.append(f"{name}.{key} ({SWARM_IGNORES[key]})")
        for port in service.get("ports") or []:
            if isinstance(port, dict) and port.get("host_ip"):
                found.append(f"{name}.ports host_ip {port['host_ip']} (Swarm publishes on every "
                             f"address; see SWARM_BIND_ADDRESS)")
    return found


def from_registry(ref: str) -> bool:
    """Whether an image reference names a registry host (registry.example.com/x, localhost:5000/x)."""
    first, slash, _ = ref.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


def _mode(value) -> int:
    """A file mode as Compose renders it ("0400") into the number the old loader wants."""
    return int(value, 8) if isinstance(value, str) else int(value)


def to_stack(rendered: dict, stack: str, versions: dict[tuple[str, str], str]) -> dict:
    """The merged compose model (`docker compose config --format json`) in the old format.

    `versions` maps ("secrets"|"configs", key) to the version that goes into
    the object's name, <stack>_<key>_<version>: Swarm secrets and configs are
    immutable, so new content must be a new name (services then roll over).
    """
    problems = ignored_keys(rendered)
    if problems:
        raise CannotRun("Swarm would ignore these settings; reset or replace them in compose.swarm.yaml: "
                        + "; ".join(problems))
    out: dict = {"version": "3.13", "services": {}}
    for name, service in sorted(rendered["services"].items()):
        s = {k: v for k, v in service.items() if v is not None}
        if isinstance(s.get("networks"), dict):
            nets = s["networks"]
            s["networks"] = sorted(nets) if all(v is None for v in nets.values()) else {
                k: (v or {}) for k, v in nets.items()}
        resources = (s.get("deploy") or {}).get("resources") or {}
        for part in ("limits", "reservations"):
            if "cpus" in (resources.get(part) or {}):
                resources[part]["cpus"] = str(resources[part]["cpus"])
        for port in s.get("ports") or []:
            for key in ("published", "target"):
                if isinstance(port.get(key), str) and port[key].isdigit():
                    port[key] = int(port[key])
        for kind in ("secrets", "configs"):
            for ref in s.get(kind) or []:
                if "mode" in ref:
                    ref["mode"] = _mode(ref["mode"])
        out["services"][name] = s
    for kind in ("networks", "volumes"):
        if rendered.get(kind):
            out[kind] = {k: {kk: vv for kk, vv in (v or {}).items() if vv is not None}
                         for k, v in rendered[kind].items()}
    for kind in ("secrets", "configs"):
        if rendered.get(kind):
            out[kind] = {}
            for key, value in rendered[kind].items():
                if not value.get("file"):
                    raise CannotRun(f"{kind} {key}: only file-based {kind} are supported here")
                out[kind][key] = {"name": f"{stack}_{key}_{versions[(kind, key)]}", "file": value["file"]}
    return out


def content_versions(rendered: dict, salt: bytes) -> dict[tuple[str, str], str]:
    versions = {}
    for kind in ("secrets", "configs"):
        for key, value in (rendered.get(kind) or {}).items():
            path = Path(value.get("file") or "")
            try:
                data = path.read_bytes()
            except OSError as e:
                raise CannotRun(f"{kind} {key}: cannot read {path} ({e.strerror})") from None
            if not data.strip():
                raise CannotRun(f"{kind} {key}: {path} is empty")
            versions[(kind, key)] = content_version(data, salt if kind == "secrets" else b"")
    return versions


def budget(rendered: dict) -> tuple[bool, str]:
    """The connection budget of the rendered stack (see tools/verify/budget.py)."""
    services = rendered.get("services") or {}
    api, db = services.get(API_SERVICE) or {}, services.get("postgres") or {}
    deploy = api.get("deploy") or {}
    replicas = int(deploy.get("replicas", 1))
    # The old loader's defaults: stop-first, one task at a time.
    surge = max(db_budget.update_surge(replicas, (deploy.get(k) or {}).get("order") or "stop-first",
                                       int((deploy.get(k) or {}).get("parallelism", 1)))
                for k in ("update_config", "rollback_config"))
    settings = db_budget.postgres_settings(db.get("command") or [])
    return db_budget.connection_budget(api.get("environment") or {}, replicas, surge, settings)


# ---------------------------------------------------------------------------------------------
# The swarm itself.
# ---------------------------------------------------------------------------------------------


class Swarm:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.stack = args.stack
        env = {**os.environ}
        env.pop("COMPOSE_FILE", None)
        self.env = env
        self.docker = Docker(env)
        self.secrets_dir = Path(env.get("SECRETS_DIR") or "secrets")
        if not self.secrets_dir.is_absolute():
            self.secrets_dir = ROOT / self.secrets_dir

    # -- state ------------------------------------------------------------------------------

    def info(self) -> dict:
        r = self.docker("info", "--format", "{{json .Swarm}}", check=False)
        if r.returncode != 0:
            raise CannotRun(f"the Docker engine does not answer: {(r.stderr or '').strip()[-300:]}")
        return json.loads(r.stdout)

    def node_id(self) -> str:
        swarm = self.info()
        if swarm.get("LocalNodeState") != "active":
            raise CannotRun("this engine is not part of a swarm")
        return swarm["NodeID"]

    def stack_services(self, stack: str | None = None) -> list[str]:
        label = f"label={NAMESPACE}={stack}" if stack else f"label={NAMESPACE}"
        return self.docker.lines("service", "ls", "--filter", label, "--format", "{{.Name}}")

    # -- up ---------------------------------------------------------------------------------

    def ensure_swarm(self) -> None:
        """A single-node swarm unless the engine is in one; published ports bound to loopback."""
        swarm = self.info()
        state = swarm.get("LocalNodeState")
        if state == "active":
            if not swarm.get("ControlAvailable"):
                raise CannotRun("this node is a swarm worker: run this on a manager")
            say(f"using the existing swarm (node {swarm['NodeID'][:12]})")
            return
        if state not in ("inactive", ""):
            raise CannotRun(f"swarm state is {state!r}; fix or leave it first")
        bind = self.env.get("SWARM_BIND_ADDRESS", "127.0.0.1")
        if not self.network_exists(GWBRIDGE):
            # Created before `swarm init` so that Swarm uses it: host-mode published
            # ports bind to its host_binding_ipv4, like `127.0.0.1:` in compose.prod.yaml.
            self.docker("network", "create", "--driver", "bridge",
                        "--label", f"{CREATED_BY}=tools/swarm.py",
                        "--opt", f"com.docker.network.bridge.name={GWBRIDGE}",
                        "--opt", "com.docker.network.bridge.enable_icc=false",
                        "--opt", "com.docker.network.bridge.enable_ip_masquerade=true",
                        "--opt", f"com.docker.network.bridge.host_binding_ipv4={bind}", GWBRIDGE)
        else:
            say(f"{GWBRIDGE} exists already: published ports bind to its address "
                f"({self.gwbridge_binding() or '0.0.0.0'}), not necessarily {bind}")
        self.docker("swarm", "init", "--advertise-addr", "127.0.0.1", "--listen-addr", "127.0.0.1:2377")
        node = self.info()["NodeID"]
        self.docker("node", "update", "--label-add", f"{INIT_LABEL}=tools/swarm.py", node)
        say(f"initialised a single-node swarm (node {node[:12]}); `down` will leave it")

    def network_exists(self, name: str) -> bool:
        return self.docker("network", "inspect", name, check=False).returncode == 0

    def gwbridge_binding(self) -> str:
        if not self.network_exists(GWBRIDGE):
            return ""
        net = self.docker.json("network", "inspect", GWBRIDGE)[0]
        return (net.get("Options") or {}).get("com.docker.network.bridge.host_binding_ipv4", "")

    def ensure_db_node(self) -> None:
        """PostgreSQL's placement: a node labelled items.db=true (this one, if none is)."""
        nodes = self.docker.lines("node", "ls", "--format", "{{.ID}}")
        labels = {n: self.docker.json("node", "inspect", n)[0]["Spec"].get("Labels") or {} for n in nodes}
        labelled = [n for n in nodes if labels[n].get(DB_NODE_LABEL) == "true"]
        if len(labelled) > 1:
            raise CannotRun(f"{len(labelled)} nodes carry {DB_NODE_LABEL}=true: PostgreSQL's data is on one "
                            f"node's volume, so exactly one node may carry it")
        if not labelled:
            node = self.node_id()
            self.docker("node", "update", "--label-add", f"{DB_NODE_LABEL}=true", node)
            say(f"labelled this node {DB_NODE_LABEL}=true: PostgreSQL and its volume stay here")

    def ensure_secret_files(self) -> bytes:
        """The secret files (random ones where missing, as `make up` makes them) and the salt."""
        self.secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name in ("postgres_password", "app_db_password", "pgadmin_password"):
            path = self.secrets_dir / name
            if not path.exists():
                path.write_text(secrets.token_urlsafe(32) + "\n")
                path.chmod(0o644)
                say(f"created {path}")
        # The edge's TLS pair: the user's (TLS_CERT_FILE, TLS_KEY_FILE) or a self-signed one.
        cert, key = self.secrets_dir / "tls.crt", self.secrets_dir / "tls.key"
        if not (self.env.get("TLS_CERT_FILE") or self.env.get("TLS_KEY_FILE")) and not (
                cert.exists() and key.exists()):
            r = subprocess.run(["sh", str(ROOT / "tools" / "self_signed_tls.sh"), str(cert), str(key)],
                               capture_output=True, text=True, check=False)
            if r.returncode != 0:
                raise CannotRun(f"could not make a self-signed TLS pair: {r.stderr.strip()[-500:]}")
            say(f"created {cert} and {key} (self-signed for localhost)")
        return self.salt()

    def salt(self) -> bytes:
        """Random bytes kept beside the secrets; they make the secrets' version names unguessable."""
        path = self.secrets_dir / SALT_FILE
        if not path.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.write_bytes(secrets.token_bytes(16))
            path.chmod(0o600)
        return path.read_bytes()

    def compose(self, *args: str, files=STACK_FILES, env: dict | None = None, capture: bool = True,
                timeout: float = 600) -> subprocess.CompletedProcess:
        env_file = ["--env-file", self.args.env_file] if self.args.env_file else []
        r = self.docker("compose", *env_file, "-p", self.stack, *[a for f in files for a in ("-f", f)], *args,
                        check=False, env=env or self.env, capture=capture, timeout=timeout)
        if r.returncode != 0:
            raise CannotRun(f"docker compose {' '.join(args[:2])} failed ({r.returncode}): "
                            f"{(r.stderr or '').strip()[-2000:]}")
        return r

    def images(self) -> dict[str, str]:
        """The image each built service deploys, by its content tag.

        The API's is --image or API_IMAGE, the edge's EDGE_IMAGE; the others are
        built as `make build` does.
        """
        given = {name: self.env.get(variable) or "" for name, variable in BUILT.items()}
        given[API_SERVICE] = self.args.image or given[API_SERVICE]
        missing = [name for name, ref in given.items() if not ref]
        if missing:
            say(f"building the images (docker compose build {' '.join(missing)})")
            self.compose("build", *missing, files=BUILD_FILES, capture=False)
            model = json.loads(self.compose("config", "--format", "json", files=BUILD_FILES).stdout)
            given.update({name: model["services"][name]["image"] for name in missing})
        return {name: self.tag_by_content(ref) for name, ref in given.items()}

    def tag_by_content(self, ref: str) -> str:
        """items-api:<12 hex of the image id>: a new build is a new reference, so a new service spec.

        A reference into a registry is deployed as given (the nodes pull it):
        it should be an immutable tag or a digest.
        """
        if from_registry(ref):
            return ref
        r = self.docker("image", "inspect", "--format", "{{.Id}}", ref, check=False)
        if r.returncode != 0:
            raise CannotRun(f"image {ref} is not on this engine")
        digest = r.stdout.strip().removeprefix("sha256:")
        repo = ref.split("@")[0].rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref.split("@")[0]
        tagged = f"{repo}:{digest[:12]}"
        if tagged != ref:
            self.docker("image", "tag", ref, tagged)
        return tagged

    def render(self, images: dict[str, str]) -> tuple[dict, dict]:
        """(the merged compose model, the stack file for `docker stack deploy`), with these images."""
        env = {**self.env, **{BUILT[name]: ref for name, ref in images.items() if ref}}
        rendered = json.loads(self.compose("config", "--format", "json", env=env).stdout)
        return rendered, to_stack(rendered, self.stack, content_versions(rendered, self.salt()))

    def check_budget(self, rendered: dict) -> None:
        ok, detail = budget(rendered)
        if not ok:
            raise CannotRun(f"connection budget broken: {detail}")
        say(f"connection budget: {detail}")

    def deploy(self, stack_file: dict) -> None:
        # Local images are used as they are; images in a registry need the nodes to log in.
        auth = ["--with-registry-auth"] if any(from_registry(s.get("image", ""))
                                               for s in stack_file["services"].values()) else []
        r = self.docker("stack", "deploy", "--detach=true", "--prune", "--resolve-image", "never", *auth,
                        "--compose-file", "-", self.stack, input=json.dumps(stack_file, indent=1))
        for line in (r.stdout + r.stderr).splitlines():
            if line.startswith(("Creating", "Updating", "Removing", "Ignoring")):
                say(line.strip())

    def service_state(self) -> dict[str, dict]:
        """Per service of the stack: running and desired tasks, its task template, its last update."""
        names = self.stack_services(self.stack)
        if not names:
            return {}
        services = {s["Spec"]["Name"]: s for s in self.docker.json("service", "inspect", *names)}
        replicas = {row["Name"]: row.get("Replicas") or "" for row in map(json.loads, self.docker.lines(
            "service", "ls", "--filter", f"label={NAMESPACE}={self.stack}", "--format", "{{json .}}"))}
        state = {}
        for name, service in services.items():
            counts = re.match(r"(\d+)/(\d+)", replicas.get(name, ""))
            update = service.get("UpdateStatus") or {}
            state[name.removeprefix(f"{self.stack}_")] = {
                "running": int(counts.group(1)) if counts else 0,
                "desired": int(counts.group(2)) if counts else 0,
                "update": update.get("State", ""), "started": update.get("StartedAt", ""),
                "message": update.get("Message", ""),
                "template": json.dumps(service["Spec"]["TaskTemplate"], sort_keys=True),
                "image": service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"],
            }
        return state

    def wait(self, before: dict[str, dict], seconds: float) -> dict[str, dict]:
        """Until every service runs its desired tasks and the updates the deploy started have ended.

        A service whose task template changed gets a rolling update: it has
        ended when its update status is newer than `before` and final
        (completed, or rolled back / paused on failure). Swarm starts no update
        when no task needs replacing; after a grace period the running count
        alone decides. Progress goes to stderr, one line per change.
        """
        started, deadline, last = time.monotonic(), time.monotonic() + seconds, ""
        changed = {n for n, s in self.service_state().items()
                   if n in before and before[n]["template"] != s["template"]}
        while True:
            state = self.service_state()

            def fresh(name: str, s: dict) -> bool:
                return name in changed and bool(s["started"]) and s["started"] != before[name]["started"]

            def done(name: str, s: dict) -> bool:
                if fresh(name, s) and s["update"] in FAILED_UPDATES:
                    return True  # reported below
                if not (s["running"] == s["desired"] > 0):
                    return False
                if fresh(name, s):
                    return s["update"] in FINAL_UPDATES
                if name in changed:
                    return time.monotonic() - started > UPDATE_GRACE
                return s["update"] not in ("updating", "rollback_started")

            line = ", ".join(f"{n} {s['running']}/{s['desired']}" + (f" ({s['update']})" if n in changed and
                             s["update"] else "") for n, s in sorted(state.items()))
            if state and all(done(n, s) for n, s in state.items()):
                say(f"settled: {line}")
                failed = {n: s for n, s in state.items() if fresh(n, s) and s["update"] in FAILED_UPDATES}
                if failed:
                    raise NotConverged("; ".join(f"the update of {n} failed: {s['update']} ({s['message']}), "
                                                 f"now on {s['image']}" for n, s in sorted(failed.items())))
                return state
            if time.monotonic() > deadline:
                raise NotConverged(f"not converged within {seconds:.0f}s: {line}")
            if line != last:
                say(f"waiting: {line}")
                last = line
            time.sleep(2)

    def prune(self, stack_file: dict) -> None:
        """Remove this stack's secret and config versions that the deployed file no longer names."""
        for kind in ("secret", "config"):
            wanted = {v["name"] for v in (stack_file.get(f"{kind}s") or {}).values()}
            for name in self.docker.lines(kind, "ls", "--filter", f"label={NAMESPACE}={self.stack}",
                                          "--format", "{{.Name}}"):
                # One still in use by a stopping task is left for the next run.
                if name not in wanted and self.docker(kind, "rm", name, check=False).returncode == 0:
                    say(f"removed old {kind} {name}")

    def urls(self) -> None:
        api_port = self.env.get("SWARM_API_PORT", "5100")
        tls_port = self.env.get("SWARM_API_TLS_PORT", "5543")
        pgadmin_port = self.env.get("SWARM_PGADMIN_PORT", "5150")
        host = self.gwbridge_binding() or "127.0.0.1"
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        print(f"\nAPI:      http://{host}:{api_port}  (stack {self.stack}, through the edge on each node)")
        print(f"          https://localhost:{tls_port}  (certificate "
              f"{self.env.get('TLS_CERT_FILE') or self.secrets_dir / 'tls.crt'})")
        print(f"pgAdmin:  http://{host}:{pgadmin_port}  (password in {self.secrets_dir}/pgadmin_password)")
        print(f"verify:   .venv/bin/python tools/verify_stack.py --swarm --stack {self.stack}")
        print("\nEvery /items call needs an API key. Create one (it is shown once):")
        print(f"  KEY=$(make -s swarm-key SWARM_STACK={self.stack} NAME=me SCOPE=write)")
        print(f'  curl -H "Authorization: Bearer $KEY" http://{host}:{api_port}/items')

    def up(self) -> int:
        self.ensure_swarm()
        self.ensure_db_node()
        return self.deploy_and_wait(update=False)

    def update(self) -> int:
        if API_SERVICE not in self.service_state():
            raise CannotRun(f"no stack {self.stack!r} to update: run `up` first")
        return self.deploy_and_wait(update=True)

    def deploy_and_wait(self, update: bool) -> int:
        self.ensure_secret_files()
        images = self.images()
        rendered, stack_file = self.render(images)
        self.check_budget(rendered)
        before = self.service_state()
        if not before:
            say(f"deploying stack {self.stack} with {', '.join(images.values())}")
        for name, image in images.items():
            old = (before.get(name) or {}).get("image")
            if before and old != image:
                say(f"rolling update of {name}: {old} -> {image}")
            elif before:
                say(f"{name} already runs {image}" + ("" if not update else ": nothing new to roll out"))
        self.deploy(stack_file)
        state = self.wait(before, self.args.timeout)
        self.prune(stack_file)
        self.report(state)
        if not update:
            self.urls()
        return 0

    def report(self, state: dict[str, dict]) -> None:
        for name, s in sorted(state.items()):
            print(f"  {name:<10} {s['running']}/{s['desired']}  {s['image']}")

    # -- API keys ---------------------------------------------------------------------------

    def task_container(self, service: str, healthy: bool = True) -> str:
        """A running (healthy) task's container of `service` on this node (the keys live in the
        database: any API task will do; the backup service has one task, on the database's node)."""
        label = f"label=com.docker.swarm.service.name={self.stack}_{service}"
        health = ("--filter", "health=healthy") if healthy else ()
        found = self.docker.lines("ps", "--quiet", "--filter", label, *health)
        if not found:
            raise CannotRun(f"no {'healthy ' if healthy else ''}{service} task of stack {self.stack!r} "
                            "runs on this node")
        return found[0]

    def in_task(self, service: str, *command: str, healthy: bool = True) -> int:
        """`command` in a task of `service`; its stdout and stderr are ours."""
        return self.docker("exec", self.task_container(service, healthy), *command, check=False,
                           capture=False, timeout=900).returncode

    def keys(self, *action: str) -> int:
        """`python -m app keys ACTION...` in an API task."""
        return self.in_task(API_SERVICE, "python", "-m", "app", "keys", *action)

    def key(self) -> int:
        if not self.args.name or not self.args.scope:
            raise CannotRun("key needs --name and --scope read|write")
        days = ("--expires-in", str(self.args.expires_in)) if self.args.expires_in else ()
        return self.keys("create", "--name", self.args.name, "--scope", self.args.scope, *days)

    def list_keys(self) -> int:
        return self.keys("list")

    def revoke_key(self) -> int:
        if not self.args.name:
            raise CannotRun("revoke-key needs --name")
        return self.keys("revoke", self.args.name)

    # -- backups (the same Barman commands as `make backup` / `make backups`) -----------------

    def backup(self) -> int:
        """A base backup now, then what it took. (Before its first backup the service is not
        healthy yet: any running task will do.)"""
        code = self.in_task(BACKUP_SERVICE, "barman", "backup", "main", "--wait", "--wait-timeout", "300",
                            healthy=False)
        return code or self.in_task(BACKUP_SERVICE, "barman", "show-backup", "main", "latest", healthy=False)

    def backups(self) -> int:
        code = self.in_task(BACKUP_SERVICE, "barman", "list-backups", "main", healthy=False)
        return code or self.in_task(BACKUP_SERVICE, "barman", "status", "main", healthy=False)

    # -- down -------------------------------------------------------------------------------

    def down(self) -> int:
        swarm = self.info()
        if swarm.get("LocalNodeState") != "active":
            say("no swarm here: nothing to remove")
            self.remove_gwbridge()
            return 0
        if self.stack_services(self.stack):
            say(f"removing stack {self.stack} (waits for its tasks to stop)")
            self.docker("stack", "rm", "--detach=false", self.stack, capture=False, timeout=300)
        for kind in ("secret", "config"):  # anything the stack left (an interrupted deploy)
            for name in self.docker.lines(kind, "ls", "--filter", f"label={NAMESPACE}={self.stack}",
                                          "--format", "{{.Name}}"):
                self.docker(kind, "rm", name, check=False)
        if self.args.volumes:
            self.remove_volumes()
        self.untag_images()
        self.leave_if_ours(swarm["NodeID"])
        return 0

    def untag_images(self) -> None:
        """Drop the content tags (repo:<12 hex>) this tool made that no service runs any more.

        Only the tags go: the layers stay as long as another tag (items-api:local...) holds them.
        """
        in_use = set()
        for name in self.docker.lines("service", "ls", "--format", "{{.Name}}"):
            in_use.add(self.docker("service", "inspect", "--format",
                                   "{{.Spec.TaskTemplate.ContainerSpec.Image}}", name).stdout.strip())
        for repo in ("items-api", "items-edge", "items-backup"):  # the images of BUILT, as compose.yaml names them
            for tag in self.docker.lines("image", "ls", repo, "--format", "{{.Tag}}"):
                if re.fullmatch(r"[0-9a-f]{12}", tag) and f"{repo}:{tag}" not in in_use:
                    self.docker("image", "rm", f"{repo}:{tag}", check=False)

    def remove_volumes(self) -> None:
        names = self.docker.lines("volume", "ls", "--filter", f"label={NAMESPACE}={self.stack}",
                                  "--format", "{{.Name}}")
        deadline = time.monotonic() + 60
        for name in names:
            while self.docker("volume", "rm", name, check=False).returncode != 0:
                if time.monotonic() > deadline:  # a task's container may take a moment to go
                    say(f"could not remove volume {name}")
                    break
                time.sleep(1)
            else:
                say(f"removed volume {name}")

    def leave_if_ours(self, node: str) -> None:
        labels = self.docker.json("node", "inspect", node)[0]["Spec"].get("Labels") or {}
        if labels.get(INIT_LABEL) != "tools/swarm.py":
            say("the swarm was not created by this tool: staying in it")
            return
        others = self.docker.lines("service", "ls", "--format", "{{.Name}}")
        if others:
            say(f"other services run in the swarm ({', '.join(sorted(others)[:5])}): staying in it")
            return
        self.docker("swarm", "leave", "--force")
        say("left the swarm this tool had created")
        self.remove_gwbridge()

    def remove_gwbridge(self) -> None:
        if not self.network_exists(GWBRIDGE):
            return
        net = self.docker.json("network", "inspect", GWBRIDGE)[0]
        ours = (net.get("Labels") or {}).get(CREATED_BY) == "tools/swarm.py" and not net.get("Containers")
        if ours and self.docker("network", "rm", GWBRIDGE, check=False).returncode == 0:
            say(f"removed {GWBRIDGE}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("up", "update", "down", "render", "key", "keys", "revoke-key",
                                       "backup", "backups"))
    p.add_argument("--stack", default=os.environ.get("SWARM_STACK") or DEFAULT_STACK, help="stack name")
    p.add_argument("--image", help="deploy this API image (default: build it; API_IMAGE works too)")
    p.add_argument("--env-file", help="compose variables from this file instead of .env")
    p.add_argument("--volumes", action="store_true", help="down: remove the stack's volumes too")
    p.add_argument("--timeout", type=float, default=WAIT_SECONDS, help="seconds to wait for convergence")
    p.add_argument("--name", help="key, revoke-key: the API key's name")
    p.add_argument("--scope", choices=("read", "write"), help="key: what the key may do")
    p.add_argument("--expires-in", type=int, metavar="DAYS", help="key: days until it expires")
    args = p.parse_args(argv)
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", args.stack):
        p.error(f"invalid stack name {args.stack!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        swarm = Swarm(args)
        if args.command == "render":
            _, stack_file = swarm.render({API_SERVICE: args.image or ""})
            print(json.dumps(stack_file, indent=2))
            return 0
        command = {"keys": "list_keys", "revoke-key": "revoke_key"}.get(args.command, args.command)
        return getattr(swarm, command)()
    except CannotRun as e:
        say(str(e))
        return 2
    except NotConverged as e:
        say(str(e))
        return 1


if __name__ == "__main__":
    sys.exit(main())
