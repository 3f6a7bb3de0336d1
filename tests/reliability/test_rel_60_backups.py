"""Backups (issue #16): the drills that prove the backup service's WAL stream and base backups
bring the data back, with `make restore`'s own script (tools/restore.sh), against the real stack.

Drill 1, the volume is gone: writers run; a base backup is taken while they run (it must cost
no failed request); more writes; then, writers still running, PostgreSQL is killed, its
container removed and the data volume deleted. tools/restore.sh (YES=1) brings the stack back
from the backup service. RPO: acknowledged writes missing afterwards, and how old the oldest
of them was at the destruction (streaming: at most the last second). RTO: destruction to the
API serving again.

Drill 2, a bad statement: items written, then deleted by mistake at T, then more written;
tools/restore.sh with TARGET_TIME = T - 1 s brings every deleted item back, and the writes
after T are gone, as they should be.

Both drills run in both backup modes (the `mode` fixture): asynchronous streaming (the default)
and BACKUP_SYNC=on, where the backup service is a synchronous standby and drill 1 must lose no
acknowledged write at all. The sync variants run smaller (RELIABILITY_SCALE makes both bigger).
In sync mode, writes with the backup service stopped must fail fast (503) and resume by
themselves when it returns, while reads go on.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import requests
from reliability_load import STORED_ROWS, WriteLoad, compare_writes
from reliability_support import Results, recording_session, scaled

ROOT = Path(__file__).resolve().parents[2]


def compose_command(stack) -> str:
    """The stack's `docker compose ...` as tools/restore.sh takes it (COMPOSE)."""
    files = " ".join(f"-f {ROOT / f}" for f in ("compose.yaml", "compose.prod.yaml"))
    return f"{stack.docker.binary} compose --env-file {stack.env_file} -p {stack.project} {files}"


def restore(stack, target: str = "") -> str:
    """tools/restore.sh as `make restore YES=1 [TARGET_TIME=...]` runs it; its output."""
    r = subprocess.run(["sh", str(ROOT / "tools" / "restore.sh"), target], cwd=ROOT, text=True,
                       capture_output=True, timeout=900,
                       env={**stack.env, "COMPOSE": compose_command(stack), "YES": "1"})
    print(r.stdout, r.stderr[-3000:], sep="\n")
    assert r.returncode == 0, f"restore failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def base_backup(stack, timeout: float = 180) -> None:
    """`make backup`; retried while the backup service is busy or not streaming yet."""
    deadline = time.monotonic() + timeout
    while True:
        r = stack.compose("exec", "-T", "backup", "barman", "backup", "main", "--wait",
                          "--wait-timeout", "120", check=False, timeout=200)
        if r.returncode == 0:
            return
        assert time.monotonic() < deadline, f"no base backup in {timeout:.0f} s:\n{r.stdout[-2000:]}{r.stderr[-2000:]}"
        time.sleep(3)


# What each mode is called in the results, and its BACKUP_SYNC; the sync drills' share of the size.
MODES = {"streaming": "off", "sync": "on"}
SYNC_SIZE = 0.4
RECEIVER = "barman_receive_wal"


def switch_backup_sync(stack, ops, value: str) -> None:
    """BACKUP_SYNC=value, as a user would: .env changed, `make up` (postgres and the API are
    recreated); then wait until the backup service's receiver streams in that mode."""
    if stack.env.get("BACKUP_SYNC", "off") == value:
        return
    stack.env["BACKUP_SYNC"] = value
    ops.psql.close()
    stack.up()
    wanted = "sync" if value == "on" else "async"
    deadline = time.monotonic() + 90
    while (state := ops.psql.query(f"SELECT sync_state FROM pg_stat_replication "
                                   f"WHERE application_name = '{RECEIVER}'").strip()) != wanted:
        assert time.monotonic() < deadline, f"{RECEIVER} not streaming as {wanted!r} in 90 s (now {state!r})"
        time.sleep(1)
    ops.api_ok(60)


@pytest.fixture(scope="module", params=list(MODES))
def mode(request, stack, ops) -> str:
    """The backup mode the test runs in (the tests of one mode run together; the stack goes back
    to the default, streaming, at the end)."""
    switch_backup_sync(stack, ops, MODES[request.param])
    yield request.param
    switch_backup_sync(stack, ops, "off")


def sized(mode: str, base: float) -> int:
    return int(scaled(base * (SYNC_SIZE if mode == "sync" else 1), minimum=5))


