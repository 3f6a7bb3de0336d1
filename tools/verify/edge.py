"""The edge's checks: TLS, HSTS, timeouts and limits, and its own errors, as clients and nginx see them.

The edge (nginx, compose.prod.yaml's `edge`) is where the production stack
meets clients, so what it promises is checked where it shows: TLS and HSTS
on its HTTPS port as published, its timeouts and limits in the configuration
nginx really runs (`nginx -T`, not the files in the repository), and an
error it makes itself, asked for over its HTTP port. The container checks
(user, read-only, limits ...) apply to it as to every service (checks.py).
Registered after checks.py's, in this order.
"""

from __future__ import annotations

from datetime import datetime, timezone

from . import nginx, tls
from .model import API, EDGE, EDGE_HTTP, EDGE_HTTPS, FAIL, PASS, WARN, Failed, Outcome, result
from .registry import check
from .targets import Target
from .web import fetch, hsts_max_age, problem_faults, server_version

YEAR = 365 * 86400  # HSTS max-age floor (seconds): what browsers' preload lists ask for
CLIENT_TIMEOUTS = ("client_header_timeout", "client_body_timeout", "send_timeout")
TIMEOUT_BOUND = 60.0  # seconds; nginx's own default, and the most a slow client should hold a connection
LONG_URI = 9 * 1024  # a request line over large_client_header_buffers' 8 KiB: nginx answers 414 itself


def port_of(t: Target, port: int) -> tuple[str, int]:
    """(host, port) where this host reaches the edge's container `port`."""
    found = t.published(port)
    if found is None:
        raise Failed(f"{port}/tcp is not published")
    return found


def handshake(where: tuple[str, int]) -> tuple[str, bytes]:
    """A TLS 1.2+ handshake with the edge: (the version agreed, its certificate)."""
    try:
        return tls.handshake(*where, tls.client(tls.MODERN))
    except OSError as e:
        raise Failed(f"no TLS 1.2+ handshake on {where[0]}:{where[1]}: {e}") from None


@check("EDGE-TLS-CERT", "HTTPS serves a certificate valid now", services=(EDGE,), live=True)
def check_tls_certificate(t: Target) -> Outcome:
    """Clients refuse an expired or not-yet-valid certificate: its dates, as served, must include now.

    Within 30 days of its end it is a warning, to renew in time. The chain is
    not judged (the self-signed pair `make up` makes is fine); the dates are.
    """
    _, der = handshake(port_of(t, EDGE_HTTPS))
    return tls.judge(tls.validity(der), datetime.now(timezone.utc))


@check("EDGE-TLS-VERSIONS", "HTTPS speaks TLS 1.2+ and refuses TLS 1.0 and 1.1", services=(EDGE,), live=True)
def check_tls_versions(t: Target) -> Outcome:
    """TLS 1.0 and 1.1 are deprecated (RFC 8996): a handshake pinned to either must fail, one at 1.2+ succeed.

    The old versions are offered with every cipher allowed, so that a refusal
    is the server's; when this host's OpenSSL cannot offer them at all, the
    check warns that it could not test.
    """
    where = port_of(t, EDGE_HTTPS)
    version, _ = handshake(where)
    accepted, untested = [], []
    for name, old in tls.OLD.items():
        try:
            if not tls.refuses(*where, old):
                accepted.append(name)
        except tls.ClientCannot:
            untested.append(name)
    if accepted:
        return FAIL, f"accepts {' and '.join(accepted)} ({version} otherwise)"
    if untested:
        return WARN, f"{version} agreed; this host cannot offer {' or '.join(untested)} to test their refusal"
    return PASS, f"{version} agreed; TLS 1.0 and 1.1 refused"


@check("EDGE-HSTS", "HTTPS answers carry HSTS for at least a year", services=(EDGE,), live=True)
def check_hsts(t: Target) -> Outcome:
    """Strict-Transport-Security makes browsers use HTTPS only (RFC 6797) for max-age seconds: a year or more.

    Read from a GET /health over HTTPS, as a client gets it.
    """
    where = port_of(t, EDGE_HTTPS)
    try:
        answer = fetch(f"https://{where[0]}:{where[1]}/health")
    except OSError as e:
        return FAIL, f"GET /health over HTTPS failed: {e}"
    value = answer.headers.get("Strict-Transport-Security")
    age = hsts_max_age(value)
    if value is None:
        return FAIL, f"no Strict-Transport-Security (GET /health {answer.status})"
    if age is None:
        return FAIL, f"Strict-Transport-Security without a valid max-age: {value}"
    return result(age >= YEAR, value, f"max-age {age} s is under a year: {value}")


def running_config(t: Target) -> nginx.Level:
    """The configuration the edge's nginx runs, parsed.

    `-q` keeps nginx's "syntax is ok" lines out; warnings, if any, come
    before the dump and are dropped with everything before the first file.
    """
    code, output = t.exec(["nginx", "-T", "-q"])
    if code != 0:
        raise Failed(f"nginx -T failed ({code}): {output[:100]}")
    config = nginx.load(output)
    if not config:
        raise Failed("nginx -T printed no configuration")
    return config


def proxied_locations(t: Target) -> list[tuple[str, nginx.Chain]]:
    """The running configuration's locations that pass requests on."""
    locations = nginx.proxied(running_config(t))
    if not locations:
        raise Failed("no location passes requests to the API (no proxy_pass)")
    return locations


