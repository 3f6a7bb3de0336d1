"""The tests' throwaway PostgreSQL cluster in a container, for machines without server binaries.

The same contract as pgcluster.Cluster (url, password, psql, pg_dump, start, stop, kill,
destroy), so the API and migration tests do not care where their database runs. It uses the
stack's own `postgres:18-trixie` image, published on a loopback port chosen once (it stays the
same across stop/start; the data lives in the image's anonymous volume, removed by
destroy()), with the same application role and schema as the stack's init script.
The docker client is the project's (tools/docker_cli.py): no extra library, and nothing else to
pull (testcontainers would want its Ryuk image from a registry).
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid

from pgcluster import APP_ROLE, DATABASE
from tools.docker_cli import Docker, docker_binary, free_port

IMAGE = os.environ.get("TEST_POSTGRES_IMAGE", "postgres:18-trixie")
READY_TIMEOUT = 120  # seconds; a first start runs initdb


class ContainerCluster:
    def __init__(self) -> None:
        binary = docker_binary()
        if not binary:
            raise RuntimeError("no PostgreSQL server binaries and no docker client: install either")
        self.docker = Docker(binary, timeout=120)
        self.name = f"items-test-pg-{uuid.uuid4().hex[:12]}"
        self.port = free_port()
        self.password = os.urandom(12).hex()
        superuser = os.urandom(12).hex()
        # The superuser's password reaches the container in its environment (as the image
        # wants); it never leaves this host, and the container goes away with the tests.
        self.docker("run", "--detach", "--name", self.name, "--label", "items-test=pgcontainer",
                    "-e", "POSTGRES_PASSWORD", "-p", f"127.0.0.1:{self.port}:5432",
                    IMAGE, "postgres", "-c", "fsync=off",
                    "-c", "max_connections=200",
                    env={**os.environ, "POSTGRES_PASSWORD": superuser})
        try:
            self._wait_ready()
            self.psql(f"CREATE DATABASE {DATABASE};", database="postgres")
            self.psql(f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD :'pw';\n"
                      f"CREATE SCHEMA {APP_ROLE} AUTHORIZATION {APP_ROLE};\n",
                      variables={"pw": self.password})
        except BaseException:
            self.destroy()
            raise

    def _wait_ready(self) -> None:
        """Until the server answers over TCP (during first-start init only the socket listens)."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            probe = self.docker("exec", self.name, "pg_isready", "-q", "-h", "127.0.0.1", "-U", "postgres",
                                check=False)
            if probe.returncode == 0:
                return
            time.sleep(0.3)
        logs = self.docker("logs", "--tail", "30", self.name, check=False)
        raise RuntimeError(f"{IMAGE} did not get ready in {READY_TIMEOUT} s:\n{logs.stdout}{logs.stderr}")

    def _exec(self, program: str, *args: str, script: str | None = None) -> str:
        return self.docker("exec", "-i", "-u", "postgres", self.name, program, *args, input=script).stdout

    def psql(self, script: str, *, database: str = DATABASE, variables: dict | None = None) -> str:
        args = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", database, "-At"]
        for name, value in (variables or {}).items():
            args += ["-v", f"{name}={value}"]
        return self._exec("psql", *args, script=script)

    def pg_dump(self, *args: str, database: str = DATABASE) -> str:
        """pg_dump's output, as the superuser over the container's socket (`args`: what to dump)."""
        return self._exec("pg_dump", "-U", "postgres", *args, database)

    @property
    def url(self) -> str:
        """The application's URL, without the password (that goes in a file)."""
        return f"postgresql://{APP_ROLE}@127.0.0.1:{self.port}/{DATABASE}"

    def start(self) -> None:
        self.docker("start", self.name)
        self._wait_ready()

    def stop(self, mode: str = "fast") -> None:
        # The image's stop signal is SIGINT: PostgreSQL's fast shutdown; "immediate" is SIGQUIT.
        if mode == "immediate":
            self.docker("kill", "--signal", "SIGQUIT", self.name, check=False)
        self.docker("stop", "--time", "30", self.name)

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would; start() recovers the cluster."""
        self.docker("kill", self.name)

    def destroy(self) -> None:
        try:
            self.docker("rm", "--force", "--volumes", self.name, check=False)
        except subprocess.TimeoutExpired:
            pass
