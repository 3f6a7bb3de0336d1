"""What every step of the benchmark shares: paths, images, the peers, the endpoints, the targets
and how long to measure. One place, so that the run, the analysis and the report cannot disagree."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
# The prod stack, and the benchmark's layer on it (the API's port published again, the edge's
# per-client limits out of the way).
COMPOSE_FILES = ("compose.yaml", "compose.prod.yaml", "bench/compose.bench.yaml")
OUR_IMAGE = "items-api:local"
EDGE_IMAGE = "items-edge:local"
BASE_IMAGE = "python:3.14-slim-trixie"
PG_IMAGE = "postgres:18-trixie"
COMPARISON_IMAGE = "items-bench-base-venv:local"
VENV_STAGE_IMAGE = "items-bench-venv-stage:local"
REBUILD_IMAGE = "items-bench-rebuild:local"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
ENGINE_DIR = Path("/opt/docker-engine")
# Variables of the product's configuration that the benchmark passes through to the stack.
OUR_SETTINGS = ("WORKERS", "BLOCKING_THREADS", "DB_POOL_MIN", "DB_POOL_MAX", "DB_POOL_TIMEOUT", "LOG_LEVEL")

SCENARIOS = ("get", "list", "post", "patch", "mix")
LATENCY_SCENARIOS = ("get", "mix")
SCENARIO_LABELS = {
    "get": "GET /items/<id>",
    "list": "GET /items?limit=20",
    "post": "POST /items",
    "patch": "PATCH /items/<id>",
    "mix": "mix (70% get, 15% list, 10% patch, 5% post)",
}
# The API candidates: ours and the peers (the ceilings are measured on `get` only).
APIS = ("ours", "flask", "fastapi")
# The framework ceiling, a constant Flask route in our image under our Granian settings
# (bench/ceiling/), and the round-trip floor: the same route running ROUNDTRIP_QUERY first, on a
# connection it holds. Between them: what one trip to PostgreSQL costs, before any code of ours.
CEILING = "ceiling"
ROUNDTRIP = "roundtrip"
ROUNDTRIP_QUERY = "SELECT 1"
CEILINGS = (CEILING, ROUNDTRIP)
# Ours once more beside it with one setting changed (CLONES below), `get` only: what that costs.
# Ours itself runs as it ships (API_AUTH=required, METRICS=on) and sends a key; the peers have no
# auth and no metrics at all.
OURS_TWIN = "ours_twin"
OURS_NO_AUTH = "ours_no_auth"
OURS_NO_METRICS = "ours_no_metrics"
# Ours at a baseline revision (bench/harness/baseline.py): the product as it was before this round,
# built from a git worktree of that commit and run like ours. The default is the commit before
# this round's first change (bd7c7c2); BENCH_BASELINE_REV or --baseline-rev choose another.
BASELINE = "baseline"
DEFAULT_BASELINE_REV = "6d31ad4"
BASELINE_IMAGE_REPO = "items-api"       # tagged items-api:baseline-<commit, 12 digits>
# Where it is measured beside ours: every endpoint, and the middleware alone (/health/live).
BASELINE_SCENARIOS = (*SCENARIOS, "live")
# The package behind /docs (Swagger UI's JavaScript and CSS): its size in our image is reported.
DOCS_PACKAGE = "flask-swagger-ui"


@dataclass(frozen=True)
class EdgeRoute:
    """An API reached through the edge (nginx, build/edge): over HTTP or HTTPS, `get` only."""

    key: str
    api: str            # the candidate behind it
    tls: bool
    label: str


# Ours and the Flask peer, each behind the same edge configuration (compose's `edge` service,
# and a clone of it pointed at the peer), as flask-on-docker ships Flask in production.
EDGE_ROUTES = {r.key: r for r in (
    EdgeRoute("ours_edge", "ours", False, "ours through the edge, HTTP"),
    EdgeRoute("ours_edge_tls", "ours", True, "ours through the edge, HTTPS"),
    EdgeRoute("flask_edge", "flask", False, "Flask peer through the edge, HTTP"),
    EdgeRoute("flask_edge_tls", "flask", True, "Flask peer through the edge, HTTPS"),
    EdgeRoute("fastapi_edge", "fastapi", False, "FastAPI peer through the edge, HTTP"),
)}
# The edge containers by the API behind them (an HTTP and an HTTPS route share one).
EDGES = {"ours": "ours_edge", "flask": "flask_edge", "fastapi": "fastapi_edge"}
# Latency at a fixed rate through the edge (issue 19), beside the APIs directly (the previous round's).
LATENCY_EDGE_ROUTES = ("ours_edge", "flask_edge", "fastapi_edge")
# The edge's per-client limits, which bench/compose.bench.yaml sets out of the way.
EDGE_LIMIT_SETTINGS = ("EDGE_READ_RATE", "EDGE_READ_BURST", "EDGE_WRITE_RATE", "EDGE_WRITE_BURST",
                       "EDGE_CLIENT_CONNECTIONS")


@dataclass(frozen=True)
class Comparison:
    """A named ratio of two candidates' measures in one scenario (`GET /items/<id>` unless said;
    `measure`, an attribute of analysis.Throughput: the median req/s unless it says otherwise); with a
    goal it is a target."""

    name: str
    label: str
    numerator: str
    denominator: str
    goal: float | None = None
    scenario: str = "get"
    at_most: bool = False       # the goal is a most (CPU), not a least (throughput)
    measure: str = "median"

    def met(self, value: float) -> bool:
        return value <= self.goal if self.at_most else value >= self.goal

    @property
    def goal_text(self) -> str:
        return f"{'≤' if self.at_most else '≥'} {self.goal}×"


@dataclass(frozen=True)
class Clone:
    """Ours once more, as compose runs it but with `settings`: a feature's cost, measured side by side."""

    key: str
    settings: dict[str, str]
    label: str                              # its row in the report
    comparison: Comparison | None = None    # the twin / this clone (the target)


