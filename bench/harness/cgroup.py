"""CPU time a container spent, read from its cgroup's counter (v1 `cpuacct.usage` or v2 `cpu.stat`),
and the memory it uses now, counted as `docker stats` counts it.

Every API container has the same CPU limit, so the CPU a request costs bounds its throughput,
and it moves far less than req/s when other work shares the machine. Memory is read here rather
than through `docker stats` because it is sampled while load runs: a file read, not a client."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Self

NAN = float("nan")


def _mounts() -> list[list[str]]:
    return [line.split() for line in Path("/proc/self/mounts").read_text().splitlines()]


def _v1_counter(lines: list[str], mounts: list[list[str]], controller: str, name: str) -> Path | None:
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller not in controllers.split(","):
            continue
        for m in mounts:
            if m[2] == "cgroup" and controller in m[3].split(","):
                f = Path(m[1]) / path.lstrip("/") / name
                if f.exists():
                    return f
    return None


def _v2_counter(lines: list[str], mounts: list[list[str]], name: str) -> Path | None:
    for line in lines:
        if not line.startswith("0::"):
            continue
        for m in mounts:
            if m[2] == "cgroup2":
                f = Path(m[1]) / line[3:].lstrip("/") / name
                if f.exists():
                    return f
    return None


def _counter(pid: int, v1: tuple[str, str], v2: str) -> Path | None:
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        mounts = _mounts()
    except OSError:
        return None
    return _v1_counter(lines, mounts, *v1) or _v2_counter(lines, mounts, v2)


def cpu_counter(pid: int) -> Path | None:
    """The file that counts the CPU time of `pid`'s cgroup (a container), v1 or v2; None if unknown."""
    return _counter(pid, ("cpuacct", "cpuacct.usage"), "cpu.stat")


def memory_counter(pid: int) -> Path | None:
    """The file with the memory in use by `pid`'s cgroup (a container), v1 or v2; None if unknown."""
    return _counter(pid, ("memory", "memory.usage_in_bytes"), "memory.current")


def cpu_seconds(counter: Path | None) -> float:
    """CPU seconds so far on `counter`; NaN when it is unknown or gone."""
    if counter is None:
        return NAN
    try:
        text = counter.read_text()
    except OSError:
        return NAN
    if counter.name == "cpuacct.usage":
        return int(text) / 1e9
    for line in text.splitlines():
        if line.startswith("usage_usec "):
            return int(line.split()[1]) / 1e6
    return NAN


def memory_mib(counter: Path | None) -> float:
    """MiB in use on `counter` less the inactive page cache, as `docker stats` shows it; NaN if unknown."""
    if counter is None:
        return NAN
    try:
        usage = int(counter.read_text())
        stat = dict(line.split() for line in (counter.parent / "memory.stat").read_text().splitlines())
    except (OSError, ValueError):
        return NAN
    v1 = counter.name == "memory.usage_in_bytes"
    inactive = int(stat.get("total_inactive_file" if v1 else "inactive_file", 0))
    return (usage - inactive if inactive < usage else usage) / 2**20


class MemoryPeak:
    """The most memory (`memory_mib`) a container used while the `with` block ran, sampled every 0.2 s."""

    def __init__(self, counter: Path | None):
        self.counter = counter
        self.peak = NAN
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while True:
            value = memory_mib(self.counter)
            if not math.isnan(value):
                self.peak = value if math.isnan(self.peak) else max(self.peak, value)
            if self.counter is None or self._stop.wait(0.2):
                return

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
