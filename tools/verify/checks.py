"""Every check of the verifier: one function each, registered with its id, CIS control and reasons.

A check reads one Target (a Compose container, or a Swarm service through
the same interface) and returns (result, detail). Its docstring's first
paragraph is its reason, shown by --list-checks and in docs/verify.md. Where
Swarm needs another reading, the variant is defined just above the check
and passed to `@check(..., swarm=Variant(fn, title))`; checks only Swarm has
are `swarm_only`. The table's order (registration order) is the report's.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

from .budget import PG_DEFAULTS, connection_budget, postgres_settings, update_surge
from .model import (API, BACKUP, EDGE, FAIL, NO_HEALTHCHECK, PASS, PGADMIN, POSTGRES, SERVICES, WARN,
                    WITH_SECRETS, Outcome, result)
from .registry import Variant, check
from .targets import SwarmTarget, Target, running_tasks, task_state
from .values import (DEFAULT_DB, NS, SECRETS_DIR, capabilities, config_uid, database_target, duration,
                     env_secret_problem, format_restart, is_loopback, no_new_privileges, node_matches,
                     port_bindings, restart_policy)

# The restart policy compose.prod.yaml documents for every service, with its
# reasons (CIS 5.15 suggests on-failure:5, a budget the engine never resets).
RESTART_POLICY = ("unless-stopped", 0)
# compose.swarm.yaml's restart policy: Swarm's counterpart of unless-stopped (no attempt limit).
SWARM_RESTART_POLICY = ("any", 0)
# Update order per service: the API overlaps old and new tasks; PostgreSQL must never run twice
# on one data directory; pgAdmin and the edge hold a host port, which two tasks cannot share.
UPDATE_ORDER = {API: "start-first", POSTGRES: "stop-first", PGADMIN: "stop-first", EDGE: "stop-first"}
# Services whose data is on a node-local volume: pinned to exactly one node.
PINNED = (POSTGRES, PGADMIN)
PG_DATA = "/var/lib/postgresql"


# --- state and health ----------------------------------------------------------------------------


def check_swarm_running(t: SwarmTarget) -> Outcome:
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


@check("RUNNING", "container is running", swarm=Variant(check_swarm_running, "desired tasks running"))
def check_running(t: Target) -> Outcome:
    """Everything else assumes a live container; a restarting one is crash-looping."""
    state = t.attrs.get("State") or {}
    ok = state.get("Running") and not state.get("Restarting")
    detail = f"{state.get('Status', 'unknown')}, restarts {t.attrs.get('RestartCount', 0)}"
    return result(bool(ok), detail, f"{detail} (exit code {state.get('ExitCode')})")


def check_swarm_healthy(t: SwarmTarget) -> Outcome:
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


@check("HEALTHY", "health status is healthy", cis="5.27",
       swarm=Variant(check_swarm_healthy, "tasks are healthy"))
def check_healthy(t: Target) -> Outcome:
    """Running is not serving: only the health check says the service answers."""
    health = (t.attrs.get("State") or {}).get("Health")
    if not health and t.service in NO_HEALTHCHECK:
        return WARN, "no health check possible (an image FROM scratch): see Prometheus' targets"
    if not health:
        return FAIL, "no health status (no health check)"
    status = health.get("Status")
    hint = "" if status == "healthy" else " (try --wait 60)" if status == "starting" else ""
    return result(status == "healthy", status, f"{status}{hint}")


@check("HEALTHCHECK", "a health check is defined", cis="4.6")
def check_healthcheck(t: Target) -> Outcome:
    """Without a health check the engine, Compose's depends_on and people cannot tell serving from up."""
    test = (t.config.get("Healthcheck") or {}).get("Test") or []
    if not test and t.service in NO_HEALTHCHECK:
        return WARN, "none possible (an image FROM scratch): see Prometheus' targets"
    if not test or test[0] == "NONE":
        return FAIL, "none defined" if not test else "disabled (NONE)"
    command = " ".join(test[1:])
    return PASS, command if len(command) <= 60 else command[:59] + "…"


# --- users and privileges ----------------------------------------------------------------------


