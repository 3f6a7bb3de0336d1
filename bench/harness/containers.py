"""The candidates that run beside our stack: the peers, the framework ceiling, the edge in front
of the Flask peer, clones of our API (without keys; for --tune, other settings) and ours at the
baseline revision. Each is a `docker run` on the stack's networks with the resource limits of our
running API container, read from it, so that every API competes under the same limits.

Where a peer's defaults do not fit those limits it gets what they need instead (config.PEERS);
the ceiling and the clones (the baseline is one, with its own image) also copy our container's
hardening. The peer's edge is compose's `edge` container run once more (image, environment,
limits, hardening, tmpfs, TLS secret files) with only its upstream changed."""

from __future__ import annotations

from .config import BASELINE, BENCH, CEILING, EDGES, OUR_SETTINGS, Peer
from .records import BaselineBuild
from .shell import free_port, log, wait_http_ok
from .stack import EDGE_PORTS, Candidate, Stack


def limit_options(info: dict) -> list[str]:
    """`docker run` options for the resource limits and log driver of a container we inspected (ours)."""
    host = info["HostConfig"]
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
    return opts


def with_overrides(opts: list[str], overrides: dict[str, str]) -> list[str]:
    """`opts` with each flag of `overrides` set to its value (replaced, or added)."""
    opts = list(opts)
    for flag, value in overrides.items():
        if flag in opts:
            opts[opts.index(flag) + 1] = value
        else:
            opts += [flag, value]
    return opts


def hardening(info: dict) -> list[str]:
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


def as_compose_runs_it(info: dict, env_overrides: dict[str, str]) -> list[str]:
    """`docker run` options that run a container we inspected (one of compose's) once more: its
    hardening, tmpfs, bind mounts (secret files) and environment, with `env_overrides` set."""
    options = hardening(info)
    for path, opts in (info["HostConfig"].get("Tmpfs") or {}).items():
        options += ["--tmpfs", f"{path}:{opts}" if opts else path]
    for m in info["Mounts"]:
        if m["Type"] == "bind":
            options += ["-v", f"{m['Source']}:{m['Destination']}{'' if m['RW'] else ':ro'}"]
    env = dict(e.split("=", 1) for e in info["Config"]["Env"])
    for k, v in {**env, **env_overrides}.items():
        options += ["-e", f"{k}={v}"]
    return options


def _networks(info: dict) -> tuple[str, str]:
    nets = info["NetworkSettings"]["Networks"]
    return next(n for n in nets if n.endswith("_backend")), next(n for n in nets if n.endswith("_edge"))


def create_container(stack: Stack, name: str, ports: list[int], options: list[str], image_and_cmd: list[str],
                     limits: list[str], backend: bool = True) -> dict[int, int]:
    """Create and start `name` on the stack's edge network (and its backend network), each of `ports`
    published on a free port of 127.0.0.1; the published port of each."""
    docker = stack.docker
    backend_net, edge_net = _networks(stack.ours_info())
    published = {port: free_port() for port in ports}
    docker("rm", "-f", name, check=False)
    docker("create", "--name", name, "--label", f"items-bench.project={stack.settings.project}",
           "--network", edge_net, *(a for p, h in published.items() for a in ("-p", f"127.0.0.1:{h}:{p}")),
           *limits, *options, *image_and_cmd)
    if backend:
        docker("network", "connect", backend_net, name)
    docker("start", name)
    return published


def start_container(stack: Stack, key: str, label: str, name: str, port: int, options: list[str],
                    image_and_cmd: list[str], limits: dict[str, str] | None = None) -> Candidate:
    """Run a candidate on the stack's networks under our API's limits and wait until it is ready."""
    docker = stack.docker
    host_port = create_container(stack, name, [port], options, image_and_cmd,
                                 with_overrides(limit_options(stack.ours_info()), limits or {}))[port]
    c = Candidate(key, label, name, port, host_port)
    try:
        wait_http_ok(c.ready_url, 90)
    except RuntimeError:
        logs = docker("logs", "--tail", "60", name, check=False)
        raise RuntimeError(f"{name} did not get ready:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}") from None
    c.refresh(docker)
    stack.candidates[key] = c
    return c


def start_peer(stack: Stack, peer: Peer) -> Candidate:
    """A peer against the stack's PostgreSQL and `items` table, as the `app` role."""
    url = peer.database_url(stack.secrets["app_db_password"])
    name = f"{stack.settings.project}-peer-{peer.key}"
    return start_container(stack, peer.key, peer.label, name, peer.port, ["-e", f"DATABASE_URL={url}"],
                           [peer.image], peer.limits)


