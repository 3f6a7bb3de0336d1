"""The run as people read it: bench/results/latest.md (one function per section), the ratios and
targets printed at the end of the run, and the three files written together (JSON, Markdown, chart)."""

from __future__ import annotations

import math
from pathlib import Path

from .analysis import Analysis, Throughput, analyse
from .chart import chart
from .config import (
    APIS,
    BACKUP_COMPARISONS,
    BACKUP_MODES,
    BACKUP_SCENARIOS,
    BASELINE,
    BASELINE_COMPARISONS,
    BASELINE_SCENARIOS,
    BASE_IMAGE,
    CEILING,
    CLONE_COMPARISONS,
    CLONES,
    DOCS_PACKAGE,
    EDGE_COMPARISONS,
    EDGE_IMAGE,
    EDGE_ROUTES,
    EDGES,
    LATENCY_EDGE_ROUTES,
    LATENCY_SCENARIOS,
    OURS_NO_AUTH,
    PEERS,
    ROUNDTRIP,
    SCENARIO_LABELS,
    SCENARIOS,
    TARGETS,
    backup_key,
)
from .records import Results, to_json, write_json
from .shell import log
from .stats import NAN, ratio


def f0(x: float) -> str:
    return "—" if math.isnan(x) else f"{x:,.0f}"


def f2(x: float) -> str:
    return "—" if math.isnan(x) else f"{x:.2f}"


def cell(t: Throughput) -> str:
    """Median (min–max), with errors and failed runs when there were any."""
    return (f"{f0(t.median)} ({f0(t.min)}–{f0(t.max)})"
            + (f", {t.errors} err" if t.errors else "")
            + (f", {t.failed} failed run{'s' * (t.failed > 1)}" if t.failed else ""))


def header(results: Results) -> list[str]:
    s, m, cfg = results.settings, results.machine, results.ours_config
    overrides = "; ".join(f"{k}: `{' '.join(f'{a} {b}' for a, b in v.items())}`"
                          for k, v in results.peer_limit_overrides.items() if v)
    return [
        f"# Benchmark results ({'smoke run: timings meaningless' if s.smoke else 'full run'})",
        "",
        (f"Run {results.started}, {results.elapsed_s / 60:.1f} min, on {m.cpus if m else None} × "
         f"{m.cpu_model if m else '?'} (kernel {m.kernel if m else None}, Docker {m.docker if m else None}, "
         f"load average at start {m.loadavg_at_start if m else None}). Every number below was measured in "
         "this one run: absolute numbers on a shared 2-core machine are noise, the ratios are the result."),
        "",
        (f"- Closed loop: wrk `-t1 -c{s.connections}` (and `-c{s.high_connections}` for scaling), "
         f"{s.duration} s per run, {s.reps} alternating repetitions after a {s.warmup} s warm-up per "
         "candidate and endpoint; median (min–max) req/s."),
        f"- Load path: {results.load_path}.",
        (f"- Ours: `{' '.join(f'{k}={v}' for k, v in cfg.items() if v)}` (the rest at the stack's defaults); "
         f"every API container: `{' '.join(results.limits.docker_run_options)}`."),
        (f"- Where a peer's defaults do not fit our limits it gets what they need instead: {overrides} "
         "(see bench/README.md)."),
        (f"- The edge: compose's `edge` service ({EDGE_IMAGE}) as prod runs it, the Flask peer behind a "
         "clone of it with only `EDGE_UPSTREAM` changed; every edge container: "
         f"`{' '.join(results.edge_limits.docker_run_options)}`. Its per-client limits are out of the "
         f"way (`{' '.join(f'{k}={v}' for k, v in results.edge_limit_settings.items())}`, "
         "bench/compose.bench.yaml): all load comes from one address, 127.0.0.1, and the benchmark "
         "measures throughput, not the limiter."),
        (f"- API keys: ours runs as it ships (`API_AUTH=required`); every request to it, directly and "
         "through its edge, carries a write key the run made inside the API container (`python -m app keys "
         f"create`). Without one it answers {_statuses(results, lambda k: k != OURS_NO_AUTH)}. The peers "
         "keep their own auth off (their templates ship none), as does the constant route. Ours once more "
         f"with `API_AUTH=off` (without a key: {_statuses(results, lambda k: k == OURS_NO_AUTH)}) measures "
         "what the key check costs; with `METRICS=off` (and a key), what the metrics cost."),
        (f"- Data: {s.seed_items:,} seeded items, ids drawn uniformly; PostgreSQL 18 of the stack (its own "
         "prod limits). Peers' answers equal ours: "
         f"{'yes' if results.contract_check.ok else 'NO, see latest.json'}."),
    ]