@check("USER", "configured user is set and not root", cis="4.1", hardening=True)
def check_user(t: Target) -> Outcome:
    """An image or service user that is unset or root makes every escape a root escape."""
    uid = config_uid(t.config.get("User"))
    if uid is None:
        return FAIL, "Config.User unset: the container starts as root"
    return result(uid not in ("0", "root"), f"user {t.config['User']}", f"user {t.config['User']} is root")


@check("PROCS-NONROOT", "running processes have non-zero uids", cis="4.1", hardening=True, live=True)
def check_processes(t: Target) -> Outcome:
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


@check("READ-ONLY", "root filesystem is read-only", cis="5.13", hardening=True)
def check_read_only(t: Target) -> Outcome:
    """A read-only root filesystem stops an intruder from planting files or changing the app."""
    return result(bool(t.host_config.get("ReadonlyRootfs")), "read-only", "root filesystem is writable")


def check_swarm_no_new_privileges(t: SwarmTarget) -> Outcome:
    """A stack cannot ask for no-new-privileges: the spec, the engine's default or the task containers say.

    `docker stack deploy` ignores security_opt and `docker service` has no
    flag for it, so a warning (not a failure) says where it has to come
    from: the engine's daemon.json on every node.
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


@check("NO-NEW-PRIVS", "no-new-privileges is true", cis="5.26", hardening=True,
       swarm=Variant(check_swarm_no_new_privileges))
def check_no_new_privileges(t: Target) -> Outcome:
    """no-new-privileges blocks gaining privileges through setuid binaries or file capabilities."""
    opts = t.host_config.get("SecurityOpt") or []
    value = no_new_privileges(opts)
    shown = ", ".join(o for o in opts if o.lower().startswith("no-new-privileges")) or "not set"
    return result(value is True, shown, shown)


@check("CAPS", "all capabilities dropped, none added", cis="5.4", hardening=True)
def check_capabilities(t: Target) -> Outcome:
    """None of these services needs a Linux capability: drop ALL and add nothing back."""
    dropped_all, added = capabilities(t.host_config)
    if not dropped_all:
        return FAIL, f"cap_drop lacks ALL (default set kept){'; added ' + ', '.join(added) if added else ''}"
    return result(not added, "ALL dropped, none added", f"ALL dropped but added back: {', '.join(added)}")


@check("NOT-PRIVILEGED", "not privileged", cis="5.5")
def check_not_privileged(t: Target) -> Outcome:
    """A privileged container is root on the host: never acceptable, in any profile."""
    return result(not t.host_config.get("Privileged"), "not privileged", "privileged: true")


@check("HOST-NS", "no host network, PID or IPC namespace", cis="5.10, 5.16, 5.17")
def check_host_namespaces(t: Target) -> Outcome:
    """Sharing the host's network, PID or IPC namespace removes the isolation those give."""
    shared = [f"{kind}=host" for kind, key in (("network", "NetworkMode"), ("pid", "PidMode"),
                                                 ("ipc", "IpcMode")) if t.host_config.get(key) == "host"]
    return result(not shared, "own network, PID and IPC namespaces", "shares " + ", ".join(shared))


@check("DOCKER-SOCK", "Docker socket not mounted", cis="5.32")
def check_docker_socket(t: Target) -> Outcome:
    """Whoever can reach the Docker socket controls the engine, hence the host."""
    bad = [m.get("Source", "") for m in t.attrs.get("Mounts") or []
           if m.get("Source", "").endswith("docker.sock") or m.get("Destination", "").endswith("docker.sock")
           or m.get("Source") in ("/run", "/var/run")]
    return result(not bad, "not mounted", "mounts " + ", ".join(bad))


# --- limits and policies -----------------------------------------------------------------------


@check("MEMORY", "memory limit set", cis="5.11", hardening=True)
def check_memory(t: Target) -> Outcome:
    """A memory limit keeps one leaking service from taking the host's memory (and its neighbours)."""
    memory = int(t.host_config.get("Memory") or 0)
    return result(memory > 0, f"{memory / 2**20:g} MiB", "no memory limit")


