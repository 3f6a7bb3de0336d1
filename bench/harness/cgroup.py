"""CPU time a container spent, read from its cgroup's counter (v1 `cpuacct.usage` or v2 `cpu.stat`).

Every API container has the same CPU limit, so the CPU a request costs bounds its throughput,
and it moves far less than req/s when other work shares the machine."""

from __future__ import annotations

from pathlib import Path

NAN = float("nan")


def _mounts() -> list[list[str]]:
    return [line.split() for line in Path("/proc/self/mounts").read_text().splitlines()]


def _v1_counter(lines: list[str], mounts: list[list[str]]) -> Path | None:
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "cpuacct" not in controllers.split(","):
            continue
        for m in mounts:
            if m[2] == "cgroup" and "cpuacct" in m[3].split(","):
                f = Path(m[1]) / path.lstrip("/") / "cpuacct.usage"
                if f.exists():
                    return f
    return None


def _v2_counter(lines: list[str], mounts: list[list[str]]) -> Path | None:
    for line in lines:
        if not line.startswith("0::"):
            continue
        for m in mounts:
            if m[2] == "cgroup2":
                f = Path(m[1]) / line[3:].lstrip("/") / "cpu.stat"
                if f.exists():
                    return f
    return None


def cpu_counter(pid: int) -> Path | None:
    """The file that counts the CPU time of `pid`'s cgroup (a container), v1 or v2; None if unknown."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        mounts = _mounts()
    except OSError:
        return None
    return _v1_counter(lines, mounts) or _v2_counter(lines, mounts)


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
