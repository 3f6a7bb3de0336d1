"""What the checks look at: a Compose service's container, or a Swarm service seen as one.

A `Target` wraps one service's `docker inspect` record and the live calls a
check may make (`top`, `exec`, where a container port is published, an HTTP
GET on its address: the API's through the stack's entry point). A
`SwarmTarget` is the adapter that lets the same checks read a Swarm service:
its spec is reshaped into a container record (`spec_attrs`), and the live
calls go to the containers of its tasks on this node. Both also answer the
few questions the wait loop and the chaos drills ask (is it ready, what is its
identity, stop it, bring it back), each in its orchestrator's own terms.

Unit tests build targets from captured records (with a captured `top` under
the key `_top`) and no engine.
"""

from __future__ import annotations

from collections.abc import Callable

from .model import API, EDGE, EDGE_HTTP, NO_HEALTHCHECK, CannotRun, NotHere
from .values import SECRETS_DIR, published_port, restart_policy
from .web import Answer, fetch

TOP_ARGS = "-o uid,pid,args"  # `docker top` runs ps on the host, so distroless images need no ps
HOST_BINDING = "com.docker.network.bridge.host_binding_ipv4"


class Target:
    """One Compose service's container: its inspect record and the live calls the checks need."""

    def __init__(self, service: str, attrs: dict, container=None, stack: dict | None = None):
        self.service = service
        self.attrs = attrs
        self.stack = stack if stack is not None else {}  # service -> Target, for cross-service checks
        self.local = [attrs]  # the inspect records of its containers on this node
        self.containers = [container] if container is not None else []  # and their SDK objects

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

    # --- live calls ------------------------------------------------------------------------------

    def need_local(self) -> None:
        if not self.local:
            raise NotHere("no running task of this service on this node to probe")

    def top(self) -> dict:
        """The processes of its containers here, from `docker top` (host uids)."""
        self.need_local()
        merged: dict = {"Titles": None, "Processes": []}
        for i, attrs in enumerate(self.local):
            top = attrs["_top"] if "_top" in attrs else self.containers[i].top(ps_args=TOP_ARGS)
            merged["Titles"] = merged["Titles"] or top.get("Titles")
            merged["Processes"] += top.get("Processes") or []
        return merged

    def exec(self, cmd: list[str], user: str = "") -> tuple[int, str]:
        """Run a command in a container of the service, as its configured user unless `user` is given."""
        self.need_local()
        if not self.containers:
            raise CannotRun("no live container to exec in")
        result = self.containers[0].exec_run(cmd, user=user, demux=False)
        return result.exit_code, (result.output or b"").decode("utf-8", "replace").strip()

    def published(self, port: int | None = None) -> tuple[str, int] | None:
        """Where this host reaches the service's container `port` (default: its first published TCP port)."""
        return published_port(self.attrs, port)

    def address(self) -> tuple[str, int] | None:
        """Where this host reaches the service: the API through the stack's entry point (the edge)
        when the stack has one, anything else at its first published TCP port."""
        entry = self.stack.get(EDGE)
        if self.service == API and entry is not None and (found := entry.published(EDGE_HTTP)):
            return found
        return self.published()

    def request(self, path: str) -> Answer:
        """GET a path on the service (see address), from this host, without credentials: the answer whole."""
        address = self.address()
        if address is None:
            raise ConnectionError("no published port")
        host, port = address
        return fetch(f"http://{host}:{port}{path}")

    def http_get(self, path: str) -> tuple[int, str]:
        """GET a path on the service (see request); (status, body)."""
        answer = self.request(path)
        return answer.status, answer.body

    # --- state, for the wait loop and the chaos drills ----------------------------------------------

    def health(self) -> str:
        """Its state in one word: healthy, starting, unhealthy, exited ..."""
        state = self.attrs.get("State") or {}
        if not state.get("Running"):
            return state.get("Status", "stopped")
        return (state.get("Health") or {}).get("Status", "no-healthcheck")

    def ready(self) -> bool:
        if self.service in NO_HEALTHCHECK:
            return self.running
        return self.health() == "healthy"

    def summary(self) -> str:
        return f"{self.health()}, restarts {self.attrs.get('RestartCount', 0)}"

    def refresh(self) -> Target:
        """The same service as the engine sees it now (this object, its record reloaded)."""
        container = self.containers[0]
        container.reload()
        self.attrs = container.attrs
        self.local = [self.attrs]
        return self

    def identity(self) -> object:
        """Changes when the service's process is replaced: a restart here."""
        return (self.attrs["State"].get("StartedAt"), self.attrs.get("RestartCount", 0))

    def here(self) -> bool:
        """A container of the service runs on this node, for the drills to act on."""
        return self.running and bool(self.containers)

    def label(self) -> str:
        return self.local[0]["Name"].lstrip("/")

    def main_pid(self) -> int:
        return int((self.local[0].get("State") or {}).get("Pid") or 0) if self.local else 0

    def crash_refusal(self) -> str | None:
        """Why crashing it would leave it down for good (then the drill does not), or None."""
        name, retries = restart_policy(self.host_config)
        count = self.attrs.get("RestartCount", 0)
        if name == "no":
            return "restart policy 'no': a crash would leave it down (not killed)"
        if name == "on-failure" and retries and count >= retries:
            return f"restart budget used up ({count}/{retries}): a crash would leave it down (not killed)"
        return None

    def stop(self) -> None:
        self.containers[0].stop()

    def start(self) -> None:
        self.containers[0].start()