@check("CPU", "CPU limit set", cis="5.12", hardening=True)
def check_cpu(t: Target) -> Outcome:
    """A CPU limit keeps a busy or runaway service from starving the others (CpuShares alone is relative)."""
    nano = int(t.host_config.get("NanoCpus") or 0)
    quota, period = int(t.host_config.get("CpuQuota") or 0), int(t.host_config.get("CpuPeriod") or 0)
    if nano > 0:
        return PASS, f"{nano / 1e9:g} CPUs"
    if quota > 0:
        return PASS, f"{quota / (period or 100000):g} CPUs (quota)"
    return FAIL, "no CPU limit"


@check("PIDS", "pids limit set", cis="5.29", hardening=True)
def check_pids(t: Target) -> Outcome:
    """A pids limit stops a fork bomb or a thread leak before it exhausts the host's process table."""
    pids = int(t.host_config.get("PidsLimit") or 0)
    return result(pids > 0, f"{pids} pids", "no pids limit")


def check_swarm_restart(t: SwarmTarget) -> Outcome:
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


@check("RESTART", "restart policy as documented", cis="5.15", hardening=True,
       swarm=Variant(check_swarm_restart))
def check_restart(t: Target) -> Outcome:
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


@check("UPDATE-POLICY", "rolling updates gated on health, rolled back on failure", hardening=True,
       swarm_only=True)
def check_update_policy(t: SwarmTarget) -> Outcome:
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


# --- ports and placement -----------------------------------------------------------------------


def shown_bindings(t: Target) -> str:
    return ", ".join(f"{ip}:{hp}->{cp}" for cp, ip, hp in port_bindings(t.attrs))


def swarm_ports(t: SwarmTarget) -> list[tuple[str, str]]:
    """(shown binding, mode) of each published port."""
    out = []
    for p in t.endpoint_ports():
        mode = p.get("PublishMode") or "ingress"
        host = t.binding() if mode == "host" else "*"
        target = f"{p.get('TargetPort')}/{p.get('Protocol', 'tcp')}"
        out.append((f"{host}:{p.get('PublishedPort')}->{target} ({mode})", mode))
    return out


def check_swarm_ports_loopback(t: SwarmTarget) -> Outcome:
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


@check("PORTS-LOOPBACK", "published ports bound to loopback only", cis="5.14", hardening=True,
       swarm=Variant(check_swarm_ports_loopback))
def check_ports_loopback(t: Target) -> Outcome:
    """A port published on all interfaces is reachable from the network; these are for this host only."""
    bindings = port_bindings(t.attrs)
    if not bindings:
        return PASS, "nothing published"
    shown = shown_bindings(t)
    return result(all(is_loopback(ip) for _, ip, _ in bindings), shown, shown)


def unpublished(t: Target) -> Outcome:
    return result(not port_bindings(t.attrs), "not published", f"published on {shown_bindings(t)}")


def swarm_unpublished(t: SwarmTarget) -> Outcome:
    ports = swarm_ports(t)
    return result(not ports, "not published", "published on " + ", ".join(s for s, _ in ports))


def check_swarm_db_unpublished(t: SwarmTarget) -> Outcome:
    """The API and pgAdmin reach PostgreSQL on the backend overlay network; publishing only adds exposure."""
    return swarm_unpublished(t)


@check("DB-UNPUBLISHED", "PostgreSQL port not published", cis="5.9", services=(POSTGRES,), hardening=True,
       swarm=Variant(check_swarm_db_unpublished))
def check_db_unpublished(t: Target) -> Outcome:
    """The API and pgAdmin reach PostgreSQL on the Compose network; a published port only adds exposure."""
    return unpublished(t)


def check_swarm_api_unpublished(t: SwarmTarget) -> Outcome:
    """Clients reach the API's tasks through the stack's entry point, on the overlay network; a port of
    their own would bypass it."""
    return swarm_unpublished(t)


@check("API-UNPUBLISHED", "the API's port not published (clients come through the edge)", cis="5.9",
       services=(API,), hardening=True, swarm=Variant(check_swarm_api_unpublished))