# Issue 15: the key check; issue 18: the metrics. Each clone with one of them off is compared with
# a twin: a clone with nothing changed, started with them and given the same load (`get` only).
# The compose container is no fair control: it serves every scenario of the run (bench/README.md).
CLONES = {c.key: c for c in (
    Clone(OURS_TWIN, {}, "ours once more as it ships, with a key (the clones' control)"),
    Clone(OURS_NO_AUTH, {"API_AUTH": "off"}, "ours, `API_AUTH=off`, no key",
          Comparison("auth_get_vs_off", "ours with a key / ours with API_AUTH=off (clones)", OURS_TWIN,
                     OURS_NO_AUTH, 0.9)),
    Clone(OURS_NO_METRICS, {"METRICS": "off"}, "ours, `METRICS=off`, with a key",
          Comparison("metrics_get_vs_off", "ours with metrics / ours with METRICS=off (clones)", OURS_TWIN,
                     OURS_NO_METRICS, 0.95)),
)}
CLONE_COMPARISONS = tuple(c.comparison for c in CLONES.values() if c.comparison)

# Issue 14: through the edge, over keep-alive connections.
EDGE_COMPARISONS = (
    Comparison("edge_get_vs_direct", "ours through the edge / ours direct, HTTP", "ours_edge", "ours", 0.8),
    Comparison("edge_get_vs_flask_edge", "ours / Flask peer, both through the edge, HTTP", "ours_edge",
               "flask_edge", 2.5),
    Comparison("edge_tls_get_vs_direct", "ours through the edge / ours direct, HTTPS", "ours_edge_tls",
               "ours"),
    Comparison("edge_tls_get_vs_flask_edge_tls", "ours / Flask peer, both through the edge, HTTPS",
               "ours_edge_tls", "flask_edge_tls"),
    Comparison("edge_tls_get_vs_edge", "ours through the edge, HTTPS / HTTP", "ours_edge_tls", "ours_edge"),
    Comparison("flask_edge_get_vs_direct", "Flask peer through the edge / Flask peer direct, HTTP",
               "flask_edge", "flask"),
)
# Issue 19: this round against the baseline revision, which had no edge, no keys and no metrics
# (clients reached its API directly). "API CPU" is the API container's CPU per request (through the
# edge: the API's container behind it, the edge's own CPU left out); "path CPU" adds the edge's.
BASELINE_COMPARISONS = (
    Comparison("baseline_edge_api_cpu", "API CPU per request: ours through the edge with a key, HTTP / the "
               "baseline revision direct", "ours_edge", BASELINE, 0.7, at_most=True, measure="api_cpu_us"),
    Comparison("baseline_edge_path_cpu", "edge + API CPU per request: ours through the edge with a key, HTTP "
               "/ the baseline revision's API direct", "ours_edge", BASELINE, measure="path_cpu_us"),
    Comparison("baseline_edge_rps", "req/s: ours through the edge with a key, HTTP / the baseline revision "
               "direct", "ours_edge", BASELINE),
    Comparison("round_two_edge_vs_flask_edge", "req/s: ours through the edge with a key / the Flask peer "
               "behind the same edge, HTTP (issue 19)", "ours_edge", "flask_edge", 3.0),
)
# Issue 16: ours's writes with no backup service, with it streaming WAL (as the stack ships) and
# with BACKUP_SYNC=on (a synchronous standby). The mode is PostgreSQL's, so the modes take turns
# within each repetition with a switch between them (bench/harness/backups.py), not side by side.
BACKUP_MODES = ("none", "streaming", "sync")
BACKUP_SCENARIOS = ("post", "patch")


