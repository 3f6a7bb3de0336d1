"""What `make up` and `make dev` check on this machine before Compose runs, and the way they find.

A newcomer's first `make up` should either work or say in one line what to do. Three things
stood between a fresh machine and a running stack, each with a known way round, so this script
takes it instead of leaving the newcomer to search the README:

1. No engine answers: nothing can work. Stop with one line naming `make engine` (.ci/engine.sh).
2. No EXTRA_CA_BUNDLE: behind a TLS-intercepting proxy pip inside the build fails certificate
   checks, although the host's own pip is already set up to trust the right CA. Use the CA the
   host's tools trust (pip's `cert` setting, PIP_CERT, REQUESTS_CA_BUNDLE, SSL_CERT_FILE) and
   say which. It reaches the build only as the BuildKit secret `extra_ca` (compose.yaml), never
   a layer.
3. An upstream image the stack builds on is missing and cannot be pulled (no registry, or a
   mirror without it): say so and build the local stand-in for exactly that image
   (tools/offline_images.py --only NAME), then go on.

Messages go to stderr; stdout carries only the CA bundle's path (empty for none), which the
Makefile passes to Compose as EXTRA_CA_BUNDLE.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tools.docker_cli import docker_binary
from tools.offline_images import RECIPES

ROOT = Path(__file__).resolve().parent.parent
NO_ENGINE = "no Docker engine answers: run `make engine` first (it provisions and starts one)"
# Where the host's tools look for extra CAs, in the order they are asked (after pip's `cert`).
CA_VARIABLES = ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")


class PreflightError(Exception):
    """Something this machine lacks that preflight cannot find a way round: one line for the user."""


@dataclass(frozen=True)
class CaChoice:
    """The CA bundle builds get, and where it came from (said to the user)."""

    path: str
    source: str


def choose_ca(env: Mapping[str, str], pip_cert: Callable[[], str | None]) -> CaChoice | None:
    """EXTRA_CA_BUNDLE when set; else the first existing file the host's tools are told to trust."""
    if env.get("EXTRA_CA_BUNDLE"):
        if not Path(env["EXTRA_CA_BUNDLE"]).is_file():
            raise PreflightError(f"EXTRA_CA_BUNDLE={env['EXTRA_CA_BUNDLE']} is not a file")
        return CaChoice(env["EXTRA_CA_BUNDLE"], "EXTRA_CA_BUNDLE")
    candidates = [("pip's configured cert", pip_cert)]
    candidates += [(name, lambda name=name: env.get(name)) for name in CA_VARIABLES]
    for source, lookup in candidates:
        path = lookup()
        if path and Path(path).is_file():
            return CaChoice(path, source)
    return None


def dotenv_value(path: Path, key: str) -> str | None:
    """KEY's value in a .env file (Compose reads it too), None when absent or commented out."""
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name.strip() == key:
            return value.strip().strip("'\"") or None
    return None


def pip_configured_cert() -> str | None:
    """`pip config get global.cert` of the host's Python (None when pip has no such setting)."""
    try:
        result = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.cert"],
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def image_action(image: str, present: Callable[[str], bool], pull: Callable[[str], bool]) -> str:
    """What to do for one upstream image: "present", "pulled", or "stand-in" (build it locally)."""
    if present(image):
        return "present"
    if pull(image):
        return "pulled"
    return "stand-in"


class Engine:
    """The docker client, asked the few questions preflight has."""

    def __init__(self, binary: str):
        self.binary = binary

    def ok(self, *args: str, timeout: float) -> bool:
        try:
            return subprocess.run([self.binary, *args], capture_output=True,
                                  timeout=timeout).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def answers(self) -> bool:
        return self.ok("info", timeout=30)

    def present(self, image: str) -> bool:
        return self.ok("image", "inspect", image, timeout=30)

    def pull(self, image: str) -> bool:
        return self.ok("pull", "--quiet", image, timeout=600)


def say(message: str) -> None:
    print(f"preflight: {message}", file=sys.stderr)


def ensure_images(engine: Engine, images: Mapping[str, str], ca: CaChoice | None) -> None:
    """Pull, or else build the stand-in for, each upstream image (name -> image) the engine lacks."""
    for name, image in images.items():
        action = image_action(image, engine.present, engine.pull)
        if action == "pulled":
            say(f"pulled {image}")
        elif action == "stand-in":
            say(f"{image} is not in the engine and cannot be pulled (no registry?): "
                "building its local stand-in (tools/offline_images.py)")
            cmd = [sys.executable, str(ROOT / "tools" / "offline_images.py"), "--only", name,
                   "--ca-bundle", ca.path if ca else ""]
            if subprocess.run(cmd, stdout=sys.stderr).returncode != 0:
                raise PreflightError(f"building the stand-in for {image} failed (see above)")


def main(images: Mapping[str, str] | None = None) -> int:
    binary = docker_binary()
    engine = Engine(binary) if binary else None
    try:
        if engine is None or not engine.answers():
            raise PreflightError(NO_ENGINE)
        env = dict(os.environ)
        if not env.get("EXTRA_CA_BUNDLE"):
            env["EXTRA_CA_BUNDLE"] = dotenv_value(ROOT / ".env", "EXTRA_CA_BUNDLE") or ""
        ca = choose_ca(env, pip_configured_cert)
        if ca and ca.source != "EXTRA_CA_BUNDLE":
            say(f"builds trust the CA bundle {ca.path} (from {ca.source}; a build secret, "
                "never in a layer; set EXTRA_CA_BUNDLE to choose another)")
        ensure_images(engine, images or {r.name: r.image for r in RECIPES}, ca)
    except PreflightError as exc:
        say(str(exc))
        return 1
    print(ca.path if ca else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