def check_api_unpublished(t: Target) -> Outcome:
    """In production clients reach the API only through the edge: a port of its own would bypass the edge's
    TLS, timeouts and limits.

    The development stack (compose.yaml alone) has no edge and publishes the
    API's port on loopback: a warning under --profile dev.
    """
    return unpublished(t)


# The API's Prometheus metrics (app/metrics.py): METRICS=on|off and METRICS_PORT, as app/config.py reads them.
METRICS_PORT = "9100"
# What a scrape of the metrics port always holds (app_build_info: the build, value 1).
METRICS_MARK = "app_build_info"
# Run in the API's container (its venv's Python, standard library only): GET a URL, print the body.
SCRAPE = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"


def metrics_port(t: Target) -> str | None:
    """The API's metrics port, or None when METRICS=off."""
    env = t.env()
    if (env.get("METRICS") or "on").strip().lower() == "off":
        return None
    return (env.get("METRICS_PORT") or "").strip() or METRICS_PORT


def network_addresses(t: Target) -> dict[str, str]:
    """The container's address on each of its networks, by network name."""
    networks = (t.attrs.get("NetworkSettings") or {}).get("Networks") or {}
    return {name: n["IPAddress"] for name, n in networks.items() if n.get("IPAddress")}


def scrape_from_inside(t: Target, address: str, port: str) -> tuple[bool, str]:
    """Whether a scrape of `address`:`port`, from inside the API's container, returns the metrics."""
    code, output = t.exec(["/opt/venv/bin/python", "-c", SCRAPE, f"http://{address}:{port}/metrics"])
    return code == 0 and METRICS_MARK in output, output


def check_swarm_metrics_unpublished(t: SwarmTarget) -> Outcome:
    """The API's tasks serve their metrics on the backend overlay network; no published port may target it."""
    port = metrics_port(t)
    if port is None:
        return PASS, "METRICS=off"
    bad = [p for p in t.endpoint_ports() if str(p.get("TargetPort")) == port]
    return result(not bad, f"port {port} not published", f"port {port} published as "
                  + ", ".join(str(p.get("PublishedPort")) for p in bad))


@check("METRICS-UNPUBLISHED", "the metrics port is not published nor proxied by the edge, and answers on the "
       "backend network only", cis="5.9", services=(API,), live=True, swarm=Variant(check_swarm_metrics_unpublished))
def check_metrics_unpublished(t: Target) -> Outcome:
    """Request counts, routes and pool figures are for Prometheus on the backend network: published or
    proxied, they would tell anyone how the service is used and when it struggles.

    The port must not be published, must answer a scrape on the container's
    backend address, must not answer on its other addresses (the `edge`
    network's, where the edge and pgAdmin are and the host reaches in), and
    GET /metrics through the stack's entry point (the edge) must not return
    the metrics. The scrapes run inside the API's container: a socket bound to
    the backend address refuses a connection to any other address, whoever
    connects, so what it meets there is what a neighbour on that network meets.
    """
    port = metrics_port(t)
    if port is None:
        return PASS, "METRICS=off: no metrics port"
    published = [f"{ip}:{hp}" for cp, ip, hp in port_bindings(t.attrs) if cp.split("/")[0] == port]
    if published:
        return FAIL, f"metrics port {port} published on {', '.join(published)}"
    addresses = network_addresses(t)
    backend = next((ip for name, ip in addresses.items() if name.endswith("_backend")), None)
    if backend is None:
        return FAIL, "not on a backend network"
    answered, output = scrape_from_inside(t, backend, port)
    if not answered:
        return FAIL, f"no metrics at {backend}:{port} on the backend network: {output[-120:]}"
    leaks = [f"{ip}:{port} ({name})" for name, ip in addresses.items()
             if ip != backend and scrape_from_inside(t, ip, port)[0]]
    if leaks:
        return FAIL, f"the metrics answer off the backend network too, on {', '.join(leaks)} (METRICS_HOST)"
    status, body = get(t, "/metrics")
    if METRICS_MARK in body:
        return FAIL, f"GET /metrics through the entry point answers the metrics ({status})"
    others = len(addresses) - 1
    return PASS, (f"port {port} not published; answers on the backend ({backend}) only, not on the other "
                  f"{others} address{'es' if others != 1 else ''}; /metrics outside: {status}")


