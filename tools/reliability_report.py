#!/usr/bin/env python3
"""Render docs/RELIABILITY.md from the figures the reliability suite recorded.

    python tools/reliability_report.py            # test-artifacts/reliability/results.json -> docs/RELIABILITY.md
    python tools/reliability_report.py --check    # exit 1 if the document is not what the results give
    python tools/reliability_report.py --results other.json --output -   # print instead

The suite (tests/reliability/, run by `make test` at CI sizes and by `make reliability` at bigger
ones) writes one row per scenario with the figures it printed; this script only formats them.
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "test-artifacts" / "reliability" / "results.json"
OUTPUT = ROOT / "docs" / "RELIABILITY.md"
OUTCOME = {"passed": "pass", "failed": "**FAIL**", "xfailed": "known failure", "xpassed": "**fixed? (xpass)**",
           "running": "**did not finish**", "skipped": "skipped"}

INTRO = """\
# Reliability and security: faults, load and hostile input

What the reliability suite (`tests/reliability/`) does to the real Compose stack
(`compose.yaml` + `compose.prod.yaml`, the prod limits included) and what it saw. Each
scenario is a test; each prints the figures below and fails on any broken promise, so this
table is also what CI checks on every `make test` (at modest sizes), and what `make
reliability` checks at bigger ones (`RELIABILITY_SCALE`, 4 by default there). Every request to
`/items` carries one of the stack's API keys (a write and a read key, made in the API container
once the stack is up, as `make key` does); the abusers' containers read theirs from a mounted
file, never an argument or a variable.

This file is generated: `make reliability` runs the suite and then `python
tools/reliability_report.py`, which renders `test-artifacts/reliability/results.json` (written
by the suite) into this page. Do not edit it by hand.
"""

COLUMNS = """\
**Columns.** *Requests*: requests the scenario sent (for schemathesis, the requests in its HAR
report; for the secret scan, the response bodies scanned). *Responses by status*: answers
received. *No answer*: requests that got none: `connection` (refused, reset or closed before an
answer), `timeout` (the client gave up: a hang), `closed`/`connect` for the keep-alive load.
Every attempt counts: no client retries silently (a retry a scenario makes is an attempt too).
*Acknowledged* and *lost*: writes the API answered 201 to, and how many of those PostgreSQL did
not have afterwards, exactly as sent, under the id the API returned (must be 0). *Recovery*:
when service came back, as the scenario defines it (below).
"""

SCENARIOS = """\
## What each scenario does, and what it must show

- **PostgreSQL stopped / SIGKILLed under writes.** As many clients as the API has threads for
  requests (`BLOCKING_THREADS`, 4; threads with a `requests` session each) POST items with
  unique names and random prices, quantities and Unicode descriptions, and record every answer.
  PostgreSQL is stopped (`docker compose stop`, held down 4 s, then `start`), or its postmaster
  is SIGKILLed from the host (`State.Pid`; `restart: unless-stopped` restarts it and PostgreSQL
  runs crash recovery: its `RestartCount` must grow by one per outage); `RELIABILITY_SCALE` runs
  that many outages in a row. Every refused write must be a 503 problem+json with
  `Retry-After`, answered within the pool timeout (`DB_POOL_TIMEOUT`, 3 s, plus 2 s of slack for
  a busy machine), and so must every request sent while PostgreSQL was stopping or down; while
  it is stopped, what is answered must be 503s (and some must be); no client timeout (10 s) and
  no dropped connection, ever. *Recovery* is the time from PostgreSQL being healthy (its health
  check) to the first write that succeeded with no failure after it; it must be at most 5 s,
  every write sent later must succeed (the load goes on 3 s past that bound), and the API must
  not have restarted (same `StartedAt` and `RestartCount`). Then every acknowledged item must be
  in the table, under the id it was given and as the acknowledgement echoed it, and every stored
  item the clients sent must be complete (all fields as sent, version 1), whether its POST was
  acknowledged, refused or never answered. Two more runs hold every one of these promises
  further out: a 20 s outage, and 16 clients instead of 4.