def timeout_problems(chain: nginx.Chain, where: str) -> list[str]:
    """What is wrong with the client timeouts and body buffering at the end of `chain`."""
    problems = []
    for name in CLIENT_TIMEOUTS:
        text = nginx.value(chain, name)
        secs = nginx.seconds(text) if text else None
        if text is None:
            problems.append(f"{name} not set in {where}")
        elif secs is None or secs > TIMEOUT_BOUND:
            problems.append(f"{name} {text} in {where} (more than {TIMEOUT_BOUND:g}s)")
    if nginx.value(chain, "proxy_request_buffering") == "off":
        problems.append(f"proxy_request_buffering off in {where}")
    return problems


@check("EDGE-TIMEOUTS", "client timeouts set, at most 60 s; request bodies buffered (nginx -T)",
       services=(EDGE,), live=True)
def check_timeouts(t: Target) -> Outcome:
    """A slow client must not hold the API: the edge times out slow headers, bodies and reads, and reads a
    whole body before passing it on, so the API's few threads never wait on a client.

    client_header_timeout, client_body_timeout and send_timeout must be set
    (nginx's default is 60 s) and at most 60 s; proxy_request_buffering must
    not be off, in every location that proxies.
    """
    locations = proxied_locations(t)
    problems = [p for where, chain in locations for p in timeout_problems(chain, where)]
    shown = dict.fromkeys(", ".join(f"{n} {nginx.value(chain, n)}" for n in CLIENT_TIMEOUTS)
                          for _, chain in locations)
    return result(not problems, f"{'; '.join(shown)}; bodies buffered ({len(locations)} locations)",
                  "; ".join(problems))


def limit_problems(chain: nginx.Chain, where: str, api_limit: str | None) -> list[str]:
    """What is wrong with the body-size, rate and connection limits at the end of `chain`.

    The body limit must be in step with the API's MAX_BODY_BYTES (`api_limit`, when known).
    """
    problems = [f"no {name} in {where}" for name in ("limit_req", "limit_conn")
                if not nginx.effective(chain, name)]
    text = nginx.value(chain, "client_max_body_size")
    limit = nginx.size(text) if text else None
    if text is None:
        problems.append(f"client_max_body_size not set in {where} (nginx's default 1m)")
    elif not limit:
        problems.append(f"client_max_body_size {text} in {where}: no limit")
    elif api_limit and api_limit.isdigit() and limit != int(api_limit):
        problems.append(f"client_max_body_size {text} in {where}, the API's MAX_BODY_BYTES is {api_limit}")
    return problems


def limits_shown(chain: nginx.Chain) -> str:
    zones = [a.removeprefix("zone=") for d in nginx.effective(chain, "limit_req") for a in d.args
             if a.startswith("zone=")]
    conns = [" ".join(d.args) for d in nginx.effective(chain, "limit_conn")]
    body = nginx.value(chain, "client_max_body_size")
    return f"client_max_body_size {body}, limit_req {', '.join(zones)}, limit_conn {', '.join(conns)}"


@check("EDGE-LIMITS", "body size, request rate and connections limited per client (nginx -T)",
       services=(EDGE,), live=True)
def check_limits(t: Target) -> Outcome:
    """One client must not take the API from the others: the edge limits each one's rate and open requests,
    and refuses bodies over the API's own limit before reading them.

    client_max_body_size must be set, not 0, and equal the API's
    MAX_BODY_BYTES; limit_req and limit_conn must apply in every location
    that proxies.
    """
    locations = proxied_locations(t)
    api = t.stack.get(API)
    api_limit = api.env().get("MAX_BODY_BYTES") if api else None
    problems = [p for where, chain in locations for p in limit_problems(chain, where, api_limit)]
    shown = dict.fromkeys(limits_shown(chain) for _, chain in locations)
    return result(not problems, f"{'; '.join(shown)} ({len(locations)} locations)", "; ".join(problems))


def tokens_problems(config: nginx.Level) -> list[str]:
    """The locations where nginx would name its version (server_tokens not off)."""
    settings = ((where, nginx.value(chain, "server_tokens")) for where, chain in nginx.locations(config))
    return [f"server_tokens {value or 'on (default)'} in {where}" for where, value in settings
            if value != "off"]


@check("EDGE-ERRORS", "edge-made errors are problem+json; no server version (nginx -T, and a 414)",
       services=(EDGE,), live=True)
def check_errors(t: Target) -> Outcome:
    """Errors the edge makes itself are problem+json like the API's (RFC 9457), and no answer names a version.

    A GET with a 9 KiB URI over the HTTP port must get 414 as
    application/problem+json with matching status and a title, and a Server
    header without a version; server_tokens must be off everywhere nginx -T
    shows, for the answers not asked for here.
    """
    where = port_of(t, EDGE_HTTP)
    try:
        answer = fetch(f"http://{where[0]}:{where[1]}/{'x' * LONG_URI}")
    except OSError as e:
        return FAIL, f"a GET with a long URI failed: {e}"
    problems = [f"status {answer.status}, expected 414"] if answer.status != 414 else []
    problems += problem_faults(answer)
    problems += [f"Server: {version}"] if (version := server_version(answer)) else []
    problems += tokens_problems(running_config(t))
    server = answer.headers.get("Server") or "none"
    return result(not problems, f"414 {answer.media_type()}, Server: {server}; server_tokens off",
                  "; ".join(problems))