def start_ceiling(stack: Stack, source: str = "ours", key: str = CEILING, query: str = "") -> Candidate:
    """A constant Flask route in our image, under the Granian settings and hardening of `source`;
    with `query`, the round-trip floor: the route runs it first (bench/ceiling/ceiling.py)."""
    info = stack.docker.inspect(stack.candidates[source].container)
    env = [e for e in info["Config"]["Env"] if e.split("=", 1)[0] in OUR_SETTINGS or e.startswith("MAX_BODY")]
    options = [*hardening(info),
               "-v", f"{BENCH / 'ceiling'}:/bench:ro", "-e", "PYTHONPATH=/bench:/app",
               # Read by the product's Config, never connected to.
               "-e", "DATABASE_URL=postgresql://ceiling@127.0.0.1:1/none",
               # A constant route counts nothing; and the metrics' directory would need compose's tmpfs.
               "-e", "METRICS=off",
               "--entrypoint", "python"]
    if query:   # as the app role, like the peers (a bench container: the password may show)
        url = f"postgresql://app:{stack.secrets['app_db_password']}@postgres:5432/appdb"
        options += ["-e", f"CEILING_QUERY={query}", "-e", f"CEILING_DATABASE_URL={url}"]
    for e in env:
        options += ["-e", e]
    label = (f"round-trip floor (the constant route plus `{query}`)" if query
             else "framework ceiling (constant Flask route, same Granian settings)")
    c = start_container(stack, key, label,
                        f"{stack.settings.project}-{key}", 5000, options,
                        [info["Image"], "/bench/serve_ceiling.py"])
    log(f"{label} {key} ready")
    return c


def clone_ours(stack: Stack, key: str, overrides: dict[str, str], label: str = "",
               command: tuple[str, ...] = (), with_key: bool = True) -> Candidate:
    """Our API once more, as compose runs it (the very image, environment, secret, limits, hardening,
    networks), with other settings: configurations measured side by side, not one after another.
    `IMAGE` in `overrides` runs another image; `command` replaces its entrypoint and arguments. It
    shares our database, so it takes our API key, unless `API_AUTH=off` there or not `with_key`."""
    info = stack.ours_info()
    overrides = dict(overrides)
    # By id: the tag may name another build by now (it is shared with whoever builds the stack).
    image = overrides.pop("IMAGE", None) or info["Image"]
    label = label or "ours " + " ".join(f"{k}={v}" for k, v in overrides.items())
    # Compose's METRICS_HOST is the API's alias, another container's address for a clone: the
    # clone's metrics, never scraped, stay on its loopback.
    options = as_compose_runs_it(info, {"METRICS_HOST": "127.0.0.1", **overrides})
    if command:
        options += ["--entrypoint", command[0]]
    c = start_container(stack, key, label, f"{stack.settings.project}-{key}", 5000, options,
                        [image, *command[1:]])
    if with_key and overrides.get("API_AUTH") != "off":
        c.api_key = stack.candidates["ours"].api_key
    return c


def start_baseline(stack: Stack, build: BaselineBuild) -> Candidate:
    """Ours at the baseline revision (harness/baseline.py), cloned from compose's flask-api: the same
    limits, settings, hardening, networks and database. Its entrypoint would run its migrations first,
    and they stop at the ones of ours it does not know, so it runs `python -m app serve` alone (the
    schema it needs is ours already). It reads only the settings it knows (app/config.py at that
    revision); the newer ones in the environment (API_AUTH, PROXY_HOPS...) mean nothing to it. No key:
    it had none."""
    c = clone_ours(stack, BASELINE, {"IMAGE": build.image}, f"ours at the baseline revision {build.rev}",
                   ("python", "-m", "app", "serve"), with_key=False)
    log(f"baseline {build.rev} ({build.image}) ready")
    return c


def start_edge(stack: Stack, api: str) -> None:
    """The edge in front of `api` (a peer): compose's edge container once more, on the edge network
    only, as in prod, with EDGE_UPSTREAM pointed at the peer's container; its routes join the
    candidates."""
    info = stack.docker.inspect(stack.candidates[EDGES["ours"]].container)
    peer = stack.candidates[api]
    name = f"{stack.settings.project}-edge-{api}"
    published = create_container(stack, name, list(EDGE_PORTS.values()),
                                 as_compose_runs_it(info, {"EDGE_UPSTREAM": f"{peer.container}:{peer.port}"}),
                                 [info["Config"]["Image"]], limit_options(info), backend=False)
    stack.add_edge(name, api, {tls: published[port] for tls, port in EDGE_PORTS.items()})
    log(f"edge in front of {api} ready")