def _statuses(results: Results, which) -> str:
    """`GET /items/<id>` without a key, as the contract check saw it, for the candidates `which` picks."""
    seen = {k: v for k, v in results.contract_check.without_key.items() if which(k)}
    return ", ".join(f"{k} {v}" for k, v in seen.items()) or "not checked"


def comparison_rows(a: Analysis, comparisons) -> list[str]:
    """A table of named comparisons: ratio, and the goal met or missed (or only reported)."""
    lines = ["| comparison | ratio | goal |", "|---|---|---|"]
    for c in comparisons:
        v = a.comparison(c.name)
        goal = "reported" if c.goal is None else f"{c.goal_text}: {'met' if c.met(v) else '**missed**'}"
        lines.append(f"| {c.label} | **{f2(v)}×** | {goal} |")
    return lines


def throughput_section(a: Analysis) -> list[str]:
    lines = ["## Throughput (req/s) and ratios", "",
             "| endpoint | ours | Flask peer | FastAPI peer | ours ÷ Flask | ours ÷ FastAPI |",
             "|---|---|---|---|---|---|"]
    for scn in SCENARIOS:
        tp = a.throughput[scn]
        ratios = []
        for peer in PEERS:
            goal = TARGETS.vs_peer.get((scn, peer))
            ratios.append(f"**{f2(a.vs_peer(scn, peer))}×**" + (f" (≥ {goal})" if goal else ""))
        lines.append(f"| {SCENARIO_LABELS[scn]} | {cell(tp['ours'])} | {cell(tp['flask'])} | "
                     f"{cell(tp['fastapi'])} | {' | '.join(ratios)} |")
    return lines


def limits_section(results: Results, a: Analysis) -> list[str]:
    get = a.throughput["get"]
    return [
        "## Against the machine's limits",
        "",
        "| | req/s or tps | ours `GET /items/<id>` ÷ it |",
        "|---|---|---|",
        ("| framework ceiling: constant Flask route, same image, same Granian settings, same limits | "
         f"{cell(get[CEILING])} | **{f2(a.get_vs(CEILING))}×** (≥ {TARGETS.get_vs_ceiling}) |"),
        (f"| PostgreSQL ceiling: `pgbench -S -M prepared -c{results.settings.connections} -j2` over TCP "
         f"127.0.0.1 | {cell(get['pgbench'])} | **{f2(a.get_vs('pgbench'))}×** |"),
        ("| round-trip floor: the same constant route, plus one `SELECT 1` on a connection its thread "
         f"holds (no pool, key, log line or metrics) | {cell(get[ROUNDTRIP])} | "
         f"**{f2(a.get_vs(ROUNDTRIP))}×** |"),
        ("| ours `GET /health/live`: the product's Flask app and middleware (request id, JSON log line), "
         f"no database | {cell(a.live)} | {f2(a.get_vs_live())}× |"),
        "",
        ("Where the distance to the framework ceiling goes: our middleware alone reaches "
         f"{f2(a.live_vs_ceiling())}× of the bare constant route, and the database path keeps "
         f"{f2(a.get_vs_live())}× of that. One trip to PostgreSQL alone, with no code of ours around it, "
         f"keeps {f2(a.roundtrip_vs_ceiling())}× of the constant route: no `GET /items/<id>` that "
         "asks the database can go above that."),
    ]


