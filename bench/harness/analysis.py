"""From the runs to the result: medians over the repetitions, ours ÷ each peer, ÷ each ceiling and
÷ ours at the baseline revision, and every target of the issues as met or missed. Reported, never
asserted: on a shared machine a timing is evidence, not a test."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .config import (
    APIS,
    BACKUP_MODES,
    BACKUP_SCENARIOS,
    BASELINE,
    BASELINE_SCENARIOS,
    CEILING,
    CEILINGS,
    CLONES,
    COMPARISONS,
    EDGE_ROUTES,
    EDGES,
    LATENCY_EDGE_ROUTES,
    LATENCY_SCENARIOS,
    PEERS,
    ROUNDTRIP,
    SCENARIO_LABELS,
    SCENARIOS,
    TARGETS,
    backup_key,
)
from .records import Footprint, LatencyRun, Results, Run, to_json
from .stats import NAN, median, ratio


@dataclass
class Throughput:
    """One candidate, one scenario, one concurrency, over the repetitions (req/s; failed runs left out)."""

    median: float
    min: float
    max: float
    n: int              # runs that count
    runs: int           # runs made, failed ones included
    errors: int
    cpu_us: float       # per request, the candidate's container (through the edge: the edge's)
    pg_cpu_us: float    # per request, PostgreSQL's container
    upstream_cpu_us: float = NAN    # per request, through the edge: the API's container behind it
    p99_ms: float = NAN             # wrk's p99 latency, closed loop

    @classmethod
    def of(cls, runs: list[Run]) -> Throughput:
        values = [r.rps for r in runs if not r.failed]
        return cls(median(values), min(values, default=NAN), max(values, default=NAN), len(values), len(runs),
                   sum(r.errors for r in runs), median(r.cpu_us for r in runs),
                   median(r.pg_cpu_us for r in runs), median(r.upstream_cpu_us for r in runs),
                   median(r.p99_ms for r in runs))

    @property
    def failed(self) -> int:
        return self.runs - self.n

    @property
    def api_cpu_us(self) -> float:
        """The API's CPU per request: its own container's, or through the edge the one behind it."""
        return self.cpu_us if math.isnan(self.upstream_cpu_us) else self.upstream_cpu_us

    @property
    def path_cpu_us(self) -> float:
        """The CPU per request of every container on the way: the edge's (if any) and the API's."""
        return self.cpu_us + (0.0 if math.isnan(self.upstream_cpu_us) else self.upstream_cpu_us)


@dataclass
class Latency:
    """One candidate at a fixed rate, medians over the repetitions."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    achieved_rps: float
    send_lag_p99_ms: float
    errors: int

    @classmethod
    def of(cls, runs: list[LatencyRun]) -> Latency:
        return cls(median(r.p50_ms for r in runs), median(r.p90_ms for r in runs),
                   median(r.p99_ms for r in runs), median(r.max_ms for r in runs),
                   median(r.achieved_rps for r in runs), median(r.send_lag_p99_ms for r in runs),
                   sum(r.errors for r in runs))


@dataclass
class Check:
    """One target of the issue: what was measured, the goal, and whether it was met."""

    target: str
    value: float
    goal: float
    met: bool
    detail: str


