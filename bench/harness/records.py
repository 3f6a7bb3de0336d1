"""What a benchmark run measured, as typed records, and how they become latest.json.

The JSON keeps the field names of these records (tests/stack/test_bench_smoke.py and anyone comparing
runs read them); a field that does not apply to a record (pgbench has no latency) is left out."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from .config import Settings

NAN = float("nan")


@dataclass
class Run:
    """One closed-loop run: wrk against a candidate, or pgbench against PostgreSQL (`candidate` "pgbench")."""

    rep: int
    scenario: str
    candidate: str
    connections: int
    rps: float
    requests: int | None = None             # pgbench: not counted
    cpu_us: float | None = None             # CPU time of the candidate's container per request (cgroups)
    pg_cpu_us: float | None = None          # the same for PostgreSQL's container
    upstream_cpu_us: float | None = None    # through the edge: the same for the API's container behind it
    memory_mib: float | None = None         # the most memory the candidate's container used during the run
    errors: int = 0
    error_detail: dict[str, int] | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    failed: bool = False                    # no request completed, even when retried

    @classmethod
    def failure(cls, rep: int, scenario: str, candidate: str, connections: int) -> Run:
        return cls(rep, scenario, candidate, connections, rps=NAN, requests=0, cpu_us=NAN, pg_cpu_us=NAN,
                   error_detail={}, p50_ms=NAN, p99_ms=NAN, memory_mib=NAN, failed=True)


@dataclass
class LatencyRun:
    """One fixed-rate run of bench/loadgen.py against a candidate (its JSON output, field for field)."""

    rep: int
    candidate: str
    scenario: str
    rate: float
    duration_s: float
    connections: int
    count: int
    achieved_rps: float
    statuses: dict[str, int]
    errors: int
    socket_errors: int
    non_2xx: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float
    send_lag_p50_ms: float      # how late the generator itself sent requests
    send_lag_p99_ms: float


@dataclass
class Footprint:
    """Per container (the APIs, and the edges by their HTTP route's key): sizes, memory, start-up."""

    image_mb: dict[str, float] = field(default_factory=dict)
    docs_assets_mb: float = NAN         # of ours: the /docs page's package (config.DOCS_PACKAGE)
    memory_idle_mib: dict[str, float] = field(default_factory=dict)     # started, before any load
    memory_load_mib: dict[str, float] = field(default_factory=dict)     # most in any of its runs
    memory_mib: dict[str, float] = field(default_factory=dict)          # after the run
    cold_start_s: dict[str, float] = field(default_factory=dict)    # median
    cold_start_all_s: dict[str, list[float]] = field(default_factory=dict)
    rebuild_s: float = NAN              # after one file under app/ changed, warm cache
    rebuild_unchanged_s: float = NAN


@dataclass
class ConnectionPeak:
    """Most PostgreSQL connections a candidate held: in the whole run, and while under its own load."""

    peak: int
    under_own_load: dict[int, int] = field(default_factory=dict)     # connections of the load -> peak

    def to_json(self) -> dict:
        return {"peak": self.peak, **{f"peak_under_own_load_c{c}": n for c, n in self.under_own_load.items()}}


@dataclass
class PgConnections:
    samples: int = 0
    peaks: dict[str, ConnectionPeak] = field(default_factory=dict)   # candidate -> its peaks

    def to_json(self) -> dict:
        return {"samples": self.samples, **{key: p.to_json() for key, p in self.peaks.items()}}


@dataclass
class ContractCheck:
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    # `GET /items/<id>` without a key, status by candidate: 401 where a key is sent, 200 without auth.
    without_key: dict[str, int] = field(default_factory=dict)


@dataclass
class Machine:
    cpus: int | None
    cpu_model: str
    kernel: str
    docker: str
    wrk: str
    loadavg_at_start: list[float]


@dataclass
class BaselineBuild:
    """Ours at the baseline revision (harness/baseline.py): which commit, and its image."""

    rev: str            # as asked for (a tag, a short id...)
    commit: str
    subject: str
    image: str
    built_s: float = NAN    # NaN: a run before built it (the image is cached by revision)


@dataclass
class Limits:
    docker_run_options: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class Results:
    """Everything one run measured; `analysis` is added when it is written out."""

    started: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    settings: Settings
    runs: list[Run] = field(default_factory=list)
    latency_runs: list[LatencyRun] = field(default_factory=list)
    builds: dict[str, float] = field(default_factory=dict)           # image -> seconds
    footprint: Footprint = field(default_factory=Footprint)
    pg_connections: PgConnections = field(default_factory=PgConnections)
    limits: Limits = field(default_factory=Limits)                   # every API container's
    edge_limits: Limits = field(default_factory=Limits)              # every edge container's
    edge_limit_settings: dict[str, str] = field(default_factory=dict)    # the edges' per-client limits
    peer_limit_overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    contract_check: ContractCheck = field(default_factory=ContractCheck)
    baseline: BaselineBuild | None = None
    ours_config: dict[str, str] = field(default_factory=dict)
    pool_budget: int | None = None
    machine: Machine | None = None
    load_path: str = ""
    latency_rates: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def runs_of(self, candidate: str, scenario: str, connections: int) -> list[Run]:
        return [r for r in self.runs
                if r.candidate == candidate and r.scenario == scenario and r.connections == connections]

    def latency_runs_of(self, candidate: str, scenario: str | None = None) -> list[LatencyRun]:
        return [r for r in self.latency_runs
                if r.candidate == candidate and (scenario is None or r.scenario == scenario)]


def to_json(value: Any) -> Any:
    """`value` as JSON-ready data: records by their fields (None left out) or their own `to_json`."""
    if hasattr(value, "to_json"):
        return value.to_json()
    if is_dataclass(value):
        present = {f.name: getattr(value, f.name) for f in fields(value)}
        return {name: to_json(v) for name, v in present.items() if v is not None}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(to_json(data), indent=2) + "\n")
