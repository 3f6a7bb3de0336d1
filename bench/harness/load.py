"""Load, and what it measured: wrk (closed loop, bench/wrk/bench.lua builds the requests),
bench/loadgen.py (a fixed rate, for latency) and pgbench (PostgreSQL's own ceiling).

Load goes to 127.0.0.1 only: as root, inside each container's network namespace (nsenter)
against the container's own loopback, which keeps Docker's userland proxy out of every
candidate's numbers alike; otherwise through the port published on 127.0.0.1.

A candidate that needs an API key (ours, directly and through its edge) gets it in every request:
the generators read it from their environment (BENCH_API_KEY), never from their command line."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid

from .cgroup import MemoryPeak, cpu_seconds
from .config import BENCH, PG_IMAGE
from .records import LatencyRun, Run
from .shell import log, run
from .stack import Candidate, Stack

WRK_ERRORS = ("connect", "read", "write", "status", "timeout")


def ensure_wrk() -> str:
    """wrk's path; as root, Debian's package is installed when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("installing wrk from Debian's packages")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-q"], env=env, timeout=300)
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "wrk"], env=env, timeout=300)
        found = shutil.which("wrk")
    if not found:
        raise SystemExit("bench: wrk is missing (apt-get install wrk)")
    return found


def log_run(r: Run) -> None:
    errs = f", {r.errors} errors" if r.errors else ""
    errs += ", FAILED" if r.failed else ""
    log(f"  rep {r.rep} {r.scenario:<6} c{r.connections:<3} {r.candidate:<8} {r.rps:9.0f} req/s{errs}")


def log_latency_run(r: LatencyRun) -> None:
    log(f"  rep {r.rep} {r.scenario:<4} @ {r.rate:g}/s {r.candidate:<8} p50 {r.p50_ms:7.2f} ms  p99 "
        f"{r.p99_ms:7.2f} ms  ({r.count} requests, {r.errors} errors, "
        f"generator lag p99 {r.send_lag_p99_ms:.2f} ms)")