@dataclass
class Analysis:
    # scenario -> candidate (`get` also: edges, ceilings; "live": ours and the baseline)
    throughput: dict[str, dict[str, Throughput]]
    throughput_high: dict[str, Throughput]          # `get` at high concurrency, per API
    live: Throughput                                # ours, /health/live
    latency: dict[str, dict[str, Latency]]          # scenario -> API
    ours_errors: int = 0
    edge_errors: int = 0            # every route through an edge, every run
    cold_start_vs_peer: dict[str, float] = field(default_factory=dict)  # ours ÷ peer, same run
    checks: list[Check] = field(default_factory=list)

    def vs_peer(self, scenario: str, peer: str) -> float:
        """Ours ÷ peer, median req/s."""
        return ratio(self.throughput[scenario]["ours"].median, self.throughput[scenario][peer].median)

    def get_vs(self, other: str) -> float:
        """Ours `GET /items/<id>` ÷ `other` ("ceiling", "roundtrip" or "pgbench")."""
        return ratio(self.throughput["get"]["ours"].median, self.throughput["get"][other].median)

    def comparison(self, name: str) -> float:
        """A ratio of COMPARISONS (through the edge, with and without keys, against the baseline)."""
        c = next(c for c in COMPARISONS if c.name == name)
        runs = self.throughput[c.scenario]
        return ratio(getattr(runs[c.numerator], c.measure), getattr(runs[c.denominator], c.measure))

    def vs_baseline(self, scenario: str) -> float:
        """Ours ÷ ours at the baseline revision, median req/s."""
        tp = self.throughput[scenario]
        return ratio(tp["ours"].median, tp[BASELINE].median)

    def cpu_vs_baseline(self, scenario: str) -> float:
        """Ours ÷ ours at the baseline revision, the API container's CPU per request."""
        tp = self.throughput[scenario]
        return ratio(tp["ours"].cpu_us, tp[BASELINE].cpu_us)

    def live_vs_ceiling(self) -> float:
        """Our middleware alone (no database) ÷ the constant route."""
        return ratio(self.live.median, self.throughput["get"][CEILING].median)

    def roundtrip_vs_ceiling(self) -> float:
        """The constant route with one trip to PostgreSQL ÷ without: the floor under any GET."""
        get = self.throughput["get"]
        return ratio(get[ROUNDTRIP].median, get[CEILING].median)

    def get_vs_live(self) -> float:
        """What the database path keeps of our middleware's throughput."""
        return ratio(self.throughput["get"]["ours"].median, self.live.median)

    def cpu_vs_ours(self, scenario: str, peer: str) -> float:
        return ratio(self.throughput[scenario][peer].cpu_us, self.throughput[scenario]["ours"].cpu_us)

    def p99_vs(self, scenario: str, peer: str, ours: str = "ours") -> float:
        """Ours's p99 at a fixed rate ÷ `peer`'s (both through the edge: `ours`, `peer` edge routes)."""
        return ratio(self.latency[scenario][ours].p99_ms, self.latency[scenario][peer].p99_ms)

    def scaling(self, key: str) -> float:
        return ratio(self.throughput_high[key].median, self.throughput["get"][key].median)

    def ratios(self) -> dict[str, float]:
        """Every ratio by name, as latest.json has it."""
        out = {f"{scn}_vs_{peer}": self.vs_peer(scn, peer) for scn in SCENARIOS for peer in PEERS}
        out |= {"get_vs_ceiling": self.get_vs(CEILING), "get_vs_pgbench": self.get_vs("pgbench"),
                "live_vs_ceiling": self.live_vs_ceiling(), "get_vs_live": self.get_vs_live(),
                "get_vs_roundtrip": self.get_vs(ROUNDTRIP), "roundtrip_vs_ceiling": self.roundtrip_vs_ceiling()}
        out |= {f"cpu_{scn}_{peer}_vs_ours": self.cpu_vs_ours(scn, peer)
                for scn in SCENARIOS for peer in PEERS}
        out |= {f"p99_{scn}_vs_{peer}": self.p99_vs(scn, peer) for scn in LATENCY_SCENARIOS for peer in PEERS}
        out |= {c.name: self.comparison(c.name) for c in COMPARISONS}
        out |= {f"{scn}_vs_baseline": self.vs_baseline(scn) for scn in BASELINE_SCENARIOS}
        out |= {f"cpu_{scn}_ours_vs_baseline": self.cpu_vs_baseline(scn) for scn in BASELINE_SCENARIOS}
        out |= {f"cold_start_vs_{peer}": v for peer, v in self.cold_start_vs_peer.items()}
        return out

    def to_json(self) -> dict:
        return {"throughput": to_json(self.throughput), "throughput_high": to_json(self.throughput_high),
                "live": to_json(self.live), "ratios": self.ratios(),
                "scaling": {k: self.scaling(k) for k in APIS}, "latency": to_json(self.latency),
                "checks": to_json(self.checks), "ours_errors": self.ours_errors,
                "edge_errors": self.edge_errors}


def _throughput_checks(a: Analysis) -> list[Check]:
    checks = []
    for (scn, peer), goal in TARGETS.vs_peer.items():
        v = a.vs_peer(scn, peer)
        checks.append(Check(f"{SCENARIO_LABELS[scn].split(' (')[0]}: ours / {peer} peer", v, goal, v >= goal,
                            f"≥ {goal}×"))
    goal = TARGETS.get_vs_ceiling
    v = a.get_vs(CEILING)
    checks.append(Check("GET /items/<id>: ours / framework ceiling", v, goal, v >= goal, f"≥ {goal}×"))
    # Issue 19's, everything on: the database path, and the per-request middleware alone.
    for label, v, goal in (("GET /items/<id> direct", v, TARGETS.get_vs_ceiling_everything_on),
                           ("GET /health/live", a.live_vs_ceiling(), TARGETS.live_vs_ceiling)):
        checks.append(Check(f"{label}: ours / framework ceiling (issue 19)", v, goal, v >= goal, f"≥ {goal}×"))
    return checks


