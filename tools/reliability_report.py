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
reliability` checks at bigger ones (`RELIABILITY_SCALE`, 4 by default there).

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
  restart policy must bring it back healthy (`RestartCount` + 1, not OOM-killed). Clients may
  see connection errors during the gap only: none on a request that ended before the kill, none
  on a request sent once the API was healthy again (its health check); never a client timeout,
  a 5xx or any other non-2xx answer. Writes must be served again after the last error, and every
  acknowledged write stored as sent (as above). *Recovery*: kill to the first write served.
- **API stopped.** The same load, with more clients than threads and no pauses, so that requests
  are always in flight; `docker compose stop flask-api`. Nothing may be answered other than
  2xx, no request may time out, and none may fail before the stop begins. On SIGTERM Granian
  stops accepting and finishes every request it has read; a connection with no request read yet
  is closed (hyper's graceful shutdown). So every request in flight when Granian got SIGTERM
  (its "Shutting down" log line) that was answered must have been answered 201, and one that got
  no answer (its connection closed) must have been sent less than 200 ms before SIGTERM: still
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
- **256 keep-alive connections.** 256 HTTP/1.1 keep-alive connections at once (asyncio, one
  thread), each sending its next request when the previous answer arrived: three listings of
  100 items in four, one write. The API must not be OOM-killed or restarted under its 256 MiB
  limit, and `pg_stat_activity` (sampled every 0.2 s) must never show more connections of the
  `app` role than `WORKERS × DB_POOL_MAX`. All 256 connections must be open at once, and the
  server may neither refuse nor close one (not even after an answer). Load the pool cannot take
  may be shed as 503 problem+json with `Retry-After`; every other answer must be a 200 or a 201
  (both seen), and no request may time out (15 s).
- **Hostile input.** `tests/api/test_hostile_input.py` runs against the container (`TEST_API_URL`);
  every test of it that must change nothing compares a digest of the items table before and
  after, taken from the container's database (where its requests go), not the test session's;
  the additions cover SQL injection in every string field (stored verbatim) and query parameter
  and path (refused, naming the parameter), 10 MB bodies (declared, sent, chunked), chunked
  bodies, header floods, slow clients and path tricks, each with the table digested before and
  after. Schemathesis runs every check in every phase (stateful links included) against the
  container's `/openapi.json`, from the repository root so that `schemathesis.toml` applies.
  Refusals must be 4xx problem+json, except the answers Granian gives itself, before the app sees
  the request, with an empty body: 431 for more than 100 header fields or headers larger than its
  buffer, 414 for a too long request line, 400 for messages that are not valid HTTP/1.1 (a NUL or
  a space in the target, a malformed or doubled Content-Length, an unsupported transfer coding).
- **Worst-case bodies.** As many clients as the API has request threads send, over and over,
  the costliest bodies `MAX_BODY_BYTES` allows: an object full of unknown members, JSON nested as
  deep as the body allows, a price of tens of thousands of digits, a description of escaped
  astral characters. Every one must be refused with a 4xx problem+json; another client's
  `/health/live`, probed every 0.1 s, must answer within 1 s throughout; the API must not be
  OOM-killed or restarted, and its anonymous memory (cgroup, sampled with each probe; page cache
  is reclaimed before any OOM kill and is reported beside it) must stay under half its limit.
- **Cleartext HTTP/2.** Connections open HTTP/2 with prior knowledge, start four `POST` streams
  each with part of a body, and hang up. The API speaks HTTP/1.1 only: no connection may be
  answered as HTTP/2, and afterwards `/health/live`, a listing and `/health` must each answer 200
  five times within 3 s, with no API restart.
- **Secrets.** After everything else: none of the three generated secret values in any
  container's `docker inspect` record (environment included), the API image's `docker history
  --no-trunc` or inspect record, any file of the image (`docker export` of a created container),
  the stack's logs (also those saved before `down`), or any response body the suite received.
- **Exposure.** Published ports (`docker inspect`, `docker compose port`), the host's listening
  sockets (`/proc/net/tcp*`) and the `docker-proxy` processes for the stack's containers: only
  127.0.0.1:&lt;API port&gt; and 127.0.0.1:&lt;pgAdmin port&gt;. PostgreSQL publishes nothing, is
  attached to the internal `backend` network only, and `pg_isready` from a container on the
  `edge` network or on a fresh network gets no answer, while one on `backend` does.
"""


def cell(value) -> str:
    text = ("" if value is None else str(value)).replace("|", "\\|").replace("\n", " ")
    return text if text else "–"


def statuses(counts: dict | None) -> str:
    if not counts:
        return "–"
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=lambda kv: str(kv[0])))


def render(data: dict) -> str:
    rows = data.get("rows", [])
    out = [INTRO]
    host = data.get("host", {})
    out.append(
        f"Last run: {data.get('generated_at', '?')}, scale {data.get('scale', '?')}, "
        f"{data.get('suite_seconds', '?')} s for the suite (from the stack's start-up to its last test), "
        f"{host.get('cpus', '?')} CPUs, Docker engine {data.get('engine', '?')}, "
        f"revision `{data.get('revision', '?')}`.\n")
    out.append("## Results\n")
    out.append("| Scenario | Requests | Responses by status | No answer | Acknowledged | Lost | Recovery | Result |")
    out.append("|---|---:|---|---|---:|---:|---|---|")
    for r in rows:
        acked = r.get("acked")
        out.append("| " + " | ".join([
            cell(r["scenario"]), cell(r.get("requests", "")), cell(statuses(r.get("statuses"))),
            cell(statuses(r.get("no_answer"))), cell("" if acked is None else acked),
            cell("" if acked is None else r.get("acked_lost", "")), cell(r.get("recovery", "")),
            OUTCOME.get(r.get("outcome", "running"), r.get("outcome", "?")),
        ]) + " |")
    out.append("")
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
    out.append("""\
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
suite's (tests/stack, `items-e2e`) and a user's own; it removes it, volumes included, at the end. Tests that damage the stack restore it before
they return. Without a Docker engine the tests skip, except under `CI=true` (which `.ci/run`
sets), where they fail.
`RELIABILITY_SEED` fixes schemathesis' seed (printed in the details above).
""")
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
