"""A client over its limits, from one address: too many reads, too many writes, too many
requests open at once.

    python greedy_client.py HOST PORT --seconds 3 --connections 8 --held 72 --pace 0.07

Three phases, one after the other:
- reads: --connections keep-alive connections send `GET /health/live` back to back for
  --seconds;
- writes: the same with `POST /items`, the write key and an empty object (the API refuses it with 422, so
  nothing is stored; the edge counts it as a write all the same);
- held: --held connections, one every --pace seconds (slower than the write rate, so that no
  write is refused for its rate), each send the headers of a `POST /items` and part of its body;
  2 s after the last has sent, all close. None is answered unless refused.

The phases are 3 s apart, so that the rate of one is not held against the next. One JSON line
per phase on stdout, {PHASE: {"seconds", "statuses", "improper_429"}}: the answers by status
("None": no answer), and how many 429s were not problem+json with a Retry-After in seconds; the
first line says the address the edge sees: {"address"}.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from abuse_http import answer_in, arguments, authorization, read_answer, report, wait_for_close


async def _hammer(args, request: bytes, until: float, statuses: Counter, improper: list) -> None:
    """One keep-alive connection sending `request` until `until` (reopened if the server closes it)."""
    reader = writer = None
    while time.monotonic() < until:
        if writer is None:
            reader, writer = await asyncio.open_connection(args.host, args.port)
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(read_answer(reader), 10)
        if answer is None:
            statuses["closed"] += 1
            writer.close()
            writer = None
            continue
        statuses[str(answer.status)] += 1
        if answer.status == 429 and not answer.proper_429():
            improper.append(answer)
        if answer.headers.get("connection", "").lower() == "close":
            writer.close()
            writer = None
    if writer is not None:
        writer.close()


async def flood(args, phase: str, request: bytes) -> None:
    statuses, improper = Counter(), []
    started = time.monotonic()
    await asyncio.gather(*(_hammer(args, request, started + args.seconds, statuses, improper)
                           for _ in range(args.connections)))
    report(**{phase: {"seconds": round(time.monotonic() - started, 2), "statuses": dict(statuses),
                      "improper_429": len(improper)}})


async def _held(args, delay: float, until: float, statuses: Counter, improper: list) -> None:
    await asyncio.sleep(delay)
    reader, writer = await asyncio.open_connection(args.host, args.port)
    writer.write(f"POST /items HTTP/1.1\r\nHost: {args.host}\r\n{authorization()}"
                 "Content-Type: application/json\r\n"
                 f"Content-Length: 1000\r\n\r\n{{\"name\": ".encode())
    await writer.drain()
    received, _ = await wait_for_close(reader, until)
    writer.close()
    answer = answer_in(received)
    statuses[str(answer and answer.status)] += 1
    if answer is not None and answer.status == 429 and not answer.proper_429():
        improper.append(answer)


async def main(args) -> None:
    host = args.host
    _, writer = await asyncio.open_connection(host, args.port)
    report(address=writer.get_extra_info("sockname")[0])
    writer.close()
    await flood(args, "reads", f"GET /health/live HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await asyncio.sleep(3)
    await flood(args, "writes", (f"POST /items HTTP/1.1\r\nHost: {host}\r\n{authorization()}"
                                 "Content-Type: application/json\r\n"
                                 f"Content-Length: 2\r\n\r\n{{}}").encode())
    await asyncio.sleep(3)
    statuses, improper = Counter(), []
    started = time.monotonic()
    until = started + args.held * args.pace + 2
    await asyncio.gather(*(_held(args, n * args.pace, until, statuses, improper) for n in range(args.held)))
    report(held={"seconds": round(time.monotonic() - started, 2), "statuses": dict(statuses),
                 "improper_429": len(improper)})


if __name__ == "__main__":
    p = arguments(__doc__)
    p.add_argument("--seconds", type=float, default=3)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--held", type=int, default=72)
    p.add_argument("--pace", type=float, default=0.07)
    asyncio.run(main(p.parse_args()))