def _comparison_checks(a: Analysis) -> list[Check]:
    """The named comparisons that have a goal (through the edge, issue 14; with a key, issue 15;
    writes with the backup service streaming, issue 16; with metrics, issue 18; against the baseline
    revision, issue 19)."""
    checks = []
    for c in COMPARISONS:
        if c.goal is not None:
            v = a.comparison(c.name)
            target = f"GET /items/<id>: {c.label}" if c.scenario == "get" else c.label
            checks.append(Check(target, v, c.goal, c.met(v), c.goal_text))
    return checks


def _latency_checks(a: Analysis) -> list[Check]:
    goal = TARGETS.p99_vs_peer
    checks = []
    for scn in LATENCY_SCENARIOS:
        for peer in PEERS:
            v = a.p99_vs(scn, peer)
            checks.append(Check(f"p99 at fixed rate, {scn}: ours / {peer} peer", v, goal, v <= goal,
                                f"≤ {goal}×"))
            v = a.p99_vs(scn, EDGES[peer], EDGES["ours"])
            checks.append(Check(f"p99 at fixed rate through the edge, {scn}: ours / {peer} peer", v, goal,
                                v <= goal, f"≤ {goal}×"))
    return checks


def _robustness_checks(results: Results, a: Analysis) -> list[Check]:
    s = results.settings
    v = a.scaling("ours")
    goal = TARGETS.scaling
    checks = [Check(f"ours at {s.high_connections} / at {s.connections} connections", v, goal, v >= goal,
                    f"≥ {goal}×"),
              Check("ours: errors in every run", a.ours_errors, 0, a.ours_errors == 0, "= 0"),
              Check("through the edge (every route): errors in every run, 429 included", a.edge_errors, 0,
                    a.edge_errors == 0, "= 0")]
    budget, peak = results.pool_budget, results.pg_connections.peaks.get("ours")
    if budget is not None and peak is not None:
        checks.append(Check("ours: peak PostgreSQL connections / pool budget", peak.peak, budget,
                            peak.peak <= budget, f"≤ {budget} (WORKERS × DB_POOL_MAX)"))
    return checks


def _footprint_checks(fp: Footprint) -> list[Check]:
    checks = []
    sizes = fp.image_mb
    if sizes:
        ours, comparison = sizes["ours"], sizes["python_base_plus_our_venv"]
        checks.append(Check("image: ours / python base + same venv", ratio(ours, comparison), 1.0,
                            ours < comparison, "< 1×"))
    if fp.cold_start_s:
        v, goal = fp.cold_start_s["ours"], TARGETS.cold_start_s
        checks.append(Check("cold start, docker start → 200 on /health/ready (s)", v, goal, v <= goal,
                            f"≤ {goal} s"))
    if not math.isnan(fp.rebuild_s):
        v, goal = fp.rebuild_s, TARGETS.rebuild_s
        checks.append(Check("rebuild after one app/ file changed, warm cache (s)", v, goal, v <= goal,
                            f"≤ {goal} s"))
    return checks


def analyse(results: Results) -> Analysis:
    s = results.settings
    conns, high = s.connections, s.high_connections

    def of(key: str, scenario: str, c: int = conns) -> Throughput:
        return Throughput.of(results.runs_of(key, scenario, c))

    tp = {scn: {k: of(k, scn) for k in (*APIS, BASELINE)} for scn in SCENARIOS}
    for key in (*CLONES, *EDGE_ROUTES, *CEILINGS, "pgbench"):
        tp["get"][key] = of(key, "get")
    tp["live"] = {k: of(k, "live") for k in ("ours", BASELINE)}
    for scn in BACKUP_SCENARIOS:
        tp[scn] |= {backup_key(mode): of(backup_key(mode), scn) for mode in BACKUP_MODES}
    lat = {scn: {k: Latency.of(results.latency_runs_of(k, scn)) for k in (*APIS, *LATENCY_EDGE_ROUTES)}
           for scn in LATENCY_SCENARIOS}
    ours_errors = (sum(r.errors for r in results.runs if r.candidate == "ours")
                   + sum(r.errors for r in results.latency_runs_of("ours")))
    edge_errors = sum(r.errors for r in results.runs if r.candidate in EDGE_ROUTES)
    a = Analysis(tp, {k: of(k, "get", high) for k in APIS}, tp["live"]["ours"], lat, ours_errors, edge_errors)
    cold = results.footprint.cold_start_s
    if cold:
        a.cold_start_vs_peer = {peer: ratio(cold["ours"], cold[peer]) for peer in PEERS}
    a.checks = [*_throughput_checks(a), *_comparison_checks(a), *_latency_checks(a),
                *_robustness_checks(results, a),
                *_footprint_checks(results.footprint)]
    return a
