#!/usr/bin/env python3
"""`make bench`: the product against its peers and against this machine's limits, in one run.

What runs (see bench/README.md for the why of each choice):

* our prod stack (compose.yaml + compose.prod.yaml, own project name, free
  ports, own secrets), only the services `postgres` and `flask-api`;
* ours at a baseline revision (default: the commit before this round's first
  change; BENCH_BASELINE_REV or --baseline-rev), built from a git worktree of
  it and run like ours, against the same database;
* the two peers under bench/peers/, in containers with the same resource
  limits as our API container, against the same PostgreSQL and table;
* the framework ceiling: a constant Flask route in the product image, served
  by the product's own Granian settings (bench/ceiling/);
* the round-trip floor: the same route running one `SELECT 1` first, on a
  connection it holds;
* PostgreSQL's ceiling: `pgbench -S -M prepared` over TCP loopback, same
  concurrency.

Throughput is closed-loop (wrk), alternating candidates within each
repetition, medians over repetitions. Latency percentiles come from a
fixed-rate generator (bench/loadgen.py) at 70% of the slowest peer's
throughput. Load goes to 127.0.0.1 only: inside each container's network
namespace (nsenter, as root) or else through the port published on 127.0.0.1.

Results: <out>/latest.json, latest.md, latest.png; the ratios and how they
compare with the issue's targets are printed. Nothing here asserts on timings.
This file is the command line; the harness itself is the package bench/harness/.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from harness.comparison import compare
from harness.config import DEFAULT_BASELINE_REV, OUR_SETTINGS, Settings
from harness.report import print_summary, write_outputs
from harness.shell import log
from harness.tune import tune


def parse_env_overrides(items: list[str]) -> dict[str, str]:
    """KEY=VALUE settings of ours (spaces or commas between them; "defaults" or "-" for none)."""
    env: dict[str, str] = {}
    for item in items:
        if item.strip() in ("defaults", "-"):
            continue
        for part in item.replace(",", " ").split():
            k, sep, v = part.partition("=")
            if not sep or k not in (*OUR_SETTINGS, "IMAGE"):
                raise SystemExit(f"bench: --ours-env takes {', '.join(OUR_SETTINGS)} as KEY=VALUE, "
                                 f"got {part!r}")
            env[k] = v
    return env


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true",
                   help="seconds, not minutes: every step, tiny durations (CI)")
    p.add_argument("--out", type=Path,
                   help="results directory (default bench/results, smoke: bench/results/tmp/smoke)")
    p.add_argument("--duration", type=int, help="seconds per closed-loop run")
    p.add_argument("--reps", type=int, help="alternating repetitions")
    p.add_argument("--latency-duration", type=float)
    p.add_argument("--project", default=os.environ.get("BENCH_PROJECT"),
                   help="compose project name (default: $BENCH_PROJECT, else items-bench or items-bench-smoke)")
    p.add_argument("--ours-env", action="append", default=[],
                   help="product settings for our stack, e.g. 'WORKERS=2 BLOCKING_THREADS=2' (default: "
                        "the stack's own defaults; the same variables in the environment also count)")
    p.add_argument("--baseline-rev", help="the revision of ours to compare this round with (default: "
                   f"$BENCH_BASELINE_REV, else {DEFAULT_BASELINE_REV}); its image is built once and kept")
    p.add_argument("--no-build", action="store_true",
                   help="use the images as they are (the baseline revision's is still built if missing)")
    p.add_argument("--no-chart", action="store_true")
    p.add_argument("--keep", action="store_true", help="leave the containers running afterwards")
    p.add_argument("--tune", metavar="CONFIGS",
                   help="instead of the comparison: configurations of ours side by side, separated by ';', "
                        "e.g. 'WORKERS=1 BLOCKING_THREADS=4; WORKERS=2 BLOCKING_THREADS=2' (results: "
                        "tune.md); IMAGE=<tag> in a configuration runs another image")
    p.add_argument("--tune-scenarios", default="get,mix")
    p.add_argument("--tune-latency-rate", type=int, default=0, metavar="RPS",
                   help="with --tune: also GET /items/<id> at this fixed rate (p50/p99)")
    return p


def settings_from(args: argparse.Namespace, p: argparse.ArgumentParser) -> Settings:
    ours_env = {k: os.environ[k] for k in OUR_SETTINGS if os.environ.get(k)}
    ours_env.update(parse_env_overrides(args.ours_env))
    if "IMAGE" in ours_env:
        p.error("IMAGE= works with --tune only (the comparison always measures compose's own build)")
    kw = {"ours_env": ours_env, "keep": args.keep, "build": not args.no_build, "chart": not args.no_chart}
    s = Settings.for_smoke(**kw) if args.smoke else Settings(**kw)
    for name in ("out", "duration", "reps", "latency_duration", "project", "baseline_rev"):
        if getattr(args, name):
            setattr(s, name, getattr(args, name))
    return s


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    s = settings_from(args, p)
    if args.tune:
        variants = [parse_env_overrides([part]) for part in args.tune.split(";") if part.strip()]
        tune(s, variants, tuple(args.tune_scenarios.split(",")), args.tune_latency_rate)
        return 0
    log(f"{'smoke' if s.smoke else 'full'} run, project {s.project}, results in {s.out}")
    results = compare(s)
    print_summary(write_outputs(results, s.out, s.chart))
    log(f"done in {results.elapsed_s / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
