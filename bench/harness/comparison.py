"""The `make bench` run: our stack (with its edge), ours once more with a setting changed (no API
keys, no metrics), ours at the baseline revision, the peers, the edge in front of the Flask peer and
the ceilings started side by side, then throughput (wrk, the candidates alternating within each
repetition, the order rotating between them), latency at a fixed rate (70% of the slowest peer's
throughput), PostgreSQL connections throughout, the footprint (cold starts restart the containers),
and last ours's writes in each backup mode (backups.py: the stack is switched between them)."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import time
from pathlib import Path

from . import backups, footprint
from .baseline import baseline_image
from .config import (
    APIS,
    BASELINE,
    CEILINGS,
    CLONES,
    EDGE_LIMIT_SETTINGS,
    EDGE_ROUTES,
    EDGES,
    LATENCY_EDGE_ROUTES,
    LATENCY_SCENARIOS,
    PEERS,
    ROUNDTRIP,
    ROUNDTRIP_QUERY,
    SCENARIOS,
    Settings,
)
from .containers import clone_ours, limit_options, start_baseline, start_ceiling, start_edge, start_peer
from .contract import contract_check
from .load import Load, log_latency_run, log_run
from .pgmonitor import PgMonitor
from .records import Limits, Machine, Results
from .shell import Docker, log, run
from .stack import Stack
from .stats import median, rotate

# One step of a repetition: (scenario, connections, the candidates that take turns).
Step = tuple[str, int, list[str]]


def describe_machine(docker: Docker) -> Machine:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return Machine(
        cpus=os.cpu_count(), cpu_model=cpu, kernel=platform.release(),
        docker=docker("version", "--format", "{{.Server.Version}}", check=False).stdout.strip(),
        wrk=run(["wrk", "-v"], check=False).stdout.splitlines()[0] if shutil.which("wrk") else "",
        loadavg_at_start=[round(x, 2) for x in os.getloadavg()],
    )


def start_candidates(stack: Stack, results: Results) -> None:
    """Our stack, seeded, then ours once more with a setting changed (CLONES), ours at the baseline
    revision, the peers, the edge in front of the Flask peer and the framework ceiling beside it."""
    stack.start()
    stack.seed()
    for clone in CLONES.values():
        clone_ours(stack, clone.key, clone.settings)
    start_baseline(stack, results.baseline)
    for key, peer in PEERS.items():
        start_peer(stack, peer)
        results.peer_limit_overrides[key] = peer.limits
    log("peers ready")
    for api in EDGES:
        if api != "ours":   # ours: compose's own edge
            start_edge(stack, api)
    start_ceiling(stack)
    start_ceiling(stack, key=ROUNDTRIP, query=ROUNDTRIP_QUERY)


def describe_run(stack: Stack, load: Load, results: Results) -> None:
    """What the report says about the run besides the numbers: config, limits, machine, load path."""
    results.contract_check = contract_check(stack)
    results.ours_config = stack.our_config()
    results.pool_budget = stack.pool_budget()
    results.limits = Limits(limit_options(stack.ours_info()))
    edge = stack.docker.inspect(stack.candidates[EDGES["ours"]].container)
    results.edge_limits = Limits(limit_options(edge))
    env = dict(e.split("=", 1) for e in edge["Config"]["Env"])
    results.edge_limit_settings = {k: env.get(k, "") for k in EDGE_LIMIT_SETTINGS}
    results.machine = describe_machine(stack.docker)
    results.load_path = load.path


def warm_up(stack: Stack, load: Load) -> None:
    s = stack.settings
    log("warm-up")
    for key in (*APIS, BASELINE):
        for scenario in SCENARIOS:
            load.wrk(stack.candidates[key], scenario, s.connections, s.warmup)
    for key in (*CLONES, *CEILINGS, *EDGE_ROUTES):
        load.wrk(stack.candidates[key], "get", s.connections, s.warmup)


def throughput_plan(s: Settings) -> list[Step]:
    """Every scenario for the APIs and ours at the baseline revision (`get` also for ours once more
    with a setting changed (CLONES), through the edge and for both ceilings), /health/live for ours and
    the baseline, `get` at high concurrency for the APIs' scaling, and the clones' `get` once more."""
    apis = [*APIS, BASELINE]
    get = [*apis, *CLONES, *EDGE_ROUTES, *CEILINGS, "pgbench"]
    plan = [(scn, s.connections, get if scn == "get" else apis) for scn in SCENARIOS]
    plan.append(("live", s.connections, ["ours", BASELINE]))
    plan.append(("get", s.high_connections, list(APIS)))
    # The clones once more: their targets are a few percent apart (a key, metrics), within one
    # run's noise; twice the samples make their medians steadier.
    plan.append(("get", s.connections, list(CLONES)))
    return plan


def alternate(stack: Stack, load: Load, results: Results, plan: list[Step], label: str,
              monitor: PgMonitor | None = None) -> None:
    """Every step of `plan` in each repetition, its candidates taking turns (who goes first rotates)."""
    s = stack.settings
    for rep in range(1, s.reps + 1):
        log(f"{label}, repetition {rep}/{s.reps}")
        for scenario, conns, keys in plan:
            for key in rotate(keys, rep - 1):  # nobody always goes first
                if monitor:
                    monitor.current = (key, conns)
                if key == "pgbench":
                    r = load.pgbench(conns, s.duration, rep)
                else:
                    r = load.wrk(stack.candidates[key], scenario, conns, s.duration, rep)
                results.runs.append(r)
                log_run(r)
    if monitor:
        monitor.current = None


def throughput(stack: Stack, load: Load, results: Results, monitor: PgMonitor) -> None:
    if stack.settings.warmup:
        warm_up(stack, load)
    alternate(stack, load, results, throughput_plan(stack.settings), "throughput", monitor)


def latency_rates(results: Results) -> dict[str, float]:
    """Requests per second for the fixed-rate runs: a fraction of the slowest peer's median throughput."""
    s = results.settings
    rates = {}
    for scenario in LATENCY_SCENARIOS:
        slowest = min(median(r.rps for r in results.runs_of(k, scenario, s.connections)) for k in PEERS)
        rates[scenario] = max(10.0, round(s.latency_fraction * slowest))
    return rates


