"""Read the engine's raw values exactly: pure functions, unit-tested on their own.

The checks judge real values, not loose string matches (docker-bench-security
accepts `no-new-privileges:false` because the text is there); these helpers
parse what the engine stores the way the engine itself reads it.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

SECRETS_DIR = "/run/secrets/"
# Defaults when the API's DATABASE_URL does not say (see app/config.py).
DEFAULT_ROLE, DEFAULT_DB = "app", "appdb"
NS = 1_000_000_000  # Swarm's durations are nanoseconds


def no_new_privileges(security_opt: list[str] | None) -> bool | None:
    """True/False when SecurityOpt sets no-new-privileges, None when it does not.

    The engine accepts `no-new-privileges`, `no-new-privileges:true` and
    `no-new-privileges=true` (and false with either separator). Matching the
    bare string, as docker-bench does, would also accept `:false`. The last
    setting wins, as in the engine.
    """
    value = None
    for opt in security_opt or []:
        m = re.fullmatch(r"\s*no-new-privileges\s*(?:[:=]\s*(\S*))?\s*", opt, re.IGNORECASE)
        if m:
            # The engine parses the value with Go's strconv.ParseBool.
            value = m.group(1) is None or m.group(1).lower() in ("1", "t", "true")
    return value


def capabilities(host_config: dict) -> tuple[bool, list[str]]:
    """(all capabilities dropped, capabilities added back), normalised without `CAP_`.

    The engine stores what it was given, upper-cased with `CAP_` for names;
    `ALL` stays `ALL`.
    """

    def norm(caps):
        return [c.upper().removeprefix("CAP_") for c in caps or []]

    return "ALL" in norm(host_config.get("CapDrop")), sorted(norm(host_config.get("CapAdd")))


def port_bindings(attrs: dict) -> list[tuple[str, str, str]]:
    """Every published binding as (container port, host ip, host port).

    The live NetworkSettings.Ports is what the engine really bound; it falls
    back to HostConfig.PortBindings for a container that is not running.
    An empty host ip means every interface, as `0.0.0.0` does.
    """
    ports = (attrs.get("NetworkSettings") or {}).get("Ports")
    if not ports:
        ports = (attrs.get("HostConfig") or {}).get("PortBindings") or {}
    out = []
    for container_port, bindings in sorted(ports.items()):
        for b in bindings or []:
            out.append((container_port, b.get("HostIp") or "0.0.0.0", b.get("HostPort") or ""))
    return out


def is_loopback(host_ip: str) -> bool:
    try:
        return ipaddress.ip_address(host_ip).is_loopback
    except ValueError:
        return False


def published_port(attrs: dict, port: int | None = None) -> tuple[str, int] | None:
    """Where this host reaches the service: (host, port) of its first TCP binding, or container `port`'s."""
    for container_port, host_ip, host_port in port_bindings(attrs):
        if port and container_port != f"{port}/tcp":
            continue
        if container_port.endswith("/tcp") and host_port.isdigit() and host_port != "0":
            if host_ip in ("0.0.0.0", "::", ""):
                host_ip = "127.0.0.1"
            return (f"[{host_ip}]" if ":" in host_ip else host_ip), int(host_port)
    return None


SECRET_WORDS = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|PRIVATE")
# A word that ends in KEY (API_KEY, APIKEY, SECRET_KEY) or is PASS / PW.
SECRET_WORD_ENDINGS = ("KEY", "KEYS")
SECRET_EXACT_WORDS = {"PASS", "PW"}
# Names that look secret but are not: the official python image's GPG_KEY is
# the fingerprint of the CPython release key, public by design.
NOT_SECRET = {"GPG_KEY"}
BOOLEAN_WORDS = {"true", "false", "yes", "no", "on", "off", "0", "1"}


def looks_secret(name: str) -> bool:
    """Whether an environment variable's name suggests a password, secret, key or token."""
    upper = name.upper()
    if upper in NOT_SECRET:
        return False
    if SECRET_WORDS.search(upper):
        return True
    return any(w.endswith(SECRET_WORD_ENDINGS) or w in SECRET_EXACT_WORDS for w in upper.split("_"))


def env_secret_problem(name: str, value: str) -> str | None:
    """Why this variable exposes a secret, or None.

    Secrets belong in files under /run/secrets, never in the environment:
    `docker inspect`, /proc/<pid>/environ, crash reports and (under Granian)
    every WSGI environ show the environment. A `*_FILE` name pointing under
    /run/secrets is the safe convention; an empty value or a boolean switch
    (`..._PASSWORD_REQUIRED=False`) carries nothing; a URL with a password
    inside is a secret whatever the variable is called.
    """
    if "://" in value:
        try:
            if urlsplit(value).password:
                return f"{name} holds a URL with a password"
        except ValueError:
            pass
    if not looks_secret(name) or not value.strip():
        return None
    if name.upper().endswith("_FILE"):
        return None if value.startswith(SECRETS_DIR) else f"{name} points outside {SECRETS_DIR}"
    if value.strip().lower() in BOOLEAN_WORDS:
        return None
    return f"{name} carries a value"


def restart_policy(host_config: dict) -> tuple[str, int]:
    policy = host_config.get("RestartPolicy") or {}
    return policy.get("Name") or "no", int(policy.get("MaximumRetryCount") or 0)


def format_restart(name: str, retries: int) -> str:
    return f"{name}:{retries}" if name == "on-failure" and retries else name


def config_uid(user: str | None) -> str | None:
    """The user part of Config.User ('999:999' -> '999'); None when unset."""
    user = (user or "").strip()
    return user.split(":", 1)[0] if user else None


def database_target(api_env: dict[str, str]) -> tuple[str, str]:
    """The API's database role and name, from its DATABASE_URL."""
    try:
        url = urlsplit(api_env.get("DATABASE_URL", ""))
        role = url.username or DEFAULT_ROLE
        db = url.path.lstrip("/") or DEFAULT_DB
    except ValueError:
        return DEFAULT_ROLE, DEFAULT_DB
    return role, db


def duration(ns: int | None) -> str:
    """Nanoseconds (Swarm's unit) as Compose writes them: 10s, 1m30s, 0s."""
    seconds = (ns or 0) / NS
    minutes, rest = divmod(seconds, 60)
    return (f"{int(minutes)}m" if minutes else "") + (f"{rest:g}s" if rest or not minutes else "")


CONSTRAINT = re.compile(r"\s*([\w.\-]+)\s*(==|!=)\s*(\S+)\s*")


def node_matches(node: dict, constraint: str) -> bool | None:
    """Whether a Swarm node satisfies one placement constraint; None for a key this does not know."""
    m = CONSTRAINT.fullmatch(constraint)
    if not m:
        return None
    key, op, value = m.groups()
    spec, desc = node.get("Spec") or {}, node.get("Description") or {}
    if key == "node.id":
        actual = node.get("ID")
    elif key == "node.hostname":
        actual = desc.get("Hostname")
    elif key == "node.role":
        actual = spec.get("Role")
    elif key.startswith("node.labels."):
        actual = (spec.get("Labels") or {}).get(key.removeprefix("node.labels."))
    elif key.startswith("engine.labels."):
        actual = ((desc.get("Engine") or {}).get("Labels") or {}).get(key.removeprefix("engine.labels."))
    else:
        return None
    return (actual == value) if op == "==" else (actual != value)
