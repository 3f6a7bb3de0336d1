"""A throwaway PostgreSQL cluster: from the machine's server binaries, else in a container.

initdb into a temporary directory, its own port and socket directory, a
password-protected application role that owns its schema (as in the
container stack), and removal at the end. PostgreSQL refuses to run as root,
so when the tests run as root the server runs as the ``postgres`` user.

Without server binaries (none installed, or PG_BINDIR pointing where there are none),
`new_cluster()` gives the same cluster in a throwaway container of the stack's own
`postgres:18-trixie` image (pgcontainer.py), so `make test` needs only Python and Docker.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tools.docker_cli import free_port

APP_ROLE = "app"
DATABASE = "appdb"


def server_bindir() -> Path | None:
    """PG_BINDIR when it holds initdb, else the newest installed server's; None without one."""
    if os.environ.get("PG_BINDIR"):
        bindir = Path(os.environ["PG_BINDIR"])
        return bindir if (bindir / "initdb").exists() else None
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[-3])
    )
    return Path(found[-1]).parent if found else None


def new_cluster() -> "Cluster":
    """A Cluster from the local server binaries when there are any, else a ContainerCluster."""
    if server_bindir():
        return Cluster()
    from pgcontainer import ContainerCluster

    return ContainerCluster()


class Cluster:
    def __init__(self) -> None:
        bindir = server_bindir()
        if bindir is None:
            raise RuntimeError("no PostgreSQL server binaries (apt-get install postgresql), or set PG_BINDIR")
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="items-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.password = os.urandom(12).hex()
        self._user = None
        if os.geteuid() == 0:
            self._user = pwd.getpwnam("postgres")
            os.chown(self.dir, self._user.pw_uid, self._user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth-local=trust",
                  "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.dir}'\nfsync = off\n"
                "max_connections = 200\n"
            )
        self.start()
        self.psql(
            f"CREATE DATABASE {DATABASE};",
            database="postgres",
        )
        # The password goes on stdin as a psql variable, never in a command line.
        self.psql(
            f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD :'pw';\n"
            f"CREATE SCHEMA {APP_ROLE} AUTHORIZATION {APP_ROLE};\n",
            variables={"pw": self.password},
        )

    def _run(self, program: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / program), *args]
        if self._user:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, **kwargs)

    def psql(self, script: str, *, database: str = DATABASE, variables: dict | None = None) -> str:
        args = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.dir), "-p", str(self.port),
                "-U", "postgres", "-d", database, "-At"]
        for name, value in (variables or {}).items():
            args += ["-v", f"{name}={value}"]
        return self._run("psql", *args, input=script).stdout

    def pg_dump(self, *args: str, database: str = DATABASE) -> str:
        """pg_dump's output, as the superuser over the socket (`args`: what to dump)."""
        return self._run("pg_dump", "-h", str(self.dir), "-p", str(self.port), "-U", "postgres",
                         *args, database).stdout

    @property
    def url(self) -> str:
        """The application's URL, without the password (that goes in a file)."""
        return f"postgresql://{APP_ROLE}@127.0.0.1:{self.port}/{DATABASE}"

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would; start() recovers the cluster."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            # Backends notice the postmaster is gone and exit; until they have,
            # the shared memory is still in use and a new postmaster refuses to start.
            if subprocess.run(["pgrep", "-u", "postgres" if self._user else str(os.getuid()),
                               "-f", f"-p {self.port}|{self.data}"], capture_output=True).returncode:
                break
            time.sleep(0.1)

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
