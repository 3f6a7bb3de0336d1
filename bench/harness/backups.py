"""Issue 16's price of backups on writes: ours's POST and PATCH with no backup service, with the
backup service streaming WAL (as the stack ships) and with BACKUP_SYNC=on, in the same run.

The mode belongs to PostgreSQL (synchronous_standby_names, set on its command line from
BACKUP_SYNC), so the modes cannot run side by side like the other candidates: in each repetition
the stack is switched through them (`compose up` with BACKUP_SYNC changed recreates postgres and
the API; `stop` takes the backup service away), the order rotating, and each switch waits until
the WAL receiver streams as the mode wants and has caught up with what was written while it was
stopped. Runs are recorded as the candidate `backup_key(mode)`.
Last in the run: the containers it recreates are not the ones the other stages measured.
"""

from __future__ import annotations

import dataclasses
import time

from .config import BACKUP_MODES, BACKUP_SCENARIOS, backup_key
from .load import Load, log_run
from .records import Results
from .cgroup import cpu_counter
from .shell import log, wait_http_ok
from .stack import Stack
from .stats import rotate

RECEIVER = "barman_receive_wal"
# WAL not yet with the receiver, at most, before a mode is measured (an idle stack: nothing).
CAUGHT_UP_BYTES = 64 * 1024


def _receiver_state(stack: Stack) -> str:
    return stack.psql(f"SELECT sync_state FROM pg_stat_replication WHERE application_name = '{RECEIVER}'",
                      "postgres").strip()


def switch(stack: Stack, mode: str, timeout: float = 180) -> None:
    """The stack in `mode`: the backup service stopped, or streaming asynchronously or synchronously.

    PostgreSQL and the API are brought to the mode's BACKUP_SYNC first, "none" included: coming
    from "sync", a stopped backup service would otherwise leave every write waiting for it."""
    stack.env["BACKUP_SYNC"] = "on" if mode == "sync" else "off"
    r = stack.compose("up", "--detach", "--wait", "--wait-timeout", "240", "postgres", "flask-api", check=False)
    if r.returncode != 0:
        raise RuntimeError(f"compose up for backup mode {mode} failed:\n{r.stderr[-3000:]}")
    if mode == "none":
        stack.compose("stop", "backup")
    else:
        # Not `--wait` for the backup service: its health check is slow; its receiver is what counts.
        stack.compose("up", "--detach", "--no-deps", "backup")
    # Recreated when BACKUP_SYNC changed: PostgreSQL's CPU counter and ours follow the new containers.
    stack.pg_container = stack.compose("ps", "--quiet", "postgres").stdout.strip()
    stack.pg_cpu = cpu_counter(stack.docker.inspect(stack.pg_container)["State"]["Pid"])
    if mode != "none":
        _await_receiver(stack, "sync" if mode == "sync" else "async", timeout)
        _await_caught_up(stack, timeout)
        settle(stack)
    ours = stack.candidates["ours"]
    ours.container = stack.compose("ps", "--quiet", "flask-api").stdout.strip()
    ours.refresh(stack.docker)
    wait_http_ok(ours.ready_url, 60)


def _await_receiver(stack: Stack, wanted: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (state := _receiver_state(stack)) != wanted:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{RECEIVER} not streaming as {wanted!r} in {timeout:.0f} s (now {state!r})")
        time.sleep(1)


def _await_caught_up(stack: Stack, timeout: float) -> None:
    """Until the receiver has the WAL written while the backup service was stopped (the slot kept
    it): streaming that backlog is the price of the harness's switch, not of streaming."""
    deadline = time.monotonic() + timeout
    query = ("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), write_lsn)::bigint FROM pg_stat_replication "
             f"WHERE application_name = '{RECEIVER}'")
    while int(stack.psql(query, "postgres").strip() or CAUGHT_UP_BYTES + 1) > CAUGHT_UP_BYTES:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{RECEIVER} did not catch up with the WAL in {timeout:.0f} s")
        time.sleep(1)


def settle(stack: Stack, timeout: float = 120) -> None:
    """Until the backup service is healthy: before that its health check (`barman check`, a Python
    process) runs every 5 s instead of every 30 s, CPU that a running stack does not spend."""
    backup = stack.compose("ps", "--quiet", "backup").stdout.strip()
    deadline = time.monotonic() + timeout
    while stack.docker("inspect", "--format", "{{.State.Health.Status}}", backup,
                       check=False).stdout.strip() != "healthy":
        if time.monotonic() > deadline:
            log(f"  the backup service is not healthy after {timeout:.0f} s: measuring anyway")
            return
        time.sleep(2)


def first_base_backup(stack: Stack, timeout: float = 300) -> None:
    """The backup service takes a base backup when it first starts: not while we measure."""
    switch(stack, "streaming")
    deadline = time.monotonic() + timeout
    while not stack.compose("exec", "-T", "backup", "barman", "list-backups", "main", "--minimal",
                            check=False).stdout.strip():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no base backup in {timeout:.0f} s")
        time.sleep(2)


def measure(stack: Stack, load: Load, results: Results) -> None:
    s = stack.settings
    first_base_backup(stack)
    for rep in range(1, s.reps + 1):
        for mode in rotate(list(BACKUP_MODES), rep - 1):
            log(f"backups, repetition {rep}/{s.reps}: {mode}")
            switch(stack, mode)
            candidate = dataclasses.replace(stack.candidates["ours"], key=backup_key(mode))
            for scenario in BACKUP_SCENARIOS if s.warmup else ():  # a switch may have recreated the API
                load.wrk(candidate, scenario, s.connections, s.warmup)
            for scenario in BACKUP_SCENARIOS:
                r = load.wrk(candidate, scenario, s.connections, s.duration, rep)
                results.runs.append(r)
                log_run(r)
    switch(stack, "streaming")