class Load:
    def __init__(self, stack: Stack):
        self.stack = stack
        self.wrk_binary = ensure_wrk()
        self.nsenter = shutil.which("nsenter") if os.geteuid() == 0 else None
        self.run_tag = uuid.uuid4().hex[:8]   # makes POSTed names unique to this run

    @property
    def path(self) -> str:
        """How load reaches the candidates, for the report."""
        return ("nsenter into each container's network namespace, 127.0.0.1" if self.nsenter
                else "ports published on 127.0.0.1")

    @staticmethod
    def env(c: Candidate, **settings: str) -> dict[str, str]:
        """The environment of a generator run against `c`: `settings`, and its API key if it needs one."""
        env = {k: v for k, v in os.environ.items() if k != "BENCH_API_KEY"}
        if c.api_key:
            env["BENCH_API_KEY"] = c.api_key
        return {**env, **settings}

    def in_netns(self, c: Candidate) -> tuple[list[str], int]:
        """Command prefix and port for load on 127.0.0.1: the container's own loopback if we can."""
        if self.nsenter and c.pid:
            return [self.nsenter, "-t", str(c.pid), "-n", "--"], c.port
        return [], c.host_port

    def wrk(self, c: Candidate, scenario: str, connections: int, duration: int, rep: int = 0) -> Run:
        """One closed-loop run; a candidate that is not there (restarted, gone) is a failed run, not a crash.
        A run that fails while its container still runs is tried once more."""
        try:
            return self._wrk_once(c, scenario, connections, duration, rep)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            docker = self.stack.docker
            state = docker("inspect", "-f", "{{.State.Status}} {{.State.Pid}}", c.container, check=False)
            log(f"  {c.key} {scenario}: wrk failed ({str(e).strip().splitlines()[-1][:200]}); container: "
                f"{state.stdout.strip() or 'gone'}")
            if state.returncode == 0 and state.stdout.startswith("running"):
                c.refresh(docker)
                try:
                    return self._wrk_once(c, scenario, connections, duration, rep)
                except (RuntimeError, subprocess.TimeoutExpired):
                    pass
            return Run.failure(rep, scenario, c.key, connections)

    def _wrk_once(self, c: Candidate, scenario: str, connections: int, duration: int, rep: int) -> Run:
        prefix, port = self.in_netns(c)
        lo, hi = self.stack.id_range
        env = self.env(c, BENCH_SCENARIO=scenario, BENCH_ID_MIN=str(lo), BENCH_ID_MAX=str(hi),
                       BENCH_TAG=f"b{self.run_tag}-{c.key}-{uuid.uuid4().hex[:6]}")
        cmd = [*prefix, self.wrk_binary, "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "5s",
               "-s", str(BENCH / "wrk" / "bench.lua"), f"{c.scheme}://127.0.0.1:{port}"]
        # CPU of the candidate's container, of the API behind it (through the edge) and of PostgreSQL.
        counters = (c.cpu, c.upstream.cpu if c.upstream else None, self.stack.pg_cpu)
        before = [cpu_seconds(counter) for counter in counters]
        with MemoryPeak(c.memory) as memory:
            r = run(cmd, env=env, timeout=duration + 60)
        api_cpu, upstream_cpu, pg_cpu_s = (cpu_seconds(counter) - b for counter, b in zip(counters, before,
                                                                                            strict=True))
        m = re.search(r"^BENCH_RESULT (\{.*\})$", r.stdout, re.MULTILINE)
        if not m:
            raise RuntimeError(f"no result from wrk:\n{r.stdout}\n{r.stderr}")
        data = json.loads(m.group(1))
        if not data["requests"]:  # seen once: a peer that answered nothing for a whole run, no error either
            raise RuntimeError(f"wrk completed no request in {duration} s:\n{r.stdout[-1500:]}")
        seconds = data["duration_us"] / 1e6
        n = max(1, data["requests"])
        return Run(rep, scenario, c.key, connections, rps=data["requests"] / seconds if seconds else 0.0,
                   requests=data["requests"], cpu_us=api_cpu / n * 1e6, pg_cpu_us=pg_cpu_s / n * 1e6,
                   upstream_cpu_us=upstream_cpu / n * 1e6 if c.upstream else None,
                   errors=sum(data[k] for k in WRK_ERRORS), error_detail={k: data[k] for k in WRK_ERRORS},
                   p50_ms=data["p50_us"] / 1000, p99_ms=data["p99_us"] / 1000, memory_mib=memory.peak)

    def pgbench(self, connections: int, duration: int, rep: int = 0) -> Run:
        """`pgbench -S -M prepared` over TCP loopback, from a container in PostgreSQL's network namespace."""
        stack = self.stack
        r = stack.docker("run", "--rm", "--network", f"container:{stack.pg_container}",
                         "-e", f"PGPASSWORD={stack.secrets['postgres_password']}", "--entrypoint", "pgbench",
                         PG_IMAGE, "-h", "127.0.0.1", "-U", "postgres", "-S", "-M", "prepared", "-n",
                         "-c", str(connections), "-j", "2", "-T", str(duration), "pgbench",
                         timeout=duration + 120)
        m = re.search(r"tps = ([0-9.]+)", r.stdout)
        if not m:
            raise RuntimeError(f"no tps from pgbench:\n{r.stdout}\n{r.stderr}")
        failed = re.search(r"number of failed transactions: (\d+)", r.stdout)
        return Run(rep, "get", "pgbench", connections, rps=float(m.group(1)),
                   errors=int(failed.group(1)) if failed else 0)

    def loadgen(self, c: Candidate, scenario: str, rate: float, rep: int) -> LatencyRun:
        """One fixed-rate run of bench/loadgen.py (settings: the latency durations)."""
        s = self.stack.settings
        prefix, port = self.in_netns(c)
        lo, hi = self.stack.id_range
        cmd = [*prefix, sys.executable, str(BENCH / "loadgen.py"), "--port", str(port),
               "--rate", str(rate), "--duration", str(s.latency_duration),
               "--warmup", str(s.latency_warmup), "--scenario", scenario,
               "--id-min", str(lo), "--id-max", str(hi),
               "--tag", f"l{self.run_tag}-{c.key}-{rep}-{scenario}"]
        timeout = s.latency_duration + s.latency_warmup + 120
        out = json.loads(run(cmd, env=self.env(c), timeout=timeout).stdout)
        return LatencyRun(rep=rep, candidate=c.key, **out)