- **API SIGKILLed.** The same load; the API container's main process is SIGKILLed from the host
  (`docker kill` would count as a manual stop and the restart policy would not act). The
  restart policy must bring it back healthy (`RestartCount` + 1, not OOM-killed). The clients
  go through the edge, which stays up and answers for the API while it is away: 502
  problem+json (504 when it waited its connect timeout on an address that had gone). Those
  may come during the gap only: none on a request that ended before the kill, none on a request
  sent once the API was healthy again (its health check). Every request must be answered (no
  client timeout, no dropped connection) and nothing else than 2xx. Writes must be served again
  after the last 502/504, and every acknowledged write stored as sent (as above). *Recovery*:
  kill to the first write served.
- **API stopped.** The same load, with more clients than threads and no pauses, so that requests
  are always in flight; `docker compose stop flask-api`. Every request must be answered, with
  2xx or, once the API takes no more, the edge's 502/504 problem+json, and none may fail before
  the stop begins. On SIGTERM Granian stops accepting and finishes every request it has read; a
  connection with no request read yet is closed (hyper's graceful shutdown). So every request in
  flight when Granian got SIGTERM (its "Shutting down" log line) must have been answered 201 by
  the API, except one sent less than 200 ms before SIGTERM (the edge answers 502 for it): still
  unread in its socket, which the API, under a CPU limit, reads within one or two 100 ms CFS
  periods (the details say whether any such write was stored anyway). The workers must have
  drained within Granian's kill timeout (`workers_kill_timeout`, 8 s, app/serve.py: SIGTERM to
  the container's exit) and the container must exit cleanly (exit code 0, not OOM-killed)
  within its grace period (`stop_grace_period`, 15 s); every acknowledged write stored as sent.
  It is started again afterwards. *Recovery*: how long the stop took, and `start` to healthy.
- **API wedged.** The API's Granian workers are SIGSTOPped from the host: the process lives and
  answers nothing, which Docker alone never acts on. The API's watchdog (`app/watchdog.py`,
  `WATCHDOG_TIMEOUT`, 30 s) must notice the silence, stop the server and exit, and the restart
  policy must start it again: `/health/live` must answer again within 90 s of the wedge and the
  container's `RestartCount` must have grown by one. *Recovery*: wedge to `/health/live`
  answering. (The Swarm suite wedges a task the same way and expects it replaced within 90 s.)
- **`down` then `up`.** Items written through the API, a digest of the whole table and a server
  registered in pgAdmin through its web API (logged in with its CSRF token) before `docker
  compose down` (volumes kept); after `up`, the same digest, every item readable and equal, the
  pgAdmin server still listed after a fresh login, the same named volumes.
- **256 keep-alive connections.** 256 HTTP/1.1 keep-alive connections at once to the edge
  (asyncio, one thread), each sending its next request when the previous answer arrived: three
  listings of 100 items in four, one write. The API must not be OOM-killed or restarted under its 256 MiB
  limit, and `pg_stat_activity` (sampled every 0.2 s) must never show more connections of the
  `app` role than `WORKERS × DB_POOL_MAX`. All 256 connections must be open at once, and the
  server may neither refuse nor close one (not even after an answer). Load the pool cannot take
  may be shed as 503 problem+json with `Retry-After`; every other answer must be a 200 or a 201
  (both seen), and no request may time out (15 s).
