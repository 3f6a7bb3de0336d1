"""What each candidate costs to ship and to start: image sizes (and the comparison image: the
Python base plus exactly our venv), memory after the run, cold start from `docker start` to the
first 200 on /health/ready, and the rebuild of our image after one file under app/ changed
(on a copy of the build context: app/ itself is never touched)."""

from __future__ import annotations

import re
import shutil
import time
import uuid
from pathlib import Path

from .config import APIS, BASE_IMAGE, COMPARISON_IMAGE, OUR_IMAGE, PEERS, REBUILD_IMAGE, ROOT
from .records import NAN, Footprint
from .shell import Docker, log, wait_http_ok
from .stack import Stack
from .stats import median, rotate

# `docker stats` units, in MiB.
SIZE_UNITS = {"B": 1 / 2**20, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024, "kB": 1e3 / 2**20, "KB": 1e3 / 2**20,
              "MB": 1e6 / 2**20, "GB": 1e9 / 2**20}


def parse_size(text: str) -> float:
    """MiB of a size as `docker stats` prints it ("92.4MiB")."""
    m = re.match(r"\s*([0-9.]+)\s*([KMGT]?i?B)", text)
    if not m:
        return NAN
    return float(m.group(1)) * SIZE_UNITS.get(m.group(2), 1)


def fmt_dict(d: dict, spec: str = ".0f") -> str:
    return ", ".join(f"{k} {v:{spec}}" for k, v in d.items())


def memory(stack: Stack) -> dict[str, float]:
    """MiB each API container uses now (`docker stats`)."""
    names = {c.container: k for k, c in stack.candidates.items() if k != "ceiling"}
    r = stack.docker("stats", "--no-stream", "--format", "{{.ID}}|{{.Name}}|{{.MemUsage}}", *names)
    mem = {}
    for line in r.stdout.splitlines():
        cid, name, usage = line.split("|")
        key = names.get(name) or next(k for c, k in names.items() if c.startswith(cid) or cid.startswith(c))
        mem[key] = parse_size(usage.split("/")[0])
    log(f"memory after the run (MiB): {fmt_dict(mem)}")
    return mem


def image_sizes(docker: Docker) -> dict[str, float]:
    images = {"ours": OUR_IMAGE, **{key: peer.image for key, peer in PEERS.items()},
              "python_base": BASE_IMAGE, "python_base_plus_our_venv": COMPARISON_IMAGE}
    sizes = {k: docker.inspect(v)["Size"] / 1e6 for k, v in images.items()}
    log(f"image sizes (MB): {fmt_dict(sizes)}")
    return sizes


def cold_starts(stack: Stack, reps: int) -> dict[str, list[float]]:
    """Seconds from `docker start` to 200 on /health/ready, each API `reps` times, taking turns."""
    times: dict[str, list[float]] = {k: [] for k in APIS}
    for rep in range(reps):
        for key in rotate(list(APIS), rep):
            c = stack.candidates[key]
            stack.docker("stop", "-t", "20", c.container, timeout=120)
            t = time.monotonic()
            stack.docker("start", c.container)
            wait_http_ok(c.ready_url, 60, interval=0.02)
            times[key].append(time.monotonic() - t)
            c.refresh(stack.docker)
    return times


def context_copy(ctx: Path) -> Path:
    """A copy of what build/Dockerfile's context holds (the .dockerignore allowlist and the Dockerfile)."""
    ctx.mkdir(parents=True)
    shutil.copytree(ROOT / "app", ctx / "app", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(ROOT / "build", ctx / "build")
    (ctx / "requirements").mkdir()
    shutil.copy2(ROOT / "requirements" / "prod.txt", ctx / "requirements" / "prod.txt")
    shutil.copy2(ROOT / ".dockerignore", ctx / ".dockerignore")
    return ctx


def rebuild(stack: Stack) -> tuple[float, float]:
    """Seconds to rebuild our image with a warm cache: after one file under app/ changed, and unchanged."""
    ctx = context_copy(stack.tmp / "rebuild-context")
    args = ("-f", "build/Dockerfile", "-t", REBUILD_IMAGE, str(ctx))
    t = time.monotonic()
    stack.buildx(*args)
    unchanged = time.monotonic() - t
    target = ctx / "app" / "health.py"
    target.write_text(target.read_text() + f"\n# benchmark rebuild marker {uuid.uuid4().hex}\n")
    t = time.monotonic()
    stack.buildx(*args)
    changed = time.monotonic() - t
    stack.docker("image", "rm", REBUILD_IMAGE, check=False)
    log(f"rebuild after changing app/health.py: {changed:.1f} s (nothing changed: {unchanged:.1f} s)")
    return changed, unchanged


def measure(stack: Stack, reps: int) -> Footprint:
    """The whole footprint, after the load (memory is read first, while the containers are warm)."""
    fp = Footprint(memory_mib=memory(stack), image_mb=image_sizes(stack.docker))
    fp.cold_start_all_s = cold_starts(stack, reps)
    fp.cold_start_s = {k: median(v) for k, v in fp.cold_start_all_s.items()}
    log(f"cold start, docker start to 200 on /health/ready (s): {fmt_dict(fp.cold_start_s, '.2f')}")
    fp.rebuild_s, fp.rebuild_unchanged_s = rebuild(stack)
    return fp
