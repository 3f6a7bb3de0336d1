"""The benchmark harness, end to end in about a minute: `make bench-smoke` (bench/run.py --smoke).

It runs every step of `make bench` (our prod stack with its edge and an API key, ours once more
without keys or metrics, ours at the baseline revision, both peers, the Flask peer behind the same
edge, the framework ceiling and the round-trip floor, pgbench, wrk over HTTP and HTTPS, the
fixed-rate generator, footprint, rebuild, writes in each backup mode, JSON/Markdown/PNG output) with
tiny durations, so that the harness cannot rot between full runs. It never asserts on a timing: on a
shared machine a one-second run means nothing. It does assert that everything ran, that every
candidate answered every request with a success status (through the edge too: its per-client limits
must not answer 429 to the benchmark's single address; ours: every request carried the run's key),
that the peers, ours without keys or metrics, ours at the baseline revision and every route through
an edge serve the same JSON as the API they stand for, and that the key is checked where it is sent.
BENCH_PROJECT names its compose project.

Needs a Docker engine with what the stack needs (the `docker` fixture: without one it skips,
except under CI=true); wrk is installed from Debian's packages when missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from support import unavailable

from tools.docker_cli import Docker

ROOT = Path(__file__).resolve().parents[2]
CANDIDATES = ("ours", "flask", "fastapi")
SCENARIOS = ("get", "list", "post", "patch", "mix")
EDGE_ROUTES = ("ours_edge", "ours_edge_tls", "flask_edge", "flask_edge_tls", "fastapi_edge")
EDGES = ("ours_edge", "flask_edge", "fastapi_edge")  # the edge containers, by their HTTP route
TWIN = "ours_twin"  # ours once more, nothing changed: the control of the two below
NO_AUTH = "ours_no_auth"  # ours once more with API_AUTH=off
BASELINE = "baseline"  # ours at the baseline revision
NO_METRICS = "ours_no_metrics"  # ours once more with METRICS=off (and a key)


@pytest.fixture(scope="module")
def smoke(docker: Docker, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    if not shutil.which("wrk") and os.geteuid() != 0:
        unavailable("wrk is missing and only root may install it")
    out = tmp_path_factory.mktemp("bench-smoke")
    env = {**os.environ, "PATH": f"{Path(docker.binary).parent}:{os.environ.get('PATH', '')}"}
    r = subprocess.run(
        ["make", "--no-print-directory", "bench-smoke", f"BENCH_ARGS=--out {out}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800, check=False,
    )
    print(r.stdout[-6000:])
    assert r.returncode == 0, f"make bench-smoke exited {r.returncode}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return json.loads((out / "latest.json").read_text()), out


def test_every_candidate_ran_every_scenario(smoke: tuple[dict, Path]) -> None:
    results, _ = smoke
    seen = {(r["candidate"], r["scenario"], r["connections"]) for r in results["runs"]}
    for key in CANDIDATES:
        for scenario in SCENARIOS:
            assert (key, scenario, 32) in seen
        assert (key, "get", 256) in seen
    for key in (TWIN, NO_AUTH, NO_METRICS, *EDGE_ROUTES, "ceiling", "roundtrip", "pgbench"):
        assert (key, "get", 32) in seen
    assert ("ours", "live", 32) in seen
    assert all(r.get("requests", 1) > 0 and r["rps"] > 0 for r in results["runs"])


def test_no_candidate_answered_with_an_error_status(smoke: tuple[dict, Path]) -> None:
    """Every POST, PATCH and GET got a 2xx: a harness or peer that drifted from the contract shows here.
    (Socket timeouts are not checked: they depend on how busy the machine is.)"""
    results, _ = smoke
    bad = [r for r in results["runs"] if r.get("error_detail", {}).get("status")]
    assert not bad, bad
    bad = [r for r in results["latency_runs"] if r["non_2xx"]]
    assert not bad, bad


def test_the_peers_and_the_edge_routes_serve_our_json(smoke: tuple[dict, Path]) -> None:
    results, _ = smoke
    assert results["contract_check"]["ok"], results["contract_check"]["problems"]


def test_ours_is_measured_with_a_key_beside_ours_without_keys(smoke: tuple[dict, Path]) -> None:
    """Without a key ours answers 401, directly and through its edge, and the clone with API_AUTH=off
    200; with the run's key every request to ours got a 2xx (above). The ratio is reported as a target."""
    results, _ = smoke
    without_key = results["contract_check"]["without_key"]
    assert without_key == {"ours": 401, "ours_edge": 401, "ours_edge_tls": 401, TWIN: 401, NO_AUTH: 200,
                           NO_METRICS: 401}
    assert "auth_get_vs_off" in results["analysis"]["ratios"]
    assert any("API_AUTH=off" in c["target"] for c in results["analysis"]["checks"])