def latency(stack: Stack, load: Load, results: Results) -> None:
    s = stack.settings
    rates = results.latency_rates = latency_rates(results)
    for rep in range(1, s.latency_reps + 1):
        log(f"fixed-rate latency, repetition {rep}/{s.latency_reps} (rates {rates})")
        for scenario in LATENCY_SCENARIOS:
            for key in rotate([*APIS, *LATENCY_EDGE_ROUTES], rep - 1):
                r = load.loadgen(stack.candidates[key], scenario, rates[scenario], rep)
                results.latency_runs.append(r)
                log_latency_run(r)


def compare(settings: Settings) -> Results:
    """The whole comparison; the stack and every container it started are gone afterwards."""
    started = time.monotonic()
    docker = Docker()
    stack = Stack(settings, docker)
    load = Load(stack)
    results = Results(settings=settings)
    with stack.session():
        if settings.build:
            results.builds = stack.build_images()
        results.baseline = baseline_image(stack)    # built whatever --no-build says, unless cached
        start_candidates(stack, results)
        results.footprint.memory_idle_mib = footprint.memory(stack, "idle, before any load")
        describe_run(stack, load, results)
        with PgMonitor(docker, stack.pg_container) as monitor:
            throughput(stack, load, results, monitor)
            latency(stack, load, results)
        results.pg_connections = monitor.summary(stack.candidates, (settings.connections,
                                                                    settings.high_connections))
        footprint.measure(stack, settings.cold_start_reps, results.footprint, results.runs)
        backups.measure(stack, load, results)
    results.elapsed_s = time.monotonic() - started
    return results
