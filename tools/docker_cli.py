"""The docker command line as the tests, the benchmark and tools/swarm.py run it.

They all drive the engine through the `docker` client (with its Compose and buildx plugins), as a
person would type it, and need the same three things: to find the client, to run it from the
checkout with a time limit, and, when a command fails, to say which one and what it printed. One
module, so that a failure reads the same everywhere. Each caller decides what a missing client
means: the tests skip (or fail under CI=true), the benchmark and tools/swarm.py stop with their
own message.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ENGINE_CLIENT = Path("/opt/docker-engine/usr/bin/docker")  # where .ci/engine.sh unpacks the client
TAIL = 3000  # characters of each output stream a failure shows


def docker_binary() -> str | None:
    """The docker client: $DOCKER, else the one on PATH, else .ci/engine.sh's; None without one."""
    found = os.environ.get("DOCKER") or shutil.which("docker")
    if not found and ENGINE_CLIENT.exists():
        found = str(ENGINE_CLIENT)
    return found


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 now (the kernel's pick), for something to listen on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DockerError(RuntimeError):
    """A docker command that exited non-zero: the command, its status and the tails of its output."""

    def __init__(self, args: tuple[str, ...], result: subprocess.CompletedProcess):
        self.command = args
        self.returncode = result.returncode
        self.stdout = result.stdout or ""
        self.stderr = result.stderr or ""
        super().__init__(f"docker {' '.join(args)} exited {self.returncode}\n"
                         f"{self.stdout[-TAIL:]}\n{self.stderr[-TAIL:]}")


class Docker:
    """`docker(*args)` runs the client from `cwd` and returns the finished process.

    Output is captured as text unless `capture=False` (then it goes to the terminal). With
    `check` (the default) a non-zero exit raises DockerError. `env` replaces the environment,
    for one call or for every call of this client; `timeout` (seconds) likewise.
    """

    def __init__(self, binary: str, *, env: dict[str, str] | None = None, cwd: Path = ROOT,
                 timeout: float = 600):
        self.binary = binary
        self.env = env
        self.cwd = cwd
        self.timeout = timeout

    def __call__(self, *args: str, check: bool = True, timeout: float | None = None,
                 env: dict[str, str] | None = None, input: str | None = None,
                 capture: bool = True) -> subprocess.CompletedProcess:
        stream = subprocess.PIPE if capture else None
        result = subprocess.run([self.binary, *args], input=input, text=True, stdout=stream, stderr=stream,
                                env=env if env is not None else self.env, cwd=self.cwd,
                                timeout=timeout if timeout is not None else self.timeout)
        if check and result.returncode != 0:
            raise DockerError(args, result)
        return result

    def json(self, *args: str) -> Any:
        """The command's output read as one JSON document (None for no output)."""
        return json.loads(self(*args).stdout or "null")

    def inspect(self, obj: str) -> dict:
        """`docker inspect` of one object (container, image, network...)."""
        return self.json("inspect", obj)[0]

    def lines(self, *args: str) -> list[str]:
        """The command's output lines, blank ones left out."""
        return [line for line in self(*args).stdout.splitlines() if line.strip()]