def test_ours_is_measured_beside_ours_without_metrics(smoke: tuple[dict, Path]) -> None:
    """The clone with METRICS=off ran `get` in the same steps (above); ours ÷ it is a target (issue 18)."""
    results, _ = smoke
    assert "metrics_get_vs_off" in results["analysis"]["ratios"]
    assert any("METRICS=off" in c["target"] for c in results["analysis"]["checks"])


def test_through_the_edge_the_api_behind_it_did_the_work(smoke: tuple[dict, Path]) -> None:
    """Each route's runs counted CPU in the edge's container and in the API's behind it."""
    results, _ = smoke
    runs = [r for r in results["runs"] if r["candidate"] in EDGE_ROUTES]
    assert runs and all(r["cpu_us"] > 0 and r["upstream_cpu_us"] > 0 for r in runs)
    assert all(int(v) >= 65535 for v in results["edge_limit_settings"].values())


def test_fixed_rate_latency_footprint_and_connections_were_measured(smoke: tuple[dict, Path]) -> None:
    results, _ = smoke
    assert {(r["candidate"], r["scenario"]) for r in results["latency_runs"]} == {
        (k, s) for k in (*CANDIDATES, *EDGES) for s in ("get", "mix")
    }
    assert all(r["count"] > 0 for r in results["latency_runs"])
    fp = results["footprint"]
    assert set(fp["image_mb"]) == {"ours", "flask", "fastapi", "edge", "python_base",
                                   "python_base_plus_our_venv", BASELINE}
    for when in ("memory_idle_mib", "memory_load_mib", "memory_mib"):
        assert set(fp[when]) == {*CANDIDATES, *EDGES}
        assert all(v > 0 for v in fp[when].values()), when
    assert 0 < fp["docs_assets_mb"] < fp["image_mb"]["ours"]
    assert set(fp["cold_start_s"]) == set(CANDIDATES)
    assert {"cold_start_vs_flask", "cold_start_vs_fastapi"} <= set(results["analysis"]["ratios"])
    assert fp["rebuild_s"] > 0
    assert results["pg_connections"]["samples"] > 0
    assert results["pg_connections"]["ours"]["peak"] >= 1
    assert results["pool_budget"] >= 1


def test_ours_at_the_baseline_revision_took_its_turns_beside_ours(smoke: tuple[dict, Path]) -> None:
    """Built from a worktree of its commit and tagged by it, it ran every endpoint and /health/live on
    our data (its JSON equals ours: the contract check above), and the report compares this round with
    it per endpoint, with issue 19's CPU target."""
    results, out = smoke
    seen = {(r["candidate"], r["scenario"], r["connections"]) for r in results["runs"]}
    for scenario in (*SCENARIOS, "live"):
        assert (BASELINE, scenario, 32) in seen
    baseline = results["baseline"]
    assert baseline["image"] == f"items-api:baseline-{baseline['commit'][:12]}"
    ratios = results["analysis"]["ratios"]
    assert {"get_vs_baseline", "cpu_get_ours_vs_baseline", "live_vs_baseline",
            "baseline_edge_api_cpu"} <= set(ratios)
    assert any("the baseline revision" in c["target"] for c in results["analysis"]["checks"])
    assert "## This round against the baseline revision" in (out / "latest.md").read_text()


def test_writes_were_measured_in_every_backup_mode(smoke: tuple[dict, Path]) -> None:
    """Issue 16: ours's POST and PATCH with no backup service, with it streaming, with BACKUP_SYNC=on;
    the streaming ratio is a target, the sync ratio and the p99s are reported."""
    results, out = smoke
    seen = {(r["candidate"], r["scenario"]) for r in results["runs"]}
    assert {(f"ours_backup_{m}", s) for m in ("none", "streaming", "sync") for s in ("post", "patch")} <= seen
    assert {"backup_post_streaming_vs_none", "backup_patch_sync_vs_none"} <= set(results["analysis"]["ratios"])
    assert "## Backups" in (out / "latest.md").read_text()


def test_reports_are_written(smoke: tuple[dict, Path]) -> None:
    results, out = smoke
    md = (out / "latest.md").read_text()
    for heading in ("## Throughput", "## API keys", "## Through the edge", "## Against the machine's limits",
                    "## Latency at a fixed rate", "## Scaling", "## Footprint", "## Targets"):
        assert heading in md
    assert (out / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    checks = results["analysis"]["checks"]
    assert checks and all(isinstance(c["met"], bool) for c in checks)
    assert {"edge_get_vs_direct", "edge_get_vs_flask_edge"} <= set(results["analysis"]["ratios"])