@check("PLACEMENT", "a service with a local volume is pinned to one node", services=PINNED, swarm_only=True)
def check_placement(t: SwarmTarget) -> Outcome:
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


# --- secrets -------------------------------------------------------------------------------------


def secret_mounts(attrs: dict) -> list[dict]:
    return [m for m in attrs.get("Mounts") or [] if m.get("Destination", "").startswith(SECRETS_DIR)]


@check("SECRETS-MOUNTED", "secrets mounted read-only under /run/secrets", services=WITH_SECRETS)
def check_secrets_mounted(t: Target) -> Outcome:
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


@check("SECRETS-OWNER", "secret files owned by the service's user, not readable by others", hardening=True,
       swarm_only=True)
def check_secret_owner(t: SwarmTarget) -> Outcome:
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


READ_TEST = "import sys; open(sys.argv[1], 'rb').close()"
# Ways to test that the container's user can read a file, tried in order: the
# postgres and pgAdmin images have sh; the API image has sh and its venv python.
READERS = (
    ["sh", "-c", 'test -r "$1"', "sh"],
    ["/opt/venv/bin/python", "-c", READ_TEST],
    ["/venv/bin/python3", "-c", READ_TEST],
    ["python3", "-c", READ_TEST],
)


@check("SECRETS-READABLE", "secrets readable by the service's user", services=WITH_SECRETS, live=True)
def check_secrets_readable(t: Target) -> Outcome:
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
    return result(not unreadable, f"{len(paths)} readable by {who}",
                  f"not readable by {who}: {', '.join(unreadable)}")


@check("ENV-NO-SECRETS", "no secret values in the environment")
def check_env_secrets(t: Target) -> Outcome:
    """Environment variables leak (inspect, /proc, crash dumps, WSGI environ): secrets go in files."""
    problems = [p for name, value in sorted(t.env().items()) if (p := env_secret_problem(name, value))]
    return result(not problems, "no secret values in the environment", "; ".join(problems))


# --- data, logs and the database ---------------------------------------------------------------


@check("DB-VOLUME", "PostgreSQL data on a named volume", services=(POSTGRES,))
def check_db_volume(t: Target) -> Outcome:
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


@check("LOG-ROTATION", "log rotation configured", hardening=True)
def check_log_rotation(t: Target) -> Outcome:
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


def psql(db: Target, database: str, *args: str) -> tuple[int, str]:
    """Run psql in the PostgreSQL container as its admin role."""
    return db.exec(["psql", "-U", db.env().get("POSTGRES_USER") or "postgres", "-d", database, *args])


@check("CONN-BUDGET", "API connections fit PostgreSQL's max_connections", services=(API,), live=True,
       swarm_only=True)
def check_connection_budget(t: SwarmTarget) -> Outcome:
    """replicas x workers x DB_POOL_MAX (plus the tasks an update adds) must fit PostgreSQL's max_connections.

    Read live from PostgreSQL (SHOW), so a server started with other settings
    is judged by what it really allows.
    """
    db = t.stack.get(POSTGRES)
    if db is None:
        return FAIL, "no PostgreSQL service"
    names = "', '".join(PG_DEFAULTS)
    code, output = psql(db, db.env().get("POSTGRES_DB") or DEFAULT_DB, "-AtF=", "-c",
                        f"select name, setting from pg_settings where name in ('{names}')")
    if code != 0:
        return FAIL, f"psql failed ({code}): {output[:80]}"
    live = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    replicas = t.desired()
    surges = [update_surge(replicas, c.get("Order") or "stop-first", int(c.get("Parallelism") or 0))
              for c in (t.spec.get("UpdateConfig") or {}, t.spec.get("RollbackConfig") or {})]
    ok, detail = connection_budget(t.env(), replicas, max(surges), postgres_settings(None, live))
    return result(ok, detail, detail)


# --- live probes ---------------------------------------------------------------------------------


