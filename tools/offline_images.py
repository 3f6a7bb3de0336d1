#!/usr/bin/env python3
"""Build local stand-ins for the upstream images this stack uses, without any registry.

The build machines reach the Debian archive and PyPI but no container registry, so
`docker pull` is impossible. This script builds images that honour the contracts the stack
relies on and tags them under the upstream names, so Dockerfiles (`FROM python:3.14-slim-trixie`)
and Compose files use them without pulling:

    python:3.14-slim-trixie    Debian sid's python3.14 (+ venv, headers, pip on PATH)
    postgres:18-trixie         Debian sid's postgresql-18 with our own docker-entrypoint.sh
    dpage/pgadmin4:9.18        pgadmin4 9.18 + gunicorn from PyPI in /venv, our /entrypoint.sh
    nginx:1.30-trixie          Debian sid's nginx (the 1.30 stable line) with our entrypoint scripts
    offline-images/barman:3    Debian sid's barman + postgresql-client-18 as uid 999 (no official
                               image exists to stand in for; the backup service builds FROM it)
    prom/prometheus:v3.5.3     Debian sid's prometheus (+ promtool) as upstream lays it out, nobody
    prometheuscommunity/postgres-exporter:v0.19.1   Debian sid's prometheus-postgres-exporter, nobody
    nginx/nginx-prometheus-exporter:1.5.1           Debian sid's prometheus-nginx-exporter, 1001:1001

The recipes are files, one folder per image under tools/images/ (see its README.md), so hadolint
and shellcheck read them like every other Dockerfile and script; this script only orchestrates.
All are built FROM one Debian sid (minbase) root filesystem made with debootstrap, with
tools/images/base/ copied over it, and imported as `offline-images/debian-sid:<hash>`; its
tarball is cached (default /var/cache/offline-images) so later runs skip debootstrap. Every
image carries the label `offline-images.recipe` = sha256 of its folder's files and build
arguments (the base image among them); an image whose label matches is left alone, whatever
else holds the tag. Use --force to rebuild anyway. (The sid archive moves on: --refresh-base
runs debootstrap again and rebuilds every stand-in.)

Requirements: root, debootstrap, a running Docker engine with the buildx plugin
(`bash .ci/engine.sh` provisions both), Python 3.11+ (standard library only).

Usage:
    python3 tools/offline_images.py                  build what is missing or stale
    python3 tools/offline_images.py --list           show present / stale / missing
    python3 tools/offline_images.py --only postgres  build one (python | postgres | pgadmin | nginx | barman |
                                                     prometheus | postgres-exporter | nginx-exporter)
    python3 tools/offline_images.py --force          rebuild even if up to date
    python3 tools/offline_images.py --pgadmin-tag    print the pgAdmin tag (9.18) and exit
Options: --cache-dir DIR (base tarball + build logs), --mirror URL (Debian archive; default: the
host's apt source), --ca-bundle FILE (CA bundle handed to pip inside builds as the BuildKit secret
`extra_ca`, never stored in a layer; default /etc/ssl/certs/ca-certificates.crt; '' for none),
--refresh-base (debootstrap again, then rebuild all).

Differences from upstream worth knowing: Python is Debian's build (prefix /usr, with symlinks
in /usr/local/bin, headers in /usr/include/python3.14 (also linked from /usr/local/include);
`pip install` as root goes to /usr/local/lib/python3.14/dist-packages), so a Dockerfile that
copies /usr/local into another image gets symlinks, not an interpreter;
there is no PYTHON_VERSION / PG_VERSION / GOSU_VERSION env; pgAdmin runs from the PyPI wheel
(no postfix, no setcap'd python: Docker's default net.ipv4.ip_unprivileged_port_start=0 lets
uid 5050 bind port 80) and its upgrade check is off (no outside network here).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PGADMIN_VERSION = "9.18"  # what PyPI serves (`pip index versions pgadmin4`); tag of the stand-in
PGADMIN_TAG = PGADMIN_VERSION
PYTHON_IMAGE = "python:3.14-slim-trixie"
POSTGRES_IMAGE = "postgres:18-trixie"
NGINX_IMAGE = "nginx:1.30-trixie"  # the stable line; the edge's Dockerfile starts FROM it
# No official Barman image exists: a local name, not a stand-in for an upstream one.
BARMAN_IMAGE = "offline-images/barman:3"  # the backup service's Dockerfile starts FROM it
PGADMIN_IMAGE = f"dpage/pgadmin4:{PGADMIN_TAG}"
# The monitoring profile's images, at the versions Debian sid ships (Prometheus' 3.5 LTS line).
PROMETHEUS_IMAGE = "prom/prometheus:v3.5.3"
POSTGRES_EXPORTER_IMAGE = "prometheuscommunity/postgres-exporter:v0.19.1"
NGINX_EXPORTER_IMAGE = "nginx/nginx-prometheus-exporter:1.5.1"

LABEL = "offline-images.recipe"
BASE_REPO = "offline-images/debian-sid"
DEFAULT_CACHE = Path("/var/cache/offline-images")
DEFAULT_CA = "/etc/ssl/certs/ca-certificates.crt"
SECRET_ID = "extra_ca"  # the id the pgadmin Dockerfile mounts (and the project's Compose secret)
REPO_ROOT = Path(__file__).resolve().parent.parent
RECIPES_DIR = REPO_ROOT / "tools" / "images"
BASE_DIR = RECIPES_DIR / "base"  # copied over the debootstrap tree, path for path
SOURCES_FILE = "etc/apt/sources.list.d/debian.sources"  # its {mirror} is filled in
BASE_PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEBOOTSTRAP = ["debootstrap", "--variant=minbase", "sid"]


@dataclass(frozen=True)
class Recipe:
    """One stand-in: its folder under tools/images/ (the build context) and the tag it gets."""

    name: str
    image: str
    build_args: tuple[tuple[str, str], ...] = ()

    @property
    def folder(self) -> Path:
        return RECIPES_DIR / self.name


RECIPES = (
    Recipe("python", PYTHON_IMAGE),
    Recipe("postgres", POSTGRES_IMAGE),
    Recipe("pgadmin", PGADMIN_IMAGE, (("PGADMIN_VERSION", PGADMIN_VERSION),)),
    Recipe("nginx", NGINX_IMAGE),
    Recipe("barman", BARMAN_IMAGE),
    Recipe("prometheus", PROMETHEUS_IMAGE),
    Recipe("postgres-exporter", POSTGRES_EXPORTER_IMAGE),
    Recipe("nginx-exporter", NGINX_EXPORTER_IMAGE),
)
IMAGES = {r.name: r.image for r in RECIPES}

START = time.monotonic()


class BuildError(Exception):
    pass


def step(msg: str) -> None:
    print(f"[offline-images {time.monotonic() - START:5.0f}s] {msg}", flush=True)


def folder_hash(folder: Path, *extra: str) -> str:
    """sha256 of every file under `folder` (path, executable bit, content), then of `extra`."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        mode = "x" if path.stat().st_mode & 0o111 else "-"
        h.update(f"{path.relative_to(folder).as_posix()}\0{mode}\0".encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    for part in extra:
        h.update(part.encode() + b"\0")
    return h.hexdigest()


def run(cmd: list[str], log: Path | None = None) -> subprocess.CompletedProcess:
    """Run a command; its output goes to `log` (appended) or is captured."""
    if log is None:
        return subprocess.run(cmd, check=False, text=True, capture_output=True)
    with open(log, "a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        return subprocess.run(cmd, check=False, text=True, stdout=fh, stderr=subprocess.STDOUT)


def run_logged(what: str, cmd: list[str], log: Path) -> None:
    """Run a command into `log`; on failure raise with the log's last lines."""
    if run(cmd, log).returncode == 0:
        return
    tail = log.read_text(errors="replace").splitlines()[-40:] if log.exists() else []
    raise BuildError(f"{what} failed; last lines of {log}:\n" + "\n".join(tail))


def host_mirror() -> str:
    """The Debian archive the host's apt uses (the only one this machine may reach)."""
    sources = [(Path("/etc/apt/sources.list.d/debian.sources"), r"URIs:\s*(\S+)"),
               (Path("/etc/apt/sources.list"), r"deb\s+(?:\[[^]]*\]\s+)?(\S+)")]
    for path, pattern in sources:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            m = re.match(pattern, line)
            if m and "security" not in m.group(1):
                return m.group(1)
    return "http://deb.debian.org/debian"


def image_label(image: str) -> str | None:
    """The recipe label of a local image; None if the image does not exist."""
    r = run(["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", image])
    if r.returncode != 0:
        return None
    labels = json.loads(r.stdout.strip() or "null") or {}
    return labels.get(LABEL, "")


def image_id(image: str) -> str:
    return run(["docker", "image", "inspect", "--format", "{{.Id}}", image]).stdout.strip()


def drop_replaced(old_id: str, image: str) -> None:
    """Remove the image a tag named before a rebuild (docker keeps it if a container uses it)."""
    if old_id and old_id != image_id(image):
        run(["docker", "image", "rm", old_id])


def configure_rootfs(root: Path, mirror: str) -> None:
    """Lay tools/images/base over a fresh debootstrap tree and strip what must not be imaged."""
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    for src in sorted(p for p in BASE_DIR.rglob("*") if p.is_file()):
        dest = root / src.relative_to(BASE_DIR)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dest)  # content and mode
    sources = root / SOURCES_FILE
    sources.write_text(sources.read_text().replace("{mirror}", mirror))
    # No package lists, .debs or host network settings in the image.
    for pattern in ("var/lib/apt/lists/*", "var/cache/apt/*.bin",
                    "var/cache/apt/archives/*.deb", "var/log/*.log"):
        for p in root.glob(pattern):
            if p.is_file():
                p.unlink()
    (root / "etc/resolv.conf").write_text("")
    (root / "etc/hostname").write_text("")


class Builder:
    def __init__(self, args: argparse.Namespace):
        self.cache = Path(args.cache_dir)
        self.logs = self.cache / "logs"
        self.mirror = args.mirror or host_mirror()
        self.ca = args.ca_bundle
        self.refresh_base = args.refresh_base
        self.force = args.force or args.refresh_base  # a new base means new stand-ins
        # The base recipe: everything that shapes the root filesystem.
        self.base_hash = folder_hash(BASE_DIR, *DEBOOTSTRAP, self.mirror, BASE_PATH_ENV)
        self.base_image = f"{BASE_REPO}:{self.base_hash[:12]}"
        self.base_tar = self.cache / f"debian-sid-minbase-{self.base_hash[:12]}.tar"

    def build_args(self, recipe: Recipe) -> list[str]:
        return [f"{k}={v}" for k, v in (("BASE", self.base_image), *recipe.build_args)]

    def digest(self, recipe: Recipe) -> str:
        return folder_hash(recipe.folder, *self.build_args(recipe))

    # -- base -----------------------------------------------------------------------------
    def ensure_base(self) -> None:
        if not self.refresh_base and image_label(self.base_image) == self.base_hash:
            step(f"base {self.base_image}: up to date")
            return
        self.logs.mkdir(parents=True, exist_ok=True)
        if self.refresh_base or not self.base_tar.exists():
            self.debootstrap()
        step(f"base: importing {self.base_tar.name} as {self.base_image}")
        old_id = image_id(self.base_image)
        r = run(["docker", "import",
                 "--change", f"ENV PATH={BASE_PATH_ENV}",  # Dockerfiles extend $PATH
                 "--change", 'CMD ["bash"]',
                 "--change", f"LABEL {LABEL}={self.base_hash}",
                 str(self.base_tar), self.base_image])
        if r.returncode != 0:
            raise BuildError(f"docker import failed: {r.stderr.strip()}")
        drop_replaced(old_id, self.base_image)

    def debootstrap(self) -> None:
        if os.geteuid() != 0:
            raise BuildError("debootstrap needs root")
        if not shutil.which("debootstrap"):
            raise BuildError("debootstrap is missing: run `bash .ci/engine.sh` "
                             "(or apt-get install debootstrap)")
        log = self.logs / "debootstrap.log"
        log.write_text("")
        root = Path(tempfile.mkdtemp(prefix="rootfs-", dir=self.cache))
        try:
            step(f"base: {' '.join(DEBOOTSTRAP)} from {self.mirror} (log: {log})")
            run_logged("debootstrap", [*DEBOOTSTRAP, str(root), self.mirror], log)
            step(f"base: laying {BASE_DIR.relative_to(REPO_ROOT)} over it")
            configure_rootfs(root, self.mirror)
            step(f"base: writing {self.base_tar}")
            tmp_tar = self.base_tar.with_suffix(".tar.part")
            run_logged("tar", ["tar", "--numeric-owner", "-C", str(root), "-cf", str(tmp_tar), "."],
                       log)
            tmp_tar.rename(self.base_tar)
            for old in self.cache.glob("debian-sid-minbase-*.tar"):
                if old != self.base_tar:
                    old.unlink()  # tarballs of earlier base recipes
        finally:
            shutil.rmtree(root, ignore_errors=True)

    # -- stand-ins -----------------------------------------------------------------------
    def build(self, recipe: Recipe) -> None:
        image, digest = recipe.image, self.digest(recipe)
        current = image_label(image)
        if current == digest and not self.force:
            step(f"{image}: up to date (recipe {digest[:12]})")
            return
        why = "forced" if current == digest else ("missing" if current is None else "stale")
        old_id = image_id(image)
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{recipe.name}.log"
        log.write_text("")
        cmd = ["docker", "buildx", "build", "--load", "--progress=plain",
               "--label", f"{LABEL}={digest}", "-t", image]
        for arg in self.build_args(recipe):
            cmd += ["--build-arg", arg]
        if self.ca:
            cmd += ["--secret", f"id={SECRET_ID},src={self.ca}"]
        if self.force:
            cmd.append("--no-cache")
        t0 = time.monotonic()
        step(f"{image}: building {recipe.folder} ({why}; log: {log})")
        run_logged(f"building {image}", [*cmd, str(recipe.folder)], log)
        step(f"{image}: built in {time.monotonic() - t0:.0f}s (recipe {digest[:12]})")
        drop_replaced(old_id, image)

    def stale(self, recipe: Recipe) -> bool:
        return self.force or image_label(recipe.image) != self.digest(recipe)

    def status(self) -> list[str]:
        """One line per image (the base first): present / stale / missing."""
        base = "present" if image_label(self.base_image) == self.base_hash else "missing"
        cached = "cached" if self.base_tar.exists() else "not cached"
        lines = [f"{base:8} {self.base_image:28} (tarball {cached})"]
        for recipe in RECIPES:
            digest, current = self.digest(recipe), image_label(recipe.image)
            state = "missing" if current is None else ("present" if current == digest else "stale")
            lines.append(f"{state:8} {recipe.image:28} recipe {digest[:12]}")
        return lines


def check_engine() -> None:
    if not shutil.which("docker"):
        raise BuildError("no docker client on PATH")
    if run(["docker", "info"]).returncode != 0:
        raise BuildError("no Docker engine answers: run `bash .ci/engine.sh` first "
                         "(and `. /opt/docker-engine/env.sh`)")
    if run(["docker", "buildx", "version"]).returncode != 0:
        raise BuildError("the docker buildx plugin is missing (needed for RUN --mount): "
                         "run `bash .ci/engine.sh`")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Build offline stand-ins for upstream images.",
                                epilog="See the module docstring for details.")
    p.add_argument("--only", choices=sorted(IMAGES) + sorted(IMAGES.values()), metavar="NAME",
                   help="build only this one: " + ", ".join(IMAGES) + " (or its image name)")
    p.add_argument("--list", action="store_true", help="show which images are present/stale/missing")
    p.add_argument("--force", action="store_true", help="rebuild even if the recipe label matches")
    p.add_argument("--refresh-base", action="store_true", help="run debootstrap again (implies --force)")
    p.add_argument("--cache-dir", default=os.environ.get("OFFLINE_IMAGES_CACHE", str(DEFAULT_CACHE)),
                   help=f"base tarball and build logs (default {DEFAULT_CACHE})")
    p.add_argument("--mirror", help="Debian archive URL (default: the host's apt source)")
    p.add_argument("--ca-bundle", default=DEFAULT_CA if Path(DEFAULT_CA).exists() else "",
                   help="CA bundle for pip inside builds, passed as a BuildKit secret ('' for none)")
    p.add_argument("--pgadmin-tag", action="store_true", help="print the pgAdmin tag and exit")
    return p.parse_args(argv)


def build_all(args: argparse.Namespace) -> list[Recipe]:
    """Build the chosen stand-ins that are missing or stale (the base first, if any is)."""
    check_engine()
    builder = Builder(args)
    if args.list:
        print("\n".join(builder.status()))
        return []
    chosen = [r for r in RECIPES if not args.only or args.only in (r.name, r.image)]
    if any(builder.stale(r) for r in chosen):
        builder.ensure_base()
    for recipe in chosen:
        builder.build(recipe)
    return chosen


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.pgadmin_tag:
        print(PGADMIN_TAG)
        return 0
    if args.ca_bundle and not Path(args.ca_bundle).is_file():
        print(f"offline-images: error: --ca-bundle {args.ca_bundle} is not a file", file=sys.stderr)
        return 2
    try:
        built = build_all(args)
    except BuildError as exc:
        print(f"offline-images: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("offline-images: interrupted", file=sys.stderr)
        return 130
    if built:
        step("done: " + ", ".join(r.image for r in built))
    return 0


if __name__ == "__main__":
    sys.exit(main())
