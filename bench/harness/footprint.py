"""What each candidate costs to ship and to start: image sizes (and the comparison image: the
Python base plus exactly our venv; and what the /docs page's files add to ours), memory (idle after
start, the most under load, after the run; the APIs' containers and the edges'), cold start from
`docker start` to the first 200 on /health/ready, and the rebuild of our image after one file under
app/ changed (on a copy of the build context: app/ itself is never touched)."""

from __future__ import annotations

import math
import shutil
import time
import uuid
from pathlib import Path

from .cgroup import memory_mib
from .config import (
    APIS,
    BASELINE,
    BASE_IMAGE,
    BENCH,
    COMPARISON_IMAGE,
    DOCS_PACKAGE,
    EDGE_IMAGE,
    EDGES,
    PEERS,
    REBUILD_IMAGE,
    ROOT,
)
from .records import NAN, Footprint, Run
from .shell import log, wait_http_ok
from .stack import Candidate, Stack
from .stats import median, rotate


def fmt_dict(d: dict, spec: str = ".0f") -> str:
    return ", ".join(f"{k} {v:{spec}}" for k, v in d.items())


def measured(stack: Stack) -> dict[str, Candidate]:
    """The containers whose memory is measured: the APIs', and the edges' (by their HTTP route)."""
    return {k: stack.candidates[k] for k in (*APIS, *EDGES.values()) if k in stack.candidates}


def memory(stack: Stack, when: str) -> dict[str, float]:
    """MiB each measured container uses now, less the inactive page cache (as `docker stats` shows it)."""
    mem = {k: memory_mib(c.memory) for k, c in measured(stack).items()}
    log(f"memory {when} (MiB): {fmt_dict(mem)}")
    return mem


def memory_under_load(stack: Stack, runs: list[Run]) -> dict[str, float]:
    """The most MiB each measured container used during any run against it (the edge: either route)."""
    peaks = {}
    for key, c in measured(stack).items():
        mine = {k for k, other in stack.candidates.items() if other.container == c.container}
        values = [r.memory_mib for r in runs if r.candidate in mine and r.memory_mib is not None]
        peaks[key] = max((v for v in values if not math.isnan(v)), default=NAN)
    log(f"memory under load, most (MiB): {fmt_dict(peaks)}")
    return peaks


def image_sizes(stack: Stack) -> dict[str, float]:
    """MB per image; ours is the image our API container runs (by id: its tag is shared), and so is
    the baseline revision's."""
    images = {"ours": stack.ours_info()["Image"], **{key: peer.image for key, peer in PEERS.items()},
              "edge": EDGE_IMAGE, "python_base": BASE_IMAGE, "python_base_plus_our_venv": COMPARISON_IMAGE,
              BASELINE: stack.docker.inspect(stack.candidates[BASELINE].container)["Image"]}
    sizes = {k: stack.docker.inspect(v)["Size"] / 1e6 for k, v in images.items()}
    log(f"image sizes (MB): {fmt_dict(sizes)}")
    return sizes


def docs_assets(stack: Stack) -> float:
    """MB that the /docs page's package (Swagger UI's JavaScript and CSS) takes in our image: measured
    inside it (bench/footprint/package_size.py), so ours without /docs is the image less this."""
    r = stack.docker("run", "--rm", "--network", "none", "-v", f"{BENCH / 'footprint'}:/bench:ro",
                     "--entrypoint", "python", stack.ours_info()["Image"], "-I", "/bench/package_size.py",
                     DOCS_PACKAGE, check=False, timeout=120)
    if r.returncode != 0 or not r.stdout.strip().isdigit():
        log(f"no size for {DOCS_PACKAGE} in our image: {r.stderr.strip()[-300:]}")
        return NAN
    mb = int(r.stdout.strip()) / 1e6
    log(f"/docs assets ({DOCS_PACKAGE}) in our image: {mb:.2f} MB")
    return mb


def cold_starts(stack: Stack, reps: int) -> dict[str, list[float]]:
    """Seconds from `docker start` to 200 on /health/ready, each API `reps` times, taking turns. A
    start that never gets ready counts as NaN (left out of the median) rather than losing the run."""
    times: dict[str, list[float]] = {k: [] for k in APIS}
    for rep in range(reps):
        for key in rotate(list(APIS), rep):
            c = stack.candidates[key]
            stack.docker("stop", "-t", "20", c.container, timeout=120)
            t = time.monotonic()
            stack.docker("start", c.container)
            try:
                wait_http_ok(c.ready_url, 60, interval=0.02)
                times[key].append(time.monotonic() - t)
            except RuntimeError as e:
                log(f"cold start of {key} failed: {e}")
                times[key].append(NAN)
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


def measure(stack: Stack, reps: int, fp: Footprint, runs: list[Run]) -> Footprint:
    """The rest of the footprint (`fp` has the idle memory), after the load: memory is read first,
    while the containers are warm."""
    fp.memory_load_mib = memory_under_load(stack, runs)
    fp.memory_mib = memory(stack, "after the run")
    fp.image_mb = image_sizes(stack)
    fp.docs_assets_mb = docs_assets(stack)
    fp.cold_start_all_s = cold_starts(stack, reps)
    fp.cold_start_s = {k: median(v) for k, v in fp.cold_start_all_s.items()}
    log(f"cold start, docker start to 200 on /health/ready (s): {fmt_dict(fp.cold_start_s, '.2f')}")
    fp.rebuild_s, fp.rebuild_unchanged_s = rebuild(stack)
    return fp