def get(t: Target, path: str) -> tuple[int | None, str]:
    """(status, body) of a GET of `path` on the service; (None, why) when it cannot be reached."""
    try:
        return t.http_get(path)
    except (OSError, ValueError) as e:
        return None, f"{path} unreachable: {e}"


@check("API-HEALTH", "/health answers 200 with database ok", services=(API,), live=True)
def check_api_health(t: Target) -> Outcome:
    """/health runs a query through the pool: 200 with database ok proves the API reaches PostgreSQL."""
    status, body = get(t, "/health")
    if status is None:
        return FAIL, body
    try:
        database = (json.loads(body).get("checks") or {}).get("database")
    except (ValueError, AttributeError):
        database = None
    return result(status == 200 and database == "ok", f"/health {status}, database {database}",
                  f"/health {status}, database {database}")


@check("PGADMIN-PING", "/misc/ping answers 200", services=(PGADMIN,), live=True)
def check_pgadmin_ping(t: Target) -> Outcome:
    """/misc/ping answers without a login: pgAdmin's web server is up behind its published port."""
    status, body = get(t, "/misc/ping")
    if status is None:
        return FAIL, body
    return result(status == 200, f"/misc/ping {status} {body.strip()[:20]}", f"/misc/ping {status}")


@check("DB-ROLE", "the API's database role is not a superuser", services=(POSTGRES,), live=True)
def check_db_role(t: Target) -> Outcome:
    """The API's role must not be a superuser: a SQL injection would otherwise own the cluster
    (and COPY TO PROGRAM the container).
    """
    api = t.stack.get(API)
    role, db = database_target(api.env() if api else {})
    sql = f"select rolsuper from pg_roles where rolname = '{role.replace(chr(39), '')}'"
    code, output = psql(t, db, "-Atc", sql)
    if code != 0:
        return FAIL, f"psql failed ({code}): {output[:80]}"
    if output not in ("t", "f"):
        return FAIL, f"role {role} not found in {db}"
    return result(output == "f", f"role {role} is not a superuser", f"role {role} IS a superuser")


# --- backups (the `backup` service, Barman; docs/backups.md) -------------------------------------

BARMAN_HOME = "/var/lib/barman"
# What pg_receivewal calls itself on its replication connection (Barman's streaming_archiver_name).
RECEIVER = "barman_receive_wal"
# pg_receivewal stops when PostgreSQL restarts, and the backup service starts it again (`barman cron`,
# within BACKUP_CRON_SECONDS, 10): a stack just (re)started gets this long to stream.
STREAM_GRACE_SECONDS = 30


def _within_grace(probe: Callable[[], tuple[int, str]], streaming: Callable[[int, str], bool]) -> tuple[int, str]:
    """`probe`'s answer once `streaming` holds for it, or its last answer after the grace."""
    deadline = time.monotonic() + STREAM_GRACE_SECONDS
    answer = probe()
    while not streaming(*answer) and time.monotonic() < deadline:
        time.sleep(2)
        answer = probe()
    return answer


@check("BACKUP-STREAMING", "the backup service receives the WAL stream", services=(POSTGRES,), live=True,
       swarm=None)
def check_backup_streaming(t: Target) -> Outcome:
    """What a lost data volume takes with it is the WAL not yet sent to the backup service:
    its replication connection must be there, and its lag (bytes unsent, seconds) small.

    Bytes: WAL written but not yet sent. Seconds: the receiver's reported write lag.
    (pg_receivewal, when asynchronous, reports its flush position only per segment and every
    10 s, so flush_lsn trails by up to a segment even when every byte has arrived.)
    """
    sql = ("select pg_wal_lsn_diff(pg_current_wal_lsn(), sent_lsn)::bigint || ' ' || "
           "coalesce(extract(epoch from write_lag), 0)::numeric(10,3) || ' ' || sync_state "
           f"from pg_stat_replication where application_name = '{RECEIVER}'")
    code, output = _within_grace(lambda: psql(t, "postgres", "-Atc", sql), lambda c, out: c != 0 or bool(out))
    if code != 0:
        return FAIL, f"psql failed ({code}): {output[:80]}"
    if not output:
        return FAIL, f"no replication connection from {RECEIVER}: the WAL is not being streamed"
    lag_bytes, lag_seconds, sync = output.splitlines()[0].split()
    detail = f"lag {lag_bytes} bytes unsent, {lag_seconds} s ({sync})"
    if int(lag_bytes) > 16 * 1024 * 1024 or float(lag_seconds) > 60:
        return WARN, f"{detail}: the backup service is falling behind"
    return PASS, detail


