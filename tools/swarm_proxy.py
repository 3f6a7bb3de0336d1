"""A small TCP load balancer for the Swarm stack: the API's entry point on hosts without IPVS.

    python swarm_proxy.py            (settings from the environment, see below)

Swarm's routing mesh and service VIPs are built on the kernel's IPVS. Where
the kernel has no IPVS (CONFIG_IP_VS unset, as on the machines this kit is
tested on) neither works, so the stack runs its services with
`endpoint_mode: dnsrr` and puts this proxy in front of the API: it listens on
one port and hands each new connection to the next API task, found by asking
Swarm's DNS for `tasks.<service>`. Swarm lists a task there only once its
health check passes and removes it two seconds before stopping it, so new
connections reach only healthy tasks, during rolling updates too. A task that
died without notice (its address still listed for a moment, or refusing) costs
a connect attempt: the connection goes to the next address instead, which is
safe because nothing was sent yet.

It balances connections, not requests (as the routing mesh does): a client's
keep-alive connection stays on one task. It reads and writes bytes only, so
it does not know HTTP; TLS, if any, passes through.

Environment:
    PROXY_LISTEN           address:port to listen on (default 0.0.0.0:8080)
    PROXY_BACKEND          host:port of the tasks (default tasks.flask-api:5000)
    PROXY_CONNECT_TIMEOUT  seconds for one connect attempt (default 1.0)
    PROXY_MAX_CONNECTIONS  connections served at once; more are closed (default 512)
    PROXY_DRAIN_SECONDS    on SIGTERM, how long open connections may finish (default 10)

Only the standard library: it runs on the stock Python image, read-only, as nobody.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import socket
import sys
import time

BUFFER = 64 * 1024


def log(event: str, **fields) -> None:
    """One JSON line on stdout, like the API's logs."""
    record = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "event": event, **fields}
    print(json.dumps(record), flush=True)


def split_address(value: str, default_host: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not port.isdigit():
        raise SystemExit(f"swarm_proxy: expected host:port, got {value!r}")
    return host.strip("[]") or default_host, int(port)


class Proxy:
    def __init__(self, backend: tuple[str, int], connect_timeout: float, max_connections: int):
        self.backend = backend
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self.turn = itertools.count()
        self.open: set[asyncio.Task] = set()

    async def addresses(self) -> list[str]:
        """The backend's addresses now, in a stable order (Swarm's DNS shuffles them)."""
        host, port = self.backend
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return sorted({info[4][0] for info in infos})

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
        """Round robin over the current addresses; a failed connect moves on to the next one."""
        try:
            addresses = await self.addresses()
        except OSError as e:
            raise ConnectionError(f"cannot resolve {self.backend[0]}: {e}") from None
        if not addresses:
            raise ConnectionError(f"no address for {self.backend[0]}")
        start = next(self.turn) % len(addresses)
        errors = []
        for address in addresses[start:] + addresses[:start]:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(address, self.backend[1]), self.connect_timeout)
                return reader, writer, address
            except (OSError, TimeoutError) as e:
                errors.append(f"{address}: {type(e).__name__} {e}".strip())
        raise ConnectionError("; ".join(errors))

    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self.open.add(task)
        try:
            if len(self.open) > self.max_connections:
                log("proxy.refused", reason="too many connections", limit=self.max_connections)
                return
            try:
                reader, writer, _ = await self.connect()
            except ConnectionError as e:
                log("proxy.no_backend", backend=f"{self.backend[0]}:{self.backend[1]}", error=str(e))
                return
            # The backend decides when an exchange is over: once it has closed its side,
            # the client's side is closed too, so an idle client cannot hold a slot for ever.
            upstream = asyncio.create_task(pipe(client_reader, writer))
            try:
                await pipe(reader, client_writer)
            finally:
                upstream.cancel()
                writer.close()
        finally:
            client_writer.close()
            self.open.discard(task)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction until end of stream, then pass the half-close on."""
    try:
        while data := await reader.read(BUFFER):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.transport.abort()


async def main() -> int:
    env = os.environ
    listen = split_address(env.get("PROXY_LISTEN", "0.0.0.0:8080"), "0.0.0.0")
    backend = split_address(env.get("PROXY_BACKEND", "tasks.flask-api:5000"), "")
    proxy = Proxy(backend, float(env.get("PROXY_CONNECT_TIMEOUT", "1.0")),
                  int(env.get("PROXY_MAX_CONNECTIONS", "512")))
    drain = float(env.get("PROXY_DRAIN_SECONDS", "10"))
    server = await asyncio.start_server(proxy.handle, *listen, reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log("proxy.start", listen=f"{listen[0]}:{listen[1]}", backend=f"{backend[0]}:{backend[1]}")
    await stop.wait()
    server.close()
    if proxy.open:
        log("proxy.draining", connections=len(proxy.open), seconds=drain)
        await asyncio.wait(set(proxy.open), timeout=drain)
    log("proxy.stop")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
