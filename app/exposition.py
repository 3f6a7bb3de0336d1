"""The metrics port, served by Granian's main process from the workers' files.

Workers come and go (Granian respawns a failed one); the main process stays,
so it answers the scrapes: prometheus_client's own HTTP server on
METRICS_PORT, in a thread beside the watchdog, merging the files every
worker writes under PROMETHEUS_MULTIPROC_DIR (app/metrics.py) on each scrape.
The port is the backend network's business only: compose `expose`s it,
never publishes it, and the edge never proxies it. Nor does it listen on
the container's other addresses: `own_address` resolves METRICS_HOST (in
compose, the API's alias on the backend network) and keeps the address that
is this container's own, so the edge network, and the host through it, meet
a closed port. A name may resolve to several containers (a scaled service):
only an address of this machine can be bound, which tells ours apart. On
Swarm, where a task is in DNS only once it is healthy, METRICS_HOST names the
backend network by its subnet instead, and the task binds its address there.

prometheus_client chooses its storage on first import, from the
environment, and Granian's workers inherit this process's environment and
(when forked) its imported modules: so `prepare` empties the directory and
sets the variable before anything imports prometheus_client, and before
the workers start.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
import tempfile
from pathlib import Path

log = logging.getLogger("app.exposition")

ENV = "PROMETHEUS_MULTIPROC_DIR"
# The files of gauges that count live processes only (app/metrics.py: livesum), by pid.
_LIVE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db")


def prepare(directory: str | None) -> str:
    """Empty `directory` (a fresh temporary one when None) and name it to every process to come.

    A file left from an earlier run would be counted again (the tmpfs of a
    restarted container is fresh, a host directory need not be).
    """
    path = Path(directory or tempfile.mkdtemp(prefix="items-metrics-"))
    path.mkdir(mode=0o700, exist_ok=True)  # inside a tmpfs that is fresh at every start
    for leftover in path.glob("*.db"):
        leftover.unlink()
    os.environ[ENV] = str(path)
    return str(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WorkerFiles:
    """The registry's only collector: the live workers' files, merged, after the dead ones' live gauges go.

    A worker that died mid-request leaves its in-flight count behind;
    `mark_process_dead` drops its live* gauge files, while its counters and
    histograms stay summed, as Prometheus expects of counters.
    """

    def __init__(self, directory: str):
        from prometheus_client import multiprocess

        self.directory = directory
        self.files = multiprocess.MultiProcessCollector(None, path=directory)
        self.mark_process_dead = multiprocess.mark_process_dead

    def collect(self):
        for name in os.listdir(self.directory):
            match = _LIVE_FILE.fullmatch(name)
            if match and not _alive(int(match.group(1))):
                self.mark_process_dead(int(match.group(1)), self.directory)
        return self.files.collect()


class NotOwnAddress(OSError):
    """METRICS_HOST names no address of this machine (or does not resolve)."""


def _bindable(address: str, family: int) -> bool:
    """Whether this machine has `address` (the kernel lets a socket bind only its own addresses)."""
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError:
            return False
    return True


def address_in(network: str) -> str:
    """This machine's address in `network` (CIDR): the source address the kernel picks to reach an
    address inside it. A connected UDP socket sends nothing; on a network the machine is attached
    to, the route to it is the interface with the machine's address there."""
    net = ipaddress.ip_network(network, strict=False)
    target = net.broadcast_address - 1 if net.num_addresses > 2 else net.network_address
    family = socket.AF_INET if net.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((str(target), 9))
            address = probe.getsockname()[0]
        except OSError:
            address = None
    if address is None or ipaddress.ip_address(address) not in net:
        raise NotOwnAddress(f"METRICS_HOST={network}: this container has no address in that network")
    return address


def own_address(host: str) -> str:
    """The address among those `host` resolves to that is this machine's own (a wildcard stays one);
    for a network (CIDR), this machine's address in it."""
    if "/" in host:
        return address_in(host)
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise NotOwnAddress(f"METRICS_HOST={host} does not resolve ({e.strerror})") from None
    addresses = list(dict.fromkeys((info[4][0], info[0]) for info in found))
    for address, family in addresses:
        if _bindable(address, family):
            return address
    listed = ", ".join(a for a, _ in addresses)
    raise NotOwnAddress(f"METRICS_HOST={host} resolves to {listed}, none of them this container's own")


def start(host: str, port: int, directory: str) -> None:
    """Serve the workers' metrics on `host`'s own address, `port`, from a daemon thread of this process."""
    address = own_address(host)
    from prometheus_client import CollectorRegistry, generate_latest, start_http_server

    registry = CollectorRegistry()
    registry.register(WorkerFiles(directory))
    # One scrape now, in this thread: its lazy imports must not be under way while Granian
    # forks the workers (see app/watchdog.py, `_warm_up`).
    generate_latest(registry)
    start_http_server(port, addr=address, registry=registry)
    log.info("metrics served", extra={"event": "metrics.start", "host": host, "address": address, "port": port,
                                      "directory": directory})