@check("BACKUP-SYNC", "with BACKUP_SYNC=on, the backup service is attached as the synchronous standby",
       services=(POSTGRES,), live=True, swarm=None)
def check_backup_sync(t: Target) -> Outcome:
    """With BACKUP_SYNC=on a write is acknowledged only once the backup service has its WAL: its
    receiver must be attached with sync_state `sync`, or every write is refused (503).

    (A receiver attached as `async` was started before synchronous_standby_names named it:
    Barman then runs pg_receivewal without --synchronous and it never confirms a commit.)
    """
    code, names = psql(t, "postgres", "-Atc", "show synchronous_standby_names")
    if code != 0:
        return FAIL, f"psql failed ({code}): {names[:80]}"
    if RECEIVER not in names:
        return PASS, "BACKUP_SYNC=off: WAL streamed asynchronously" + (f" (standbys: {names})" if names else "")
    sql = f"select sync_state from pg_stat_replication where application_name = '{RECEIVER}'"
    code, state = _within_grace(lambda: psql(t, "postgres", "-Atc", sql),
                                lambda c, out: c != 0 or out.strip() == "sync")
    if code != 0:
        return FAIL, f"psql failed ({code}): {state[:80]}"
    if not state:
        return FAIL, (f"BACKUP_SYNC=on but {RECEIVER} is not connected: writes are refused (503) "
                      "until the backup service streams again")
    return result(state.strip() == "sync", f"{RECEIVER} attached as the synchronous standby",
                  f"BACKUP_SYNC=on but {RECEIVER} is attached as {state.strip()!r}, not 'sync': it started "
                  "before PostgreSQL named it; restart it (barman receive-wal --stop main; cron starts it)")


@check("BACKUP-CHECK", "barman check passes (last base backup younger than its limit)", services=(BACKUP,),
       live=True, swarm=None)
def check_backup_barman(t: Target) -> Outcome:
    """`barman check main`: the newest base backup is younger than last_backup_maximum_age (two
    daily schedules), the minimum number of backups exists, pg_receivewal and its slot run.
    """
    code, output = _within_grace(lambda: t.exec(["barman", "check", "main"]),
                                 lambda c, out: "receive-wal running: FAILED" not in out)
    failed = [line.strip() for line in output.splitlines() if "FAILED" in line]
    age = next((line.split("(", 1)[-1].rstrip(")") for line in output.splitlines()
                if "backup maximum age" in line), "")
    return result(code == 0 and not failed, f"every check OK; {age}".rstrip("; "),
                  "; ".join(failed)[:200] or f"barman check exited {code}: {output[:120]}")


@check("BACKUP-VOLUME", "backups on their own named volume, not the data volume", services=(BACKUP,),
       swarm=None)
def check_backup_volume(t: Target) -> Outcome:
    """A backup on the data volume dies with it: Barman's home must be another named volume."""
    mounts = {m.get("Destination"): m for m in t.attrs.get("Mounts") or []}
    repo = mounts.get(BARMAN_HOME) or {}
    if repo.get("Type") != "volume" or re.fullmatch(r"[0-9a-f]{64}", repo.get("Name") or ""):
        return FAIL, f"{BARMAN_HOME} is not on a named volume"
    if PG_DATA in mounts:
        return FAIL, f"the data directory {PG_DATA} is mounted in the backup service"
    db = t.stack.get(POSTGRES)
    data = next((m.get("Name") for m in (db.attrs.get("Mounts") or []) if m.get("Destination") == PG_DATA),
                None) if db else None
    return result(repo.get("Name") != data, f"volume {repo.get('Name')} (data: {data})",
                  f"the backups and the data share volume {data}")