# ---------------------------------------------------------------------------------------------
# Swarm: a service, its tasks, and the containers of its tasks on this node.
# ---------------------------------------------------------------------------------------------


def task_state(task: dict) -> str:
    return (task.get("Status") or {}).get("State", "")


def running_tasks(tasks: list[dict]) -> list[dict]:
    return [t for t in tasks if t.get("DesiredState") == "running" and task_state(t) == "running"]


def spec_mounts(spec: dict) -> list[dict]:
    """The spec's mounts and secrets as a container record lists its Mounts."""
    mounts = [{"Type": m.get("Type"), "Name": m.get("Source") if m.get("Type") == "volume" else "",
               "Source": m.get("Source") or "", "Destination": m.get("Target"), "RW": not m.get("ReadOnly")}
              for m in spec.get("Mounts") or []]
    for ref in spec.get("Secrets") or []:
        name = (ref.get("File") or {}).get("Name") or ref.get("SecretName")
        mounts.append({"Type": "secret", "Name": ref.get("SecretName"), "Source": "",
                       "Destination": name if name.startswith("/") else SECRETS_DIR + name, "RW": False})
    return mounts


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
    host0 = ((local or [{}])[0].get("HostConfig") or {})
    log = task.get("LogDriver")
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
        "Mounts": spec_mounts(spec),
    }


class SwarmTarget(Target):
    """One Swarm service: its spec, its tasks, and the containers of its tasks on this node.

    `attrs` is the spec in a container record's shape (see spec_attrs), so the
    checks written for containers run unchanged; what only Swarm has is in
    `record` (docker service inspect), `tasks` and `facts` (node id, nodes,
    docker_gwbridge, the engine's security options). `local` holds the inspect
    records of this node's running task containers, `containers` their SDK
    objects; `reload` loads the whole stack again (the chaos drills use it).
    """

    def __init__(self, service: str, record: dict, tasks: list[dict], local: list[dict] | None = None,
                 containers: list | None = None, facts: dict | None = None, image: dict | None = None,
                 stack: dict | None = None, reload: Callable[[], dict] | None = None):
        self.record = record
        self.tasks = tasks
        self.facts = facts or {}
        self.reload = reload
        attrs = spec_attrs(record, image, local, self.facts.get("networks"))
        attrs["State"] = {"Running": bool(running_tasks(tasks)), "Status": "running"}
        super().__init__(service, attrs, None, stack)
        self.local = local or []
        self.containers = containers or []

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

    def published(self, port: int | None = None) -> tuple[str, int] | None:
        """Where this host reaches the service's target `port` (default: its first published TCP port)."""
        ports = [p for p in self.endpoint_ports()
                 if p.get("PublishedPort") and p.get("Protocol", "tcp") == "tcp"
                 and (port is None or p.get("TargetPort") == port)]
        if not ports:
            return None
        host = self.binding() if ports[0].get("PublishMode") == "host" else "127.0.0.1"
        return ("127.0.0.1" if host in ("0.0.0.0", "::", "") else host), int(ports[0]["PublishedPort"])

    def health(self) -> str:
        """Running against desired tasks, e.g. `3/3`, with `(not ready)` until all run healthy here."""
        return f"{len(running_tasks(self.tasks))}/{self.desired()}" + ("" if self.ready() else " (not ready)")

    def ready(self) -> bool:
        unhealthy = [c for c in self.local
                     if ((c.get("State") or {}).get("Health") or {}).get("Status") != "healthy"]
        return len(running_tasks(self.tasks)) == self.desired() > 0 and not unhealthy

    def summary(self) -> str:
        return f"{len(running_tasks(self.tasks))}/{self.desired()} tasks running"

    def refresh(self) -> SwarmTarget:
        """The service as the engine sees it now: a new target, from the whole stack loaded again."""
        return self.reload()[self.service] if self.reload else self

    def identity(self) -> object:
        """Changes when a task is replaced: the set of running task ids."""
        return frozenset(t["ID"] for t in running_tasks(self.tasks))

    def crash_refusal(self) -> str | None:
        condition = (self.spec["TaskTemplate"].get("RestartPolicy") or {}).get("Condition") or "any"
        return "restart condition 'none': a crashed task would stay down (not killed)" \
            if condition == "none" else None

    def start(self) -> None:
        """Nothing to do: Swarm starts a new task in place of a stopped one."""