- **Hostile input.** `tests/api/test_hostile_input.py` runs against the API container itself
  (`TEST_API_URL`: its address on the `edge` network, past the edge, since that corpus states
  what the API and Granian do); every test of it that must change nothing compares a digest of
  the items table before and after, taken from the container's database (where its requests
  go), not the test session's. Through the edge, as clients meet the API: the additions cover
  SQL injection in every string field (stored verbatim) and query parameter and path (refused,
  naming the parameter), 10 MB bodies (declared, sent, chunked: 413), chunked bodies, header
  floods and path tricks, each with the table digested before and after; schemathesis runs every
  check in every phase (stateful links included) against `/openapi.json`, from the repository
  root so that `schemathesis.toml` applies. Refusals must be 4xx problem+json, the API's or the
  edge's: 400 for a message that is not valid HTTP/1.1 (a NUL, a space or a control character
  in the target, Content-Length beside chunked), 414 for a request line over 8 KiB, 431 for a
  header field over 8 KiB or headers over the edge's four 8 KiB buffers; a transfer coding the
  edge does not implement is 501 problem+json (RFC 9112 section 6.1). Well-formed chunked bodies
  are read whole by the edge and stored exactly as sent; a chunked body cut short by the
  client's end of stream may be closed without an answer (RFC 9112 section 8), and is not
  stored. A client may send 97 header fields, Host and its key among them (Granian reads 100;
  the edge adds three); with more, in fewer bytes than the edge's buffers, Granian's own 431 with an empty
  body passes the edge: a known failure.
- **Request smuggling.** Ten messages whose length is ambiguous (Content-Length beside chunked in
  either order, two Content-Lengths equal or not, a Content-Length list, an obfuscated or
  doubled or unknown Transfer-Encoding, HTTP/1.0 with chunked), each with a complete second
  request in its body. Each must get exactly one answer from the edge, 400 (501 for an unknown
  coding) problem+json with `Connection: close`; the API's log must hold neither the probes nor
  the hidden requests (by request id), the edge's access log each probe once. A control message
  framed one way only, with the same hidden request in its body, must reach the API as exactly
  one request (422).
