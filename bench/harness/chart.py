"""bench/results/latest.png: throughput per endpoint, ours against both ceilings and through the
edge, this round against the baseline revision, and latency at a fixed rate, side by side.
matplotlib lives in bench/.venv (bench/requirements.txt); without it the run still writes its JSON
and Markdown."""

from __future__ import annotations

from pathlib import Path

from .analysis import Analysis
from .config import (APIS, BASELINE_COMPARISONS, BASELINE_SCENARIOS, CEILING, LATENCY_SCENARIOS, OURS_NO_AUTH,
                     OURS_NO_METRICS, SCENARIOS)
from .records import Results
from .shell import log

COLORS = {"ours": "#2b7bba", "flask": "#e08a2c", "fastapi": "#4c9a4c"}
NAMES = {"ours": "ours", "flask": "Flask peer", "fastapi": "FastAPI peer"}
WIDTH = 0.26


def _offsets(count: int, i: int) -> list[float]:
    """Bar positions of the i-th candidate in a group of three per x tick."""
    return [x + (i - 1) * WIDTH for x in range(count)]


def throughput_axes(ax, a: Analysis) -> None:
    for i, k in enumerate(APIS):
        stats = [a.throughput[s][k] for s in SCENARIOS] + [a.throughput_high[k]]
        values = [t.median for t in stats]
        below = [t.median - t.min for t in stats]
        above = [t.max - t.median for t in stats]
        ax.bar(_offsets(len(stats), i), values, WIDTH, yerr=[below, above], capsize=2,
               label=NAMES[k], color=COLORS[k])
    ax.set_xticks(range(len(SCENARIOS) + 1), [*SCENARIOS, "get c256"])
    ax.set_ylabel("req/s (median, min–max)")
    ax.set_title("Throughput, closed loop (wrk)")
    ax.legend()


def limits_axes(ax, a: Analysis) -> None:
    get = a.throughput["get"]
    bars = [("ceiling", get[CEILING].median), ("ours get", get["ours"].median),
            ("no keys", get[OURS_NO_AUTH].median), ("no metrics", get[OURS_NO_METRICS].median),
            ("via edge", get["ours_edge"].median), ("via edge\nHTTPS", get["ours_edge_tls"].median),
            ("pgbench\n-S", get["pgbench"].median)]
    colors = ["#999999", *[COLORS["ours"]] * 5, "#7a5cad"]
    drawn = ax.bar([n for n, _ in bars], [v for _, v in bars], color=colors)
    for bar in drawn[2:6]:
        bar.set_alpha(0.6)
    for bar, (_, v) in zip(drawn, bars, strict=True):
        ax.annotate(f"{v:,.0f}", (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("req/s or tps (log)")
    ax.set_title(f"Limits: ours ÷ ceiling {a.get_vs(CEILING):.2f}×, ÷ pgbench "
                 f"{a.get_vs('pgbench'):.3f}×, with a key ÷ without "
                 f"{a.comparison('auth_get_vs_off'):.2f}×, metrics on ÷ off "
                 f"{a.comparison('metrics_get_vs_off'):.2f}×;\n"
                 f"via the edge ÷ direct {a.comparison('edge_get_vs_direct'):.2f}×, "
                 f"÷ Flask peer via the edge {a.comparison('edge_get_vs_flask_edge'):.2f}×", fontsize=9)


def baseline_axes(ax, a: Analysis) -> None:
    """Ours ÷ the baseline revision per endpoint: req/s and API CPU per request (through the edge too)."""
    names = [*BASELINE_SCENARIOS, "get via\nedge"]
    rps = [a.vs_baseline(s) for s in BASELINE_SCENARIOS] + [a.comparison("baseline_edge_rps")]
    cpu = [a.cpu_vs_baseline(s) for s in BASELINE_SCENARIOS] + [a.comparison("baseline_edge_api_cpu")]
    xs = range(len(names))
    ax.bar([x - WIDTH / 2 for x in xs], rps, WIDTH, color=COLORS["ours"], label="req/s, ours ÷ baseline")
    ax.bar([x + WIDTH / 2 for x in xs], cpu, WIDTH, color="#b04a4a", label="API CPU/req, ours ÷ baseline")
    ax.axhline(1.0, color="#555555", linewidth=0.8)
    target = next(c for c in BASELINE_COMPARISONS if c.goal is not None)
    ax.axhline(target.goal, color="#b04a4a", linewidth=0.8, linestyle="--",
               label=f"target: get via edge, API CPU {target.goal_text}")
    ax.set_xticks(list(xs), names)
    ax.set_yscale("log")    # a ratio and its inverse equally far from 1
    ax.set_ylabel("ratio (1 = as at the baseline revision; log)")
    ax.set_title("This round ÷ the baseline revision")
    ax.legend(fontsize=7)


def latency_axes(ax, results: Results, a: Analysis) -> None:
    for i, k in enumerate(APIS):
        xs = _offsets(len(LATENCY_SCENARIOS), i)
        ax.bar(xs, [a.latency[s][k].p99_ms for s in LATENCY_SCENARIOS], WIDTH, color=COLORS[k], alpha=0.45,
               label=f"{NAMES[k]} p99")
        ax.bar(xs, [a.latency[s][k].p50_ms for s in LATENCY_SCENARIOS], WIDTH, color=COLORS[k],
               label=f"{NAMES[k]} p50")
    rates = results.latency_rates
    ax.set_xticks(range(len(LATENCY_SCENARIOS)),
                  [f"{s} @ {rates.get(s, 0):.0f}/s" for s in LATENCY_SCENARIOS])
    ax.set_yscale("log")
    ax.set_ylabel("ms (log)")
    ax.set_title("Latency at a fixed rate (open loop)")
    ax.legend(fontsize=7)


def chart(results: Results, a: Analysis, path: Path) -> bool:
    """Draw the three panels into `path`; False (and a log line) when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no chart (make bench installs it in bench/.venv)")
        return False
    fig, axes = plt.subplots(1, 4, figsize=(22, 5.2), gridspec_kw={"width_ratios": [2.2, 1.3, 1.5, 1.2]})
    throughput_axes(axes[0], a)
    limits_axes(axes[1], a)
    baseline_axes(axes[2], a)
    latency_axes(axes[3], results, a)
    fig.suptitle(f"Items API benchmark {results.started}  —  ours ÷ Flask peer: get "
                 f"{a.vs_peer('get', 'flask'):.2f}×, mix {a.vs_peer('mix', 'flask'):.2f}×;  ours ÷ FastAPI "
                 f"peer: get {a.vs_peer('get', 'fastapi'):.2f}×, mix {a.vs_peer('mix', 'fastapi'):.2f}×")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
