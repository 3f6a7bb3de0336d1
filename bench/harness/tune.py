"""`bench/run.py --tune`: several configurations of our API measured side by side (clones of the
compose `flask-api` container, each with its own framework ceiling), the Flask peer alongside for
reference, taking turns like the comparison does. Writes tune.json and tune.md into the results
directory; bench/README.md, "What was tried", records what earlier tuning runs found."""

from __future__ import annotations

from dataclasses import dataclass

from .analysis import Throughput
from .comparison import alternate
from .config import PEERS, Settings
from .containers import clone_ours, start_ceiling, start_peer
from .load import Load, log_latency_run
from .records import Results, to_json, write_json
from .report import f0, f2
from .shell import Docker, log
from .stack import Stack
from .stats import median, ratio, rotate


@dataclass
class TuneRow:
    """One configuration of ours: medians over the repetitions."""

    variant: str
    rps: dict[str, float]           # scenario -> req/s
    vs_flask: dict[str, float]      # scenario -> ours ÷ Flask peer
    ceiling: float
    get_vs_ceiling: float
    get_c256: float
    scaling: float
    errors: int
    wrk_p99_ms_get: float
    lat_p50_ms: float
    lat_p99_ms: float
    cpu_us_get: float
    pg_cpu_us_get: float


def start_variants(stack: Stack, variants: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    """A clone of ours and its ceiling per configuration; candidate key -> its settings."""
    keys = {}
    for i, overrides in enumerate(variants):
        key = f"v{i}"
        clone_ours(stack, key, overrides)
        start_ceiling(stack, key, f"ceiling-{key}")
        keys[key] = overrides
    log(f"variants: {keys}")
    return keys


def measure(stack: Stack, load: Load, results: Results, keys: list[str], scenarios: tuple[str, ...],
            latency_rate: int) -> None:
    s = stack.settings
    for key in [*keys, "flask"]:
        for scn in scenarios:
            load.wrk(stack.candidates[key], scn, s.connections, max(1, s.warmup))
    plan = [(scn, s.connections, [*keys, "flask"] + ([f"ceiling-{k}" for k in keys] if scn == "get" else []))
            for scn in scenarios]
    plan.append(("get", s.high_connections, keys))
    alternate(stack, load, results, plan, "tuning")
    if not latency_rate:
        return
    for rep in range(1, s.latency_reps + 1):
        for key in rotate([*keys, "flask"], rep - 1):
            r = load.loadgen(stack.candidates[key], "get", latency_rate, rep)
            results.latency_runs.append(r)
            log_latency_run(r)


def _rps(results: Results, key: str, scenario: str, connections: int | None = None) -> float:
    return Throughput.of(results.runs_of(key, scenario, connections or results.settings.connections)).median


def tune_row(results: Results, key: str, overrides: dict[str, str], scenarios: tuple[str, ...]) -> TuneRow:
    s = results.settings
    get = Throughput.of(results.runs_of(key, "get", s.connections))
    ceiling = _rps(results, f"ceiling-{key}", "get")
    get_c256 = _rps(results, key, "get", s.high_connections)
    latency = results.latency_runs_of(key)
    return TuneRow(
        " ".join(f"{a}={b}" for a, b in overrides.items()) or "(defaults)",
        rps={scn: _rps(results, key, scn) for scn in scenarios},
        vs_flask={scn: ratio(_rps(results, key, scn), _rps(results, "flask", scn)) for scn in scenarios},
        ceiling=ceiling, get_vs_ceiling=ratio(get.median, ceiling),
        get_c256=get_c256, scaling=ratio(get_c256, get.median),
        errors=sum(r.errors for r in results.runs if r.candidate == key),
        wrk_p99_ms_get=median(r.p99_ms for r in results.runs_of(key, "get", s.connections)),
        lat_p50_ms=median(r.p50_ms for r in latency), lat_p99_ms=median(r.p99_ms for r in latency),
        cpu_us_get=get.cpu_us, pg_cpu_us_get=get.pg_cpu_us)


def tune_markdown(results: Results, rows: list[TuneRow], scenarios: tuple[str, ...],
                  latency_rate: int) -> str:
    s = results.settings
    flask = ", ".join(f"{scn} {f0(_rps(results, 'flask', scn))}/s" for scn in scenarios)
    if latency_rate:
        lat = results.latency_runs_of("flask")
        flask += (f"; Flask peer at the fixed rate: p50 {f2(median(r.p50_ms for r in lat))} ms, p99 "
                  f"{f2(median(r.p99_ms for r in lat))} ms")
    lines = [(f"Tuning run {results.started}: {s.duration} s per run, {s.reps} alternating repetitions, "
              f"wrk -t1 -c{s.connections}; Flask peer alongside for reference ({flask})."), "",
             "| configuration | " + " | ".join(f"{scn} req/s | ÷ Flask" for scn in scenarios)
             + " | ceiling req/s | get ÷ ceiling | get c256 ÷ c32 | wrk p99 get ms | get: API CPU µs/req "
               f"| get: PostgreSQL CPU µs/req | get @ {latency_rate}/s p50 / p99 ms (fixed rate) | errors |",
             "|---|" + "---|---|" * len(scenarios) + "---|---|---|---|---|---|---|---|"]
    for row in rows:
        per_scenario = " | ".join(f"{f0(row.rps[scn])} | {f2(row.vs_flask[scn])}×" for scn in scenarios)
        lines.append(f"| `{row.variant}` | {per_scenario} | {f0(row.ceiling)} | {f2(row.get_vs_ceiling)}× | "
                     f"{f2(row.scaling)}× | {f2(row.wrk_p99_ms_get)} | {f0(row.cpu_us_get)} | "
                     f"{f0(row.pg_cpu_us_get)} | {f2(row.lat_p50_ms)} / {f2(row.lat_p99_ms)} | "
                     f"{row.errors} |")
    return "\n".join(lines)


def tune(settings: Settings, variants: list[dict[str, str]], scenarios: tuple[str, ...],
         latency_rate: int = 0) -> None:
    """Measure the configurations in `variants` side by side; tune.json and tune.md in settings.out."""
    stack = Stack(settings, Docker())
    load = Load(stack)
    results = Results(settings=settings)
    with stack.session():
        if settings.build:
            results.builds = stack.build_images()
        stack.start()
        stack.seed()
        start_peer(stack, PEERS["flask"])
        keys = start_variants(stack, variants)
        measure(stack, load, results, list(keys), scenarios, latency_rate)
    rows = [tune_row(results, key, overrides, scenarios) for key, overrides in keys.items()]
    md = tune_markdown(results, rows, scenarios, latency_rate)
    settings.out.mkdir(parents=True, exist_ok=True)
    write_json(settings.out / "tune.json", {**to_json(results), "variants": keys, "tuning": to_json(rows)})
    (settings.out / "tune.md").write_text(md + "\n")
    print(md)