- **Slow clients.** 256 stalled request bodies (the headers of a `POST` declaring
  `MAX_BODY_BYTES`, a few bytes of body, then nothing) and 256 slowloris connections (a request
  line, then one header line every 3 s), from throwaway containers on the stack's `edge` network:
  every client on the test host is one address to the edge (docker-proxy's), so the abusers need
  addresses of their own, as many as it takes for the edge to hold every stalled body (per
  address, no more than its write burst + 1 admits at once, nor its connection limit). The edge
  runs its documented defaults for this scenario and the next (read back from `nginx -T`).
  Meanwhile another client, on the host, sends `GET /health` and `GET /items/<id>` every 0.1 s:
  each must be answered 200 within 1 s, throughout (at least one a second while every abusive
  connection is open). The edge must close every abusive connection without an answer, not
  before its client timeout (`EDGE_CLIENT_TIMEOUT`, 10 s) less 1 s (so it held them) and within
  it plus 3 s; none may reach the API (its log names no abuser's address); the edge must not be
  restarted or OOM-killed (its memory is reported).
- **Greedy client.** From a container of its own: `GET /health/live` back to back on 8
  connections for 3 s, then `POST /items` with its key and an empty object (422, nothing stored), then more
  requests open at once than the edge's connection limit (stalled `POST`s paced under the write
  rate). Reads and writes must be served within the burst and the rate (at least the burst + 1,
  at most that plus the rate for every second of the flood and one more), the rest refused 429
  problem+json with a `Retry-After` in seconds; exactly the requests over the connection limit
  must get 429. The edge's error log must name that client's address for every limit and no
  other address; the other client, on the host, sending reads and valid writes all along, must
  be served every time (200 and 201 only).
- **Worst-case bodies.** As many clients as the API has request threads send, over and over,
  the costliest bodies `MAX_BODY_BYTES` allows: an object full of unknown members, JSON nested as
  deep as the body allows, a price of tens of thousands of digits, a description of escaped
  astral characters. Every one must be refused with a 4xx problem+json; another client's
  `/health/live`, probed every 0.1 s, must answer within 1 s throughout; the API must not be
  OOM-killed or restarted, and its anonymous memory (cgroup, sampled with each probe; page cache
  is reclaimed before any OOM kill and is reported beside it) must stay under half its limit.
- **HTTP/2 streams dropped.** Connections start four `POST` streams each with part of a body, and
  hang up. On the edge's plain port, with prior knowledge: it speaks HTTP/1.1 there, so every
  connection must be refused with an HTTP/1.1 400, never answered as HTTP/2. Over TLS, where the
  edge speaks HTTP/2 (ALPN): every connection must be answered as HTTP/2, and no half-sent body
  may reach the API (no `POST` in its log). Afterwards `/health/live`, a listing and `/health`
  must each answer 200 five times within 3 s (over HTTPS for the second), with no restart.
- **Secrets.** After everything else: none of the three generated secret values, nor the edge's
  TLS private key, nor the two API keys (sent once more just before: served, refused for their
  scope and with a wrong secret, over HTTP and HTTPS, all five in the API's log), in any
  container's `docker inspect` record (environment included), the API's or the edge's image's
  `docker history --no-trunc` or inspect record, any file of either image (`docker export` of a
  created container), the stack's logs (also those saved before `down`), or any response body
  the suite received.
- **Exposure.** Published ports (`docker inspect`, `docker compose port`), the host's listening
  sockets (`/proc/net/tcp*`) and the `docker-proxy` processes for the stack's containers: only
  127.0.0.1:&lt;API port&gt; and 127.0.0.1:&lt;API TLS port&gt; (the edge) and
  127.0.0.1:&lt;pgAdmin port&gt;; the API and PostgreSQL publish nothing. PostgreSQL is attached
  to the internal `backend` network only, the edge to the `edge` network only, and `pg_isready`
  from a container on the `edge` network or on a fresh network gets no answer, while one on
  `backend` does.
- **Backups drill 1: the data volume is gone.** Two clients write continuously; a base backup is
  taken while they do (it must cost no failed request); more writes; then, the clients still
  writing, PostgreSQL is SIGKILLed, its container and the API's removed and the data volume
  deleted. `tools/restore.sh` (`make restore YES=1`) restores the newest base backup and the
  streamed WAL. *RPO*: acknowledged writes missing afterwards (none may be older than 1 s at the
  destruction). *RTO* (Recovery): destruction to the API's `/health` answering 200.
- **Backups drill 2: a bad statement.** Items written through the API, deleted by a `DELETE` at
  T, one more written after it; `make restore TARGET_TIME=<T - 1 s>` must bring every deleted
  item back exactly as it was and the write after T must be gone (404). Recovery: the start of
  the restore to the API healthy.
- **Both drills in both backup modes**: `(streaming)`, the default (asynchronous WAL streaming),
  and `(sync)`, with `BACKUP_SYNC=on` (the backup service a synchronous standby; drill 1 must lose
  no acknowledged write at all; smaller: 0.4 of the streaming drills' writes).
- **Backups, BACKUP_SYNC=on, the backup service stopped, then started.** With it stopped every
  write must be answered 503 problem+json within `DB_SYNC_COMMIT_TIMEOUT` (plus 3 s), never 2xx,
  while reads of an item keep answering 200; once it is started again, writes must succeed by
  themselves (within 90 s; Recovery says when they did).
"""


def cell(value) -> str:
    text = ("" if value is None else str(value)).replace("|", "\\|").replace("\n", " ")
    return text if text else "–"


def statuses(counts: dict | None) -> str:
    if not counts:
        return "–"
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=lambda kv: str(kv[0])))


def results_table(rows: list[dict]) -> list[str]:
    """The "Results" section: one row per scenario."""
    out = ["## Results\n",
           "| Scenario | Requests | Responses by status | No answer | Acknowledged | Lost | Recovery | Result |",
           "|---|---:|---|---|---:|---:|---|---|"]
    for r in rows:
        acked = r.get("acked")
        out.append("| " + " | ".join([
            cell(r["scenario"]), cell(r.get("requests", "")), cell(statuses(r.get("statuses"))),
            cell(statuses(r.get("no_answer"))), cell("" if acked is None else acked),
            cell("" if acked is None else r.get("acked_lost", "")), cell(r.get("recovery", "")),
            OUTCOME.get(r.get("outcome", "running"), r.get("outcome", "?")),
        ]) + " |")
    out.append("")
    return out


RUNNING = """\
## Running it

```sh
make test                          # everything, the reliability suite at CI sizes (RELIABILITY_SCALE=1)
make reliability                   # the reliability suite alone at RELIABILITY_SCALE=4, then this file
make reliability RELIABILITY_SCALE=2
make reliability-report            # this file again from the last results
.venv/bin/pytest tests/reliability -k postgres -s   # one scenario, its figures printed
```

The suite starts its own stack (project `items-rel`, or `$RELIABILITY_PROJECT`; built by
tests/compose_stack.py) on free loopback ports with its own secrets, beside the container
suite's (tests/stack, `items-e2e`) and a user's own; it removes it, volumes included, at the end.
Its edge lifts the per-client rate and connection limits, since every client on the test host
is one address to it (the load scenarios stand for many clients); the slow and greedy client
scenarios put the documented defaults back for their run. Tests that damage the stack restore
it before they return. Without a Docker engine the tests skip, except under `CI=true` (which `.ci/run`
sets), where they fail.
`RELIABILITY_SEED` fixes schemathesis' seed (printed in the details above).
"""


def render(data: dict) -> str:
    rows = data.get("rows", [])
    out = [INTRO]
    host = data.get("host", {})
    out.append(
        f"Last run: {data.get('generated_at', '?')}, scale {data.get('scale', '?')}, "
        f"{data.get('suite_seconds', '?')} s for the suite (from the stack's start-up to its last test), "
        f"{host.get('cpus', '?')} CPUs, Docker engine {data.get('engine', '?')}, "
        f"revision `{data.get('revision', '?')}`.\n")
    out += results_table(rows)
    out.append(COLUMNS)
    out.append("## Details\n")
    for r in rows:
        details = {k: v for k, v in (r.get("details") or {}).items() if k != "finding"}
        if not details:
            continue
        out.append(f"- **{r['scenario']}**: " + "; ".join(f"{k}: {v}" for k, v in details.items()) + ".")
    out.append("")
    known = [r for r in rows if r.get("outcome") in ("xfailed", "xpassed", "failed")]
    if known:
        out.append("## Known failures\n")
        out.append("Marked `xfail(strict=True)` in the suite: they fail today for a reason outside the tests, "
                   "and the suite fails as soon as they start passing, so the marker goes when the fix lands.\n")
        for r in known:
            finding = (r.get("details") or {}).get("finding", "")
            out.append(f"- **{r['scenario']}** ({OUTCOME.get(r['outcome'], r['outcome'])}). {finding}".rstrip())
        out.append("")
    if data.get("notes"):
        out.append("## Noticed\n")
        out += [f"- {note}" for note in data["notes"]]
        out.append("")
    out.append(SCENARIOS)
    out.append(RUNNING)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, default=RESULTS, help=f"results JSON (default {RESULTS.relative_to(ROOT)})")
    p.add_argument("--output", default=str(OUTPUT), help="where to write the document, or - for stdout")
    p.add_argument("--check", action="store_true", help="exit 1 if the output file differs from the rendering")
    args = p.parse_args(argv)
    if not args.results.exists():
        print(f"no results at {args.results}: run the suite first (make reliability)", file=sys.stderr)
        return 2
    text = render(json.loads(args.results.read_text()))
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    output = Path(args.output)
    if args.check:
        current = output.read_text() if output.exists() else ""
        if current != text:
            print(f"{output} is not what {args.results} gives: run python tools/reliability_report.py",
                  file=sys.stderr)
            return 1
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(f"wrote {output} ({len(data_rows(text))} scenarios)")
    return 0


def data_rows(text: str) -> list[str]:
    lines = text.split("## Results", 1)[-1].split("\n## ", 1)[0].splitlines()
    return [line for line in lines if line.startswith("| ") and not line.startswith("| Scenario")]


if __name__ == "__main__":
    sys.exit(main())
