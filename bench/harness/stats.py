"""The arithmetic of repeated, alternating runs: medians that skip failed runs, ratios that stay
NaN when a side is missing, and the turn order that changes between repetitions."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

NAN = float("nan")


def median(values: Iterable[float | None]) -> float:
    """Median of the measured values: a failed run (NaN, None) counts as missing, not as zero."""
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(kept) if kept else NAN


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else NAN


def rotate(items: list, n: int) -> list:
    """`items` starting at position n (mod len): who goes first changes between repetitions."""
    n %= max(1, len(items))
    return items[n:] + items[:n]