def edge_section(a: Analysis) -> list[str]:
    get = a.throughput["get"]
    lines = [
        "## Through the edge (nginx), `GET /items/<id>`, keep-alive connections",
        "",
        ("Each route took its turn with the direct candidates in every repetition (same wrk settings). "
         "CPU per request: the edge's container, and the API's container behind it."),
        "",
        "| route | req/s | edge CPU µs/req | API CPU µs/req behind the edge | the same API direct |",
        "|---|---|---|---|---|",
    ]
    for key, route in EDGE_ROUTES.items():
        t = get[key]
        lines.append(f"| {route.label} | {cell(t)} | {f0(t.cpu_us)} | {f0(t.upstream_cpu_us)} | "
                     f"{f0(get[route.api].cpu_us)} |")
    return [*lines, "", *comparison_rows(a, EDGE_COMPARISONS)]


def clones_section(a: Analysis) -> list[str]:
    """Ours against itself with one feature off (API keys, metrics): what each feature costs."""
    get = a.throughput["get"]
    rows = [("ours as it ships, with a key (the compose container)", get["ours"])] + [(c.label, get[key]) for key, c in CLONES.items()]
    return [
        "## API keys and metrics, `GET /items/<id>`",
        "",
        ("Ours as it ships (`API_AUTH=required`, `METRICS=on`) against ours once more with one of them off "
         "(clones of the compose container: the same image, settings, limits and database), taking turns "
         "in the same repetitions. Each is compared with a twin, a clone with nothing changed, started "
         "with them and given the same load (`get` only); the compose container, which serves every "
         "scenario of the run, is shown for reference."),
        "",
        "| candidate | req/s | API CPU µs/req | PostgreSQL CPU µs/req |",
        "|---|---|---|---|",
        *(f"| {label} | {cell(t)} | {f0(t.cpu_us)} | {f0(t.pg_cpu_us)} |" for label, t in rows),
        "",
        *comparison_rows(a, CLONE_COMPARISONS),
    ]


def baseline_section(results: Results, a: Analysis) -> list[str]:
    b = results.baseline
    get, base = a.throughput["get"], a.throughput["get"][BASELINE]
    lines = [
        "## This round against the baseline revision",
        "",
        (f"Ours at `{b.commit[:12] if b else '?'}` (\"{b.subject if b else '?'}\"), built from a git "
         f"worktree of that commit with its own Dockerfile (`{b.image if b else '?'}`), run as a clone "
         "of compose's `flask-api` (the same limits, settings, hardening and database), took its turns "
         "with the other candidates in every repetition. It had no edge, no API keys and no metrics: it "
         "is measured directly, without a key; ours as it ships, with one. Ratios: ours ÷ the baseline."),
        "",
        ("| endpoint | ours req/s | baseline req/s | req/s ours ÷ baseline | ours API CPU µs/req "
         "| baseline API CPU µs/req | CPU ours ÷ baseline |"),
        "|---|---|---|---|---|---|---|",
    ]
    for scn in BASELINE_SCENARIOS:
        ours, theirs = a.throughput[scn]["ours"], a.throughput[scn][BASELINE]
        label = SCENARIO_LABELS.get(scn, "GET /health/live (no database)")
        lines.append(f"| {label} | {cell(ours)} | {cell(theirs)} | **{f2(a.vs_baseline(scn))}×** | "
                     f"{f0(ours.cpu_us)} | {f0(theirs.cpu_us)} | **{f2(a.cpu_vs_baseline(scn))}×** |")
    edge = get["ours_edge"]
    lines += [
        (f"| GET /items/<id>, ours through the edge (HTTP) | {cell(edge)} | {cell(base)} | "
         f"**{f2(a.comparison('baseline_edge_rps'))}×** | {f0(edge.upstream_cpu_us)} (+ edge "
         f"{f0(edge.cpu_us)}) | {f0(base.cpu_us)} | **{f2(a.comparison('baseline_edge_api_cpu'))}×** |"),
        "",
        *comparison_rows(a, BASELINE_COMPARISONS),
    ]
    return lines


