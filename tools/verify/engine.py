"""Find the stack on the Docker engine: a Compose project's containers, or a Swarm stack's services.

This is the only module that talks to the engine to load targets (through
the Docker SDK, imported only when needed so that tools/swarm.py and the
unit tests run without it); the checks only read what it loaded.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .model import CannotRun
from .targets import SwarmTarget, Target, running_tasks

ROOT = Path(__file__).resolve().parents[2]
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
CONFIG_FILES_LABEL = "com.docker.compose.project.config_files"
ONEOFF_LABEL = "com.docker.compose.oneoff"
NUMBER_LABEL = "com.docker.compose.container-number"  # set on the containers Compose makes, never on images
PROD_FILE = "compose.prod.yaml"
STACK_LABEL = "com.docker.stack.namespace"
DEFAULT_STACK = "items-swarm"
GWBRIDGE = "docker_gwbridge"


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


# --- Compose -------------------------------------------------------------------------------------


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


def load_targets(client, project: str) -> dict[str, Target]:
    """The project's service containers (not `compose run` one-offs), keyed by service.

    An image Compose built carries the project's and service's labels into
    every container made from it, `docker run` ones included: only a
    container with Compose's own container number is the project's.
    """
    containers = client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={project}"})
    targets: dict[str, Target] = {}
    for c in containers:
        labels = c.labels or {}
        if labels.get(ONEOFF_LABEL, "False") == "True" or NUMBER_LABEL not in labels:
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


# --- Swarm ---------------------------------------------------------------------------------------


def default_stack() -> str:
    return os.environ.get("SWARM_STACK") or DEFAULT_STACK


def swarm_facts(client) -> dict:
    """What the Swarm checks need to know about this node and the swarm; CannotRun off a manager."""
    info = client.info()
    swarm = info.get("Swarm") or {}
    if swarm.get("LocalNodeState") != "active":
        raise CannotRun("this engine is not part of a swarm (deploy with `make swarm-up`)")
    if not swarm.get("ControlAvailable"):
        raise CannotRun("this node is not a swarm manager: run the verifier on a manager")
    try:
        gwbridge = client.api.inspect_network(GWBRIDGE)
    except Exception:
        gwbridge = {}
    return {"node_id": swarm["NodeID"], "nodes": client.api.nodes(), "gwbridge": gwbridge,
            "networks": {n["Id"]: n for n in client.api.networks()},
            "security_options": info.get("SecurityOptions") or []}


def local_containers(client, tasks: list[dict], node_id: str) -> tuple[list[dict], list]:
    """The inspect records and SDK objects of the running tasks' containers on this node."""
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
    return local, containers


def load_swarm(client, stack: str) -> dict[str, SwarmTarget]:
    """The stack's services, their tasks, and the containers of the tasks running on this node."""
    facts = swarm_facts(client)
    services = client.api.services(filters={"label": f"{STACK_LABEL}={stack}"}, status=True)
    if not services:
        raise CannotRun(f"no services for Swarm stack '{stack}' (is it deployed? pass --stack NAME "
                        f"or set SWARM_STACK)")
    targets: dict[str, SwarmTarget] = {}
    for record in services:
        name = record["Spec"]["Name"].removeprefix(f"{stack}_")
        tasks = client.api.tasks(filters={"service": record["ID"]})
        local, containers = local_containers(client, tasks, facts["node_id"])
        image_ref = (record["Spec"]["TaskTemplate"].get("ContainerSpec") or {}).get("Image", "")
        try:
            image = client.api.inspect_image(image_ref)
        except Exception:
            image = None
        targets[name] = SwarmTarget(name, record, tasks, local, containers, facts, image, targets,
                                    reload=lambda: load_swarm(client, stack))
    return targets