def backup_key(mode: str) -> str:
    """The candidate name of ours measured in a backup mode."""
    return f"ours_backup_{mode}"


BACKUP_COMPARISONS = tuple(
    c for scn in BACKUP_SCENARIOS for c in (
        Comparison(f"backup_{scn}_streaming_vs_none", f"{SCENARIO_LABELS[scn]}: backup service streaming / none",
                   backup_key("streaming"), backup_key("none"), 0.9, scn),
        Comparison(f"backup_{scn}_sync_vs_none", f"{SCENARIO_LABELS[scn]}: BACKUP_SYNC=on / no backup service",
                   backup_key("sync"), backup_key("none"), None, scn),
    )
)
# Every named comparison, by name in latest.json's ratios; those with a goal are targets.
COMPARISONS = (*EDGE_COMPARISONS, *CLONE_COMPARISONS, *BACKUP_COMPARISONS, *BASELINE_COMPARISONS)


@dataclass(frozen=True)
class Peer:
    """A peer API under bench/peers/<directory>, built the way its framework's templates build it."""

    key: str
    label: str
    directory: str
    image: str
    port: int
    driver: str
    # `docker run` limits that replace ours where the peer's defaults do not fit them (see bench/README.md).
    limits: dict[str, str] = field(default_factory=dict)

    def database_url(self, password: str) -> str:
        return f"{self.driver}://app:{password}@postgres:5432/appdb"


PEERS = {
    "flask": Peer(
        "flask", "Flask + Flask-SQLAlchemy + psycopg2 + Gunicorn sync", "flask_sqlalchemy",
        "items-bench-peer-flask-sqlalchemy:local", 5000, "postgresql+psycopg2",
        # 5 sync workers of ~45 MiB each: at our 256 MiB they sit at the limit.
        {"--memory": "1g", "--memory-swap": "1g"}),
    "fastapi": Peer(
        "fastapi", "FastAPI + SQLModel + Uvicorn workers", "fastapi_sqlmodel",
        "items-bench-peer-fastapi-sqlmodel:local", 8000, "postgresql+psycopg",
        # 4 Uvicorn workers of ~90 MiB each: at our 256 MiB the kernel OOM-kills them while they start.
        # Each worker runs sync endpoints on anyio's pool of up to 40 threads: at our 64 pids
        # threads fail to start ("can't start new thread") under load.
        {"--memory": "1g", "--memory-swap": "1g", "--pids-limit": "512"}),
}


@dataclass(frozen=True)
class Targets:
    """The issues' targets (issue 6, "Targets"; the named comparisons': COMPARISONS, issues 14, 15 and 19)."""

    # ours ÷ peer, req/s, at least: (scenario, peer) -> ratio
    vs_peer: dict[tuple[str, str], float] = field(default_factory=lambda: {
        ("get", "flask"): 2.5, ("get", "fastapi"): 4.0, ("mix", "flask"): 2.0, ("mix", "fastapi"): 3.0})
    get_vs_ceiling: float = 0.6     # ours ÷ the constant route, at least
    # Issue 19 (edge, keys, metrics on): GET direct and /health/live ÷ the constant route, at least.
    get_vs_ceiling_everything_on: float = 0.4
    live_vs_ceiling: float = 0.75
    p99_vs_peer: float = 0.5        # ours ÷ peer, p99 at a fixed rate, at most
    scaling: float = 0.9            # req/s at high ÷ at normal connections, at least
    cold_start_s: float = 2.0
    rebuild_s: float = 15.0


TARGETS = Targets()


@dataclass
class Settings:
    smoke: bool = False
    duration: int = 6           # seconds per closed-loop run
    reps: int = 3               # alternating repetitions
    warmup: int = 2             # seconds per candidate and scenario before the first repetition
    connections: int = 32
    high_connections: int = 256
    latency_duration: float = 8.0
    latency_warmup: float = 2.0
    latency_reps: int = 3
    latency_fraction: float = 0.7
    seed_items: int = 10_000
    cold_start_reps: int = 3
    project: str = "items-bench"
    out: Path = BENCH / "results"
    keep: bool = False
    build: bool = True
    ours_env: dict[str, str] = field(default_factory=dict)
    chart: bool = True
    baseline_rev: str = field(
        default_factory=lambda: os.environ.get("BENCH_BASELINE_REV") or DEFAULT_BASELINE_REV)

    @classmethod
    def for_smoke(cls, **kw) -> Settings:
        return cls(smoke=True, duration=1, reps=1, warmup=0, latency_duration=1.0, latency_warmup=0.5,
                   latency_reps=1, seed_items=1000, cold_start_reps=1, project="items-bench-smoke",
                   out=BENCH / "results" / "tmp" / "smoke", **kw)