BACKUP_MODE_LABELS = {"none": "no backup service", "streaming": "backup service streaming WAL (the default)",
                      "sync": "`BACKUP_SYNC=on` (synchronous standby)"}


def backup_section(a: Analysis) -> list[str]:
    """Issue 16: ours's writes in each backup mode (bench/harness/backups.py)."""
    lines = [
        "## Backups: writes with no backup service, streaming, `BACKUP_SYNC=on`",
        "",
        ("Ours direct, the stack switched between the modes in every repetition (the mode is "
         "PostgreSQL's, so they take turns, the order rotating). p99: wrk's, closed loop."),
        "",
        "| mode | " + " | ".join(f"{SCENARIO_LABELS[s]} req/s | p99 ms" for s in BACKUP_SCENARIOS) + " |",
        "|---|" + "---|---|" * len(BACKUP_SCENARIOS),
    ]
    for mode in BACKUP_MODES:
        cells = [f"{cell(a.throughput[s][backup_key(mode)])} | {f0(a.throughput[s][backup_key(mode)].p99_ms)}"
                 for s in BACKUP_SCENARIOS]
        lines.append(f"| {BACKUP_MODE_LABELS[mode]} | " + " | ".join(cells) + " |")
    return [*lines, "", *comparison_rows(a, BACKUP_COMPARISONS)]


