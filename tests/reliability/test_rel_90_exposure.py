"""Secrets and exposure, after everything else has run (this module comes last).

Secrets: none of the stack's generated secret values may appear in any container's environment
or `docker inspect` record, in `docker history --no-trunc` of the API image or its inspect record,
anywhere in the image's filesystem (`docker export` of a container created from it, every file
read), in the stack's logs (now, and as saved before `down`), or in any response body the suite
received (scanned as they arrived, plus the files the subprocesses recorded).

Exposure: from the host, the stack listens on 127.0.0.1:<API port> and 127.0.0.1:<pgAdmin port>
and nowhere else; PostgreSQL publishes nothing, sits on the internal backend network only, and a
container on any other network cannot reach it (one on the backend network can: the probe works).
"""

from __future__ import annotations

import socket
import subprocess
import tarfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from reliability_support import ARTIFACTS, Results

SERVICES = ("flask-api", "postgres", "pgadmin")


def _containers(stack) -> list[str]:
    return stack.compose("ps", "--all", "--quiet").stdout.split()


def _scan_image_filesystem(stack, image: str, needles: dict[str, bytes]) -> tuple[int, int, list[str]]:
    """Every regular file of the image (a created, never started container, exported as a tar)."""
    name = f"reliability-export-{uuid.uuid4().hex[:8]}"
    stack.docker("create", "--name", name, image)
    files = size = 0
    hits: list[str] = []
    try:
        proc = subprocess.Popen([stack.docker.binary, "export", name], stdout=subprocess.PIPE)
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    data = tar.extractfile(member).read()
                    files += 1
                    size += len(data)
                    hits += [f"{secret} in {member.name}" for secret, value in needles.items() if value in data]
        finally:
            proc.stdout.close()
            assert proc.wait(120) == 0, "docker export failed"
    finally:
        stack.docker("rm", "--force", name, check=False)
    return files, size, hits


def test_no_secret_value_leaks_anywhere(stack, ops, bodies, row):
    needles = {name: value.encode() for name, value in stack.secrets.items()}
    hits: list[str] = []
    scanned: dict[str, str] = {}

    def scan(text: str | bytes, where: str) -> None:
        data = text.encode() if isinstance(text, str) else text
        hits.extend(f"{name} in {where}" for name, value in needles.items() if value in data)

    containers = _containers(stack)
    for cid in containers:
        record = stack.docker("inspect", cid).stdout
        scan(record, f"`docker inspect` of {cid[:12]} (environment included)")
    scanned["containers (inspect, environment)"] = str(len(containers))

    image = ops.inspect("flask-api")["Image"]
    scan(stack.docker("history", "--no-trunc", image).stdout, "`docker history --no-trunc` of the API image")
    scan(stack.docker("image", "inspect", image).stdout, "`docker image inspect` of the API image")
    files, size, image_hits = _scan_image_filesystem(stack, image, needles)
    hits += image_hits
    scanned["API image filesystem"] = f"{files} files, {size / 2**20:.0f} MiB"

    logs = stack.compose("logs", "--no-color", "--timestamps", timeout=120).stdout
    scan(logs, "`docker compose logs`")
    saved = sorted(ARTIFACTS.glob("stack-logs-*.txt"))
    for path in saved:
        scan(path.read_bytes(), path.name)
    scanned["logs"] = f"{len(logs.splitlines())} lines now, {len(saved)} saved before `down`"

    hits += bodies.hits
    scanned["response bodies"] = f"{bodies.count} scanned as received, {bodies.bytes / 2**20:.1f} MiB in all"

    result = row("Secrets: environments, image history and filesystem, logs, responses",
                 requests=bodies.count, statuses={}, no_answer={}, details={**scanned,
                 "secret values found": len(hits)})
    Results.show(result)
    assert bodies.count > 0, "no response body was scanned"
    assert not hits, hits


# --------------------------------------------------------------------------- exposure


def _listening(ports: set[int]) -> set[tuple[str, int]]:
    """Sockets listening on the host with one of these ports (/proc/net/tcp and tcp6)."""
    found = set()
    for name, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        path = Path(name)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state != "0A":  # LISTEN
                continue
            address, port = local.split(":")
            if int(port, 16) not in ports:
                continue
            if width == 8:
                ip = socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1])
            else:
                raw = bytes.fromhex(address)
                ip = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
            found.add((ip, int(port, 16)))
    return found


def _proxies_for(ips: set[str]) -> set[tuple[str, int]]:
    """(host ip, host port) of every docker-proxy forwarding to one of these container addresses."""
    found = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if not args or not args[0].endswith(b"docker-proxy"):
            continue
        opts = {args[i].decode(): args[i + 1].decode() for i in range(len(args) - 1) if args[i].startswith(b"-")}
        if opts.get("-container-ip") in ips:
            found.add((opts.get("-host-ip", ""), int(opts.get("-host-port", "0"))))
    return found


def _speaks_postgres(ip: str) -> bool:
    """True when PostgreSQL answers at ip:5432 from the host: an SSLRequest gets 'S' or 'N'.

    A bare TCP connect proves nothing on a network whose egress proxy accepts every connection.
    """
    try:
        with socket.create_connection((ip, 5432), timeout=2) as s:
            s.sendall((8).to_bytes(4, "big") + (80877103).to_bytes(4, "big"))
            return s.recv(1) in (b"S", b"N")
    except OSError:
        return False


