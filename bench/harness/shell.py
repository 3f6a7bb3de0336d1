"""Running commands (docker above all) and asking 127.0.0.1 over HTTP: what every step does, once.

A failed command raises with the tail of its output, so that a broken step says why."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .config import ROOT

sys.path.insert(0, str(ROOT))  # run as bench/run.py, bench/ is on the path: the checkout too, for tools/
from tools import docker_cli  # noqa: E402
from tools.docker_cli import free_port  # noqa: E402,F401  (the harness's free ports come from here)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list[str], *, check: bool = True, timeout: float = 600, env: dict | None = None,
        cwd: Path = ROOT) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd, check=False)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}\n{(r.stdout or '')[-3000:]}\n"
                           f"{(r.stderr or '')[-3000:]}")
    return r


class Docker(docker_cli.Docker):
    """The docker client (tools/docker_cli.py): `docker("ps")` runs it; `inspect` reads an object."""

    def __init__(self) -> None:
        binary = docker_cli.docker_binary()
        if not binary:
            raise SystemExit("bench: no docker client ($DOCKER, PATH or /opt/docker-engine; see .ci/engine.sh)")
        super().__init__(binary)


def http_status(url: str, timeout: float = 1.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, ValueError):
        return None


def get_json(url: str, timeout: float = 10, context: ssl.SSLContext | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict | None]:
    """Status and JSON body of a GET (HTTPS verified with `context`); the body is None for an error status."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout,
                                    context=context) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, None


def wait_http_ok(url: str, timeout: float, interval: float = 0.02) -> float:
    """Seconds until `url` answers 200; raises after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if http_status(url) == 200:
            return time.monotonic() - started
        time.sleep(interval)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f} s")