def cpu_section(a: Analysis) -> list[str]:
    lines = [
        "## CPU time per request (µs, median; cgroup counters of each container)",
        "",
        ("| endpoint | ours API | ours PostgreSQL | Flask API | Flask PostgreSQL | FastAPI API "
         "| FastAPI PostgreSQL | API CPU: Flask ÷ ours | FastAPI ÷ ours |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for scn in SCENARIOS:
        tp = a.throughput[scn]
        cpu = " | ".join(f"{f0(tp[k].cpu_us)} | {f0(tp[k].pg_cpu_us)}" for k in APIS)
        vs = " | ".join(f"{f2(a.cpu_vs_ours(scn, peer))}×" for peer in PEERS)
        lines.append(f"| {scn} | {cpu} | {vs} |")
    lines += [
        f"| constant route (ceiling) | {f0(a.throughput['get'][CEILING].cpu_us)} | | | | | | | |",
        (f"| constant route + `SELECT 1` (round-trip floor) | {f0(a.throughput['get'][ROUNDTRIP].cpu_us)} | "
         f"{f0(a.throughput['get'][ROUNDTRIP].pg_cpu_us)} | | | | | | |"),
        f"| ours /health/live | {f0(a.live.cpu_us)} | | | | | | | |",
        "",
        ("Every API container has the same CPU limit, so the CPU a request costs bounds its throughput; this "
         "measure moves less than req/s when other work shares the machine."),
    ]
    return lines


def latency_section(results: Results, a: Analysis) -> list[str]:
    s = results.settings
    lines = [
        (f"## Latency at a fixed rate ({int(s.latency_fraction * 100)}% of the slowest peer's throughput), "
         "open loop, coordinated omission accounted for"),
        "",
        ("bench/loadgen.py: requests due at fixed intervals, latency measured from the intended send time, "
         f"{s.latency_duration:g} s after {s.latency_warmup:g} s unrecorded, median of {s.latency_reps} "
         "repetitions."),
        "",
        ("Each API directly, and each through its own edge (the same configuration, HTTP); through the edge "
         "ours is compared with the peers through theirs."),
        "",
        "| endpoint | rate | candidate | p50 ms | p90 ms | p99 ms | max ms | errors | ours p99 ÷ its p99 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for scn in LATENCY_SCENARIOS:
        rate = results.latency_rates.get(scn, NAN)
        for ours, keys in (("ours", APIS), (EDGES["ours"], LATENCY_EDGE_ROUTES)):
            for key in keys:
                d = a.latency[scn][key]
                vs = "" if key == ours else f"**{f2(a.p99_vs(scn, key, ours))}×** (≤ {TARGETS.p99_vs_peer})"
                name = EDGE_ROUTES[key].label if key in EDGE_ROUTES else key
                lines.append(f"| {scn} | {f0(rate)}/s | {name} | {f2(d.p50_ms)} | {f2(d.p90_ms)} | "
                             f"{f2(d.p99_ms)} | {f2(d.max_ms)} | {d.errors} | {vs} |")
    return lines


def scaling_section(results: Results, a: Analysis) -> list[str]:
    conns, high = results.settings.connections, results.settings.high_connections
    lines = [
        f"## Scaling, errors, PostgreSQL connections (`GET /items/<id>`, {high} vs {conns} connections)",
        "",
        (f"| candidate | req/s at {conns} | req/s at {high} | {high} ÷ {conns} | errors, all runs "
         "| peak PostgreSQL connections |"),
        "|---|---|---|---|---|---|",
    ]
    for key in APIS:
        errors = sum(r.errors for r in results.runs if r.candidate == key)
        peak = results.pg_connections.peaks.get(key)
        shown = str(peak.peak) if peak else "—"
        if key == "ours" and results.pool_budget is not None:
            shown = f"{shown} (budget {results.pool_budget})"
        lines.append(f"| {key} | {f0(a.throughput['get'][key].median)} | "
                     f"{f0(a.throughput_high[key].median)} | **{f2(a.scaling(key))}×** | {errors} | "
                     f"{shown} |")
    return lines


def footprint_section(results: Results, a: Analysis) -> list[str]:
    fp = results.footprint
    columns = (*APIS, *EDGES.values())

    def row(title: str, values: dict[str, float], fmt) -> str:
        return f"| {title} | " + " | ".join(fmt(values.get(k, NAN)) for k in columns) + " |"

    sizes = fp.image_mb
    base, comparison = sizes.get("python_base", NAN), sizes.get("python_base_plus_our_venv", NAN)
    return [
        "## Footprint",
        "",
        ("| | ours | Flask peer | FastAPI peer | edge in front of ours | edge in front of the Flask peer "
         "| edge in front of the FastAPI peer |"),
        "|---|---|---|---|---|---|---|",
        row("image size (MB)", {**sizes, **{key: sizes.get("edge", NAN) for key in EDGES.values()}}, f0),
        row(f"of which the /docs page's files, `{DOCS_PACKAGE}` (MB)", {"ours": fp.docs_assets_mb}, f2),
        row("memory idle, after start (MiB)", fp.memory_idle_mib, f0),
        row("memory under load, most in any run (MiB)", fp.memory_load_mib, f0),
        row("memory after the run (MiB)", fp.memory_mib, f0),
        row("cold start, `docker start` → 200 on /health/ready (s)", fp.cold_start_s, f2),
        row("cold start, ours ÷ this peer's (same run)", a.cold_start_vs_peer, f2),
        "",
        ("Memory is the container's cgroup usage less its inactive page cache, as `docker stats` shows it; "
         "under load it is sampled every 0.2 s during each run against the container."),
        "",
        (f"- Python base image `{BASE_IMAGE}` (the local stand-in): {f0(base)} MB; that image plus exactly "
         f"our venv (the product Dockerfile's builder stage, libpq5, app/): {f0(comparison)} MB; ours ÷ "
         f"that: **{f2(ratio(sizes.get('ours', NAN), comparison))}×**."),
        (f"- The baseline revision's image: {f0(sizes.get(BASELINE, NAN))} MB; ours ÷ it: "
         f"**{f2(ratio(sizes.get('ours', NAN), sizes.get(BASELINE, NAN)))}×**."),
        (f"- /docs (Swagger UI's JavaScript and CSS, from the `{DOCS_PACKAGE}` wheel, measured inside our "
         f"image): {f2(fp.docs_assets_mb)} MB; ours without them would be "
         f"{f0(sizes.get('ours', NAN) - fp.docs_assets_mb)} MB."),
        (f"- Rebuild of our image after changing one file under app/, warm cache: **{f2(fp.rebuild_s)} s** "
         f"(≤ {TARGETS.rebuild_s:g}); with nothing changed {f2(fp.rebuild_unchanged_s)} s."),
    ]


def value_text(value: float, fmt=f2) -> str:
    return fmt(value) if isinstance(value, float) else str(value)


def targets_section(a: Analysis) -> list[str]:
    lines = ["## Targets (issues 6, 14, 15, 18 and 19)", "",
             "| target | measured | goal | |", "|---|---|---|---|"]
    for c in a.checks:
        verdict = "met" if c.met else "**missed**"
        lines.append(f"| {c.target} | {value_text(c.value)} | {c.detail} | {verdict} |")
    return lines


def markdown(results: Results, a: Analysis) -> str:
    sections = [header(results), throughput_section(a), baseline_section(results, a), clones_section(a),
                edge_section(a), backup_section(a), limits_section(results, a),
                cpu_section(a),
                latency_section(results, a), scaling_section(results, a), footprint_section(results, a),
                targets_section(a), ["![throughput and latency](latest.png)"]]
    return "\n\n".join("\n".join(section) for section in sections) + "\n"


def print_summary(a: Analysis) -> None:
    print("\nRatios (medians of this run):")
    for scn in SCENARIOS:
        print(f"  {SCENARIO_LABELS[scn]:<46} ours ÷ Flask {a.vs_peer(scn, 'flask'):5.2f}×   "
              f"ours ÷ FastAPI {a.vs_peer(scn, 'fastapi'):5.2f}×")
    print(f"  {'GET /items/<id> ÷ framework ceiling':<46} {a.get_vs(CEILING):5.2f}×")
    print(f"  {'GET /items/<id> ÷ pgbench -S':<46} {a.get_vs('pgbench'):5.3f}×")
    print(f"  {'round-trip floor ÷ framework ceiling':<46} {a.roundtrip_vs_ceiling():5.2f}×")
    print("\nThis round ÷ the baseline revision (req/s, API CPU per request):")
    for scn in BASELINE_SCENARIOS:
        print(f"  {scn:<6} {a.vs_baseline(scn):5.2f}×  {a.cpu_vs_baseline(scn):5.2f}×")
    for title, comparisons in (("API keys and metrics", CLONE_COMPARISONS), ("Through the edge", EDGE_COMPARISONS),
                               ("Against the baseline revision", BASELINE_COMPARISONS)):
        print(f"\n{title}, GET /items/<id>:")
        for c in comparisons:
            print(f"  {c.label:<60} {a.comparison(c.name):5.2f}×")
    print("\nBackups, writes:")
    for c in BACKUP_COMPARISONS:
        p99 = a.throughput[c.scenario][c.numerator].p99_ms
        print(f"  {c.label:<60} {a.comparison(c.name):5.2f}×   p99 {p99:.1f} ms")
    print("\nTargets (issues 6, 14, 15, 16, 18 and 19; reported, never asserted):")
    for c in a.checks:
        vs = value_text(c.value, lambda v: f"{v:.2f}")
        print(f"  [{'met   ' if c.met else 'MISSED'}] {c.target}: {vs} (goal {c.detail})")


def write_outputs(results: Results, out: Path, want_chart: bool) -> Analysis:
    """latest.json (the results and their analysis), latest.md and, if wanted, latest.png in `out`."""
    a = analyse(results)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "latest.json", {**to_json(results), "analysis": a.to_json()})
    (out / "latest.md").write_text(markdown(results, a) + "\n")
    if want_chart:
        chart(results, a, out / "latest.png")
    log(f"wrote {out / 'latest.json'}, latest.md{', latest.png' if want_chart else ''}")
    return a
