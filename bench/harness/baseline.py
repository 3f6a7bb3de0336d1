"""Ours at a baseline revision: the product's image as it was at an earlier commit, so that every run
says, endpoint by endpoint, what the changes since then cost or saved, measured side by side with
ours in the same repetitions (one run against another would compare two states of a shared machine).

The default revision is the commit before this round's first change (config.DEFAULT_BASELINE_REV);
BENCH_BASELINE_REV or `--baseline-rev` choose another. The image is built from a git worktree of
that commit, with that commit's own build/Dockerfile and build context, as `make build` built it
then. It is tagged by revision and labelled with its commit, so a second run finds it and does not
build again; the worktree lives in a temporary directory and is removed afterwards.

The container itself is a clone of compose's flask-api (containers.start_baseline): same limits,
settings, hardening, networks and database. The baseline's migrations are a subset of ours, so
it reads our tables as they are."""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from pathlib import Path

from .config import BASELINE_IMAGE_REPO
from .records import BaselineBuild
from .shell import log, run
from .stack import Stack

REVISION_LABEL = "org.opencontainers.image.revision"


def resolve(rev: str) -> tuple[str, str]:
    """The full commit `rev` names in this checkout, and its subject line."""
    r = run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], check=False)
    if r.returncode != 0:
        raise SystemExit(f"bench: baseline revision {rev!r} is not a commit of this checkout (a shallow "
                         "clone? fetch its history, or set BENCH_BASELINE_REV)")
    commit = r.stdout.strip()
    return commit, run(["git", "log", "-1", "--format=%s", commit]).stdout.strip()


def cached(stack: Stack, image: str, commit: str) -> bool:
    """Whether `image` exists and was built from `commit` (its revision label says so)."""
    r = stack.docker("image", "inspect", "--format", f'{{{{index .Config.Labels "{REVISION_LABEL}"}}}}',
                     image, check=False)
    return r.returncode == 0 and r.stdout.strip() == commit


def build(stack: Stack, commit: str, image: str) -> float:
    """Build `image` from a temporary git worktree of `commit`, with its own Dockerfile and context."""
    tmp = Path(tempfile.mkdtemp(prefix="items-bench-baseline-"))
    tree = tmp / "tree"
    run(["git", "worktree", "add", "--detach", str(tree), commit])
    try:
        started = time.monotonic()
        stack.buildx("-f", str(tree / "build" / "Dockerfile"), "--build-arg", f"REVISION={commit}",
                     "-t", image, str(tree))
        return time.monotonic() - started
    finally:
        run(["git", "worktree", "remove", "--force", str(tree)], check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def baseline_image(stack: Stack) -> BaselineBuild:
    """The baseline revision's image, built unless a run before already built it."""
    rev = stack.settings.baseline_rev
    commit, subject = resolve(rev)
    image = f"{BASELINE_IMAGE_REPO}:baseline-{commit[:12]}"
    seconds = math.nan
    if cached(stack, image, commit):
        log(f"baseline {rev} ({commit[:12]}): {image} is already built")
    else:
        seconds = build(stack, commit, image)
        log(f"baseline {rev} ({commit[:12]}): built {image} in {seconds:.1f} s")
    return BaselineBuild(rev, commit, subject, image, seconds)