def _pg_isready(stack, network: str, host: str) -> int:
    """pg_isready from a throwaway container on `network`: 0 accepting, 2 no response (docker's own
    failures, 125 and up, are not an answer: they fail here)."""
    r = stack.docker("run", "--rm", "--network", network, "--read-only", "--cap-drop", "ALL",
                     "--security-opt", "no-new-privileges=true", "--user", "999:999",
                     "--entrypoint", "pg_isready", "postgres:18-trixie",
                     "-h", host, "-p", "5432", "-t", "3", check=False, timeout=60)
    assert r.returncode in (0, 1, 2, 3), f"the probe container did not run ({r.returncode}): {r.stderr[-500:]}"
    return r.returncode


def test_only_loopback_ports_listen_and_postgres_stays_on_the_backend(stack, ops, row, results):
    api_port, pgadmin_port = urlsplit(stack.api_url).port, urlsplit(stack.pgadmin_url).port
    inspected = {s: ops.inspect(s) for s in SERVICES}
    published = {s: {(b["HostIp"], int(b["HostPort"])) for bs in (c["NetworkSettings"]["Ports"] or {}).values()
                     for b in (bs or [])} for s, c in inspected.items()}
    docker_port = {s: stack.compose("port", s, {"flask-api": "5000", "pgadmin": "8080", "postgres": "5432"}[s],
                                    check=False).stdout.strip() for s in SERVICES}
    ips = {n["IPAddress"] for c in inspected.values() for n in c["NetworkSettings"]["Networks"].values()}
    proxies = _proxies_for(ips)
    listening = _listening({api_port, pgadmin_port})

    pg = inspected["postgres"]
    pg_networks = pg["NetworkSettings"]["Networks"]
    backend = f"{stack.project}_backend"
    edge = f"{stack.project}_edge"
    pg_ip = pg_networks[backend]["IPAddress"] if backend in pg_networks else ""
    internal = stack.docker.inspect(backend)["Internal"] if backend in pg_networks else None
    probe_net = f"{stack.project}-probe-{uuid.uuid4().hex[:6]}"
    stack.docker("network", "create", probe_net)
    try:
        started = time.monotonic()
        probes = {
            "backend network, by name": _pg_isready(stack, backend, "postgres"),
            "edge network, by name": _pg_isready(stack, edge, "postgres"),
            "edge network, by address": _pg_isready(stack, edge, pg_ip),
            "another network, by address": _pg_isready(stack, probe_net, pg_ip),
        }
        probe_seconds = time.monotonic() - started
    finally:
        stack.docker("network", "rm", probe_net, check=False)
    host_reaches_pg = _speaks_postgres(pg_ip)

    expected = {"flask-api": {("127.0.0.1", api_port)}, "pgadmin": {("127.0.0.1", pgadmin_port)}, "postgres": set()}
    result = row(
        "Exposure: published ports and PostgreSQL's network", requests=len(probes), statuses={}, no_answer={},
        details={"published": "; ".join(f"{s} {', '.join(f'{ip}:{port}' for ip, port in sorted(p)) or 'nothing'}"
                                        for s, p in published.items()),
                 "docker-proxy listeners": ", ".join(f"{ip}:{port}" for ip, port in sorted(proxies))
                 or "none (no userland proxy)",
                 "host sockets listening on those ports": ", ".join(f"{ip}:{port}" for ip, port in sorted(listening)),
                 "PostgreSQL networks": ", ".join(pg_networks), "backend internal": internal,
                 "pg_isready exit codes (0 accepting, 2 no answer)": probes,
                 "probes took": f"{probe_seconds:.1f} s",
                 "host reaches PostgreSQL at its backend address": "yes" if host_reaches_pg else "no"},
    )
    Results.show(result)
    if host_reaches_pg:
        results.note(
            "The host itself reaches PostgreSQL at its address on the backend network (Docker gives the "
            "bridge of an internal network an address on the host). Nothing listens for it on the host's "
            "interfaces and other hosts have no route to it, but local users of this machine can connect to "
            "it (they still need a password). Docker 28's bridge driver option "
            "`com.docker.network.bridge.gateway_mode_ipv4: isolated` leaves an internal network's bridge "
            "without a host address (the engine here accepted it, and the bridge had none, in a quick check "
            "outside the suite); worth trying on `backend`.")

    assert published == expected, published
    assert docker_port["flask-api"] == f"127.0.0.1:{api_port}", docker_port
    assert docker_port["pgadmin"] == f"127.0.0.1:{pgadmin_port}", docker_port
    assert docker_port["postgres"] == "", docker_port
    assert not pg["HostConfig"]["PortBindings"], pg["HostConfig"]["PortBindings"]
    if proxies:
        assert proxies == {("127.0.0.1", api_port), ("127.0.0.1", pgadmin_port)}, proxies
    assert all(ip == "127.0.0.1" for ip, _ in listening), f"the stack's ports listen on {listening}"
    if proxies:
        assert listening == {("127.0.0.1", api_port), ("127.0.0.1", pgadmin_port)}, listening
    assert list(pg_networks) == [backend], pg_networks
    assert internal is True, "the backend network is not internal"
    assert probes["backend network, by name"] == 0, "the probe cannot reach PostgreSQL even from the backend"
    for where in ("edge network, by name", "edge network, by address", "another network, by address"):
        assert probes[where] == 2, f"PostgreSQL answered from the {where} (pg_isready {probes[where]})"