def test_drill_1_data_volume_destroyed_while_writers_run(stack, ops, bodies, row, mode):
    base_backup(stack)  # the backup service streams before the drill starts
    volume = next(m["Name"] for m in ops.inspect("postgres")["Mounts"] if m["Destination"] == "/var/lib/postgresql")
    with WriteLoad(stack.api_url, stack.api_key, bodies, clients=2, max_seconds=600) as load:
        load.wait_acks(sized(mode, 50))
        during_backup = time.monotonic()
        base_backup(stack)
        after_backup = time.monotonic()
        load.wait_acks(sized(mode, 50), after=after_backup)
        ops.psql.close()
        stack.compose("kill", "postgres")
        destroyed = time.monotonic()
        stack.compose("rm", "--force", "--stop", "flask-api", "postgres")
        stack.docker("volume", "rm", volume)
        output = restore(stack)
        healthy = ops.api_ok(120)
        load.wait_acks(5, after=healthy, timeout=60)
    outcomes = load.outcomes
    failed_during_backup = [o for o in outcomes if during_backup <= o.started and o.ended <= after_backup
                            and not o.acked]
    rows = json.loads(ops.psql.query(STORED_ROWS.format(prefix=load.prefix), timeout=60))
    writes = compare_writes(outcomes, rows)
    stored = {r["name"] for r in rows}
    lost = [o for o in outcomes if o.acked and o.name not in stored]
    oldest_age = max((destroyed - o.ended for o in lost), default=0.0)
    result = row(
        f"Backups drill 1 ({mode}): data volume destroyed while writers run, `make restore`",
        requests=len(outcomes), statuses=load.statuses(), no_answer=load.no_answer(),
        acked=writes["acked"], acked_lost=writes["acked_lost"],
        recovery=f"RTO {healthy - destroyed:.1f} s (destruction to API healthy)",
        details={"RPO": f"{writes['acked_lost']} acknowledged writes lost"
                        + (f", the oldest acknowledged {oldest_age:.3f} s before the destruction" if lost else ""),
                 "base backup while writers ran": f"{len(failed_during_backup)} failed requests",
                 "make restore": next((line.split("]: ", 1)[-1] for line in output.splitlines() if "done:" in line), "")},
    )
    Results.show(result)
    assert not failed_during_backup, [(o.status, o.error) for o in failed_during_backup[:5]]
    if mode == "sync":
        assert not lost, f"BACKUP_SYNC=on lost {len(lost)} acknowledged writes: {writes['examples']}"
    assert oldest_age <= 1.0, f"acknowledged writes older than 1 s were lost: {writes['examples']}"
    assert writes["acked_mismatch"] == writes["half_written"] == writes["unknown"] == 0, writes


def test_drill_2_bad_delete_undone_by_point_in_time_restore(stack, ops, bodies, row, mode):
    tally: Counter = Counter()
    api = recording_session(bodies, tally, stack.api_url)
    api.headers["Authorization"] = f"Bearer {stack.api_key}"
    prefix = f"drill2-{uuid.uuid4().hex[:10]}-"
    base_backup(stack)
    created = []
    for n in range(sized(mode, 30)):
        r = api.post("/items", json={"name": f"{prefix}{n}", "price": n + 0.5, "quantity": n})
        assert r.status_code == 201, r.text
        created.append(r.json())
    time.sleep(1.5)
    mistake = ops.psql.query(f"DELETE FROM app.items WHERE starts_with(name, '{prefix}') "
                             "RETURNING (now() - interval '1 second')::text").splitlines()
    deleted, target = len(mistake), mistake[0]
    after = api.post("/items", json={"name": f"{prefix}after", "price": 1, "quantity": 1})
    assert after.status_code == 201, after.text
    ops.psql.close()
    started = time.monotonic()
    restore(stack, target)
    healthy = ops.api_ok(120)
    back = [api.get(f"/items/{item['id']}") for item in created]
    restored = sum(r.status_code == 200 and r.json() == item for r, item in zip(back, created))
    gone = api.get(f"/items/{after.json()['id']}").status_code
    result = row(
        f"Backups drill 2 ({mode}): a bad DELETE, `make restore TARGET_TIME=<T - 1 s>`",
        requests=sum(tally.values()),
        statuses={str(k): v for k, v in sorted(tally.items(), key=str) if isinstance(k, int)},
        no_answer={k: v for k, v in tally.items() if isinstance(k, str)},
        acked=len(created), acked_lost=len(created) - restored,
        recovery=f"RTO {healthy - started:.1f} s (restore started to API healthy)",
        details={"deleted by mistake": f"{deleted} items, all {restored} back" if restored == deleted
                 else f"{deleted} items, only {restored} back",
                 "write after T": "gone (404)" if gone == 404 else f"still there ({gone})"},
    )
    Results.show(result)
    assert deleted == len(created)
    assert restored == len(created), f"{len(created) - restored} deleted items did not come back"
    assert gone == 404, "a write made after the bad DELETE survived a restore to before it"


def reads_while(stop: threading.Event, api: requests.Session, url: str, statuses: Counter) -> None:
    while not stop.is_set():
        try:
            statuses[api.get(url, timeout=10).status_code] += 1
        except requests.RequestException as e:
            statuses[type(e).__name__] += 1
        time.sleep(0.1)


@pytest.mark.parametrize("mode", ["sync"], indirect=True)
def test_sync_mode_writes_fail_fast_while_the_backup_service_is_down_and_resume(stack, ops, row, mode):
    """BACKUP_SYNC=on, the backup service stopped: every write is answered 503 problem+json within
    DB_SYNC_COMMIT_TIMEOUT (plus slack), never a 2xx; reads keep their 200s; once the service is
    started again (its `barman cron` restarts the receiver), writes succeed again by themselves."""
    bound = float(ops.setting("DB_SYNC_COMMIT_TIMEOUT", "5")) + 3
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {stack.api_key}"
    item = api.post(stack.api_url + "/items", json={"name": f"sync-{uuid.uuid4().hex}", "price": 1}, timeout=30)
    assert item.status_code == 201, item.text
    reads: Counter = Counter()
    stop = threading.Event()
    reader = threading.Thread(target=reads_while, args=(stop, api, f"{stack.api_url}/items/{item.json()['id']}", reads))
    stack.compose("stop", "backup")
    reader.start()
    writes: Counter = Counter()
    slowest = 0.0
    try:
        for n in range(sized(mode, 10)):
            started = time.monotonic()
            r = api.post(stack.api_url + "/items", json={"name": f"sync-down-{uuid.uuid4().hex}", "price": n},
                         timeout=60)
            slowest = max(slowest, time.monotonic() - started)
            writes[r.status_code] += 1
            assert r.status_code == 503 and r.headers["Content-Type"] == "application/problem+json", r.text
        stack.compose("start", "backup")
        returned = time.monotonic()
        while (r := api.post(stack.api_url + "/items", json={"name": f"sync-up-{uuid.uuid4().hex}", "price": 1},
                             timeout=60)).status_code != 201:
            writes[r.status_code] += 1
            assert r.status_code == 503 and time.monotonic() - returned < 90, f"writes did not resume: {r.text}"
            time.sleep(0.5)
        resumed = time.monotonic() - returned
    finally:
        stop.set()
        reader.join(timeout=15)
        stack.compose("start", "backup", check=False)
    result = row(
        "Backups, BACKUP_SYNC=on: the backup service stopped, then started",
        requests=sum(writes.values()) + sum(reads.values()) + 1,
        statuses={str(k): v for k, v in sorted((writes + reads).items(), key=str)},
        recovery=f"writes resumed {resumed:.1f} s after the backup service started",
        details={"writes while down": f"{sum(writes.values())} answered 503, slowest {slowest:.1f} s "
                                      f"(bound {bound:.0f} s)",
                 "reads while down": ", ".join(f"{k}: {v}" for k, v in reads.items())},
    )
    Results.show(result)
    assert slowest <= bound, f"a write took {slowest:.1f} s to be refused (bound {bound:.0f} s)"
    assert set(reads) == {200}, reads


def test_dump_then_load_into_an_emptied_database_gives_identical_data(stack, ops, tmp_path):
    """`make dump`, the items deleted, `make load` of that dump: the same rows, digest for digest."""
    env = {**stack.env, "COMPOSE": compose_command(stack), "DUMP_DIR": str(tmp_path)}
    before = ops.psql.digest()
    r = subprocess.run(["sh", str(ROOT / "tools" / "dump.sh")], cwd=ROOT, env=env, text=True,
                       capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr
    dump = next(tmp_path.glob("*.dump"))
    assert (tmp_path / f"{dump.name}.json").exists(), "no manifest beside the dump"
    refused = subprocess.run(["sh", str(ROOT / "tools" / "load.sh"), str(dump)], cwd=ROOT, env=env,
                             text=True, capture_output=True, timeout=300)
    assert refused.returncode != 0 and "holds" in refused.stderr, "load did not refuse a database with items"
    ops.psql.query("TRUNCATE app.items")
    ops.psql.close()
    r = subprocess.run(["sh", str(ROOT / "tools" / "load.sh"), str(dump)], cwd=ROOT, env=env, text=True,
                       capture_output=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert ops.psql.digest() == before


def backup_check(stack) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(ROOT / "tools" / "backup_check.sh")], cwd=ROOT, text=True, capture_output=True,
                          timeout=600, env={**stack.env, "COMPOSE": compose_command(stack)})


def test_backup_check_passes_then_fails_clearly_on_a_corrupted_backup_file(stack):
    base_backup(stack)
    healthy = backup_check(stack)
    assert healthy.returncode == 0, healthy.stdout[-2000:] + healthy.stderr[-2000:]
    assert "OK: backup" in healthy.stdout and "items_checksum" in healthy.stdout
    newest = stack.compose("exec", "-T", "backup", "barman", "list-backups", "main", "--minimal").stdout.split()[0]
    stack.compose("exec", "-T", "backup", "sh", "-c",
                  f"printf corrupted >> /var/lib/barman/main/base/{newest}/data/PG_VERSION")
    try:
        broken = backup_check(stack)
        assert broken.returncode != 0
        assert f"FAILED: backup {newest}: files do not match the manifest" in broken.stderr, broken.stderr[-2000:]
    finally:
        stack.compose("exec", "-T", "backup", "barman", "delete", "main", newest, check=False)
