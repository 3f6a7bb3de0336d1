"""Configuration, read once from the environment and validated at start-up.

Every setting is an environment variable; a secret may instead come from a
file named by ``<NAME>_FILE`` (the Docker secrets convention), so that it never
has to sit in a container's environment. A bad value raises `ConfigError`
with a message that names the variable and never shows a secret; the command
line turns it into one line on stderr and exit code 2.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import psycopg.conninfo

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
AUTH_MODES = ("required", "off")
MAX_BODY_BYTES = 64 * 1024
# A DNS name (RFC 1123 labels), as METRICS_HOST may give one.
_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*")


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it."""


@dataclass(frozen=True)
class Config:
    # libpq parameters without the password: safe to show; the password
    # travels apart and is handed to each new connection.
    conninfo: str
    database_password: str | None = field(default=None, repr=False)
    pool_min: int = 2
    pool_max: int = 4
    pool_timeout: float = 3.0
    log_level: str = "INFO"
    # An item is at most ~27 KiB of JSON (2,200 characters, each at most 12
    # bytes escaped): a bigger body can only be padding or an attack.
    max_body_bytes: int = MAX_BODY_BYTES
    host: str = "0.0.0.0"
    port: int = 5000
    workers: int = 1
    # None means "as many as the pool has connections" (see `threads`).
    blocking_threads: int | None = None
    # Seconds without any answer on /health/live before the server restarts
    # itself (see `watchdog`); 0 turns the watchdog off.
    watchdog_timeout: float = 30.0
    # Proxies in front of the API whose X-Forwarded-For/-Proto are trusted:
    # 0 when clients connect directly (development), 1 behind the edge. A
    # client could otherwise write its own address into the header.
    proxy_hops: int = 0
    # `required`: every /items endpoint needs an API key (app/auth.py). `off`
    # is for local experiments only; the verifier refuses it in production.
    auth_required: bool = True
    # Whether /docs (Swagger UI, app/docs.py) is served: API_DOCS=on|off.
    docs_enabled: bool = True
    # Prometheus metrics (app/metrics.py) on a port of their own: METRICS=on|off, METRICS_PORT.
    metrics_enabled: bool = True
    metrics_port: int = 9100
    # Where the metrics port listens: an address or a name that resolves to one of this
    # machine's own addresses (app/exposition.py). Loopback by default, so nothing outside sees
    # the figures unless told; compose.yaml names the API's alias on the backend network.
    metrics_host: str = "127.0.0.1"
    # Where the workers write their metrics (a tmpfs in the container); None: a fresh
    # temporary directory (app/exposition.py).
    metrics_dir: str | None = None
    # BACKUP_SYNC=on: PostgreSQL waits for the backup service before a commit returns; the API
    # then bounds each write's wait by `sync_commit_timeout` seconds (app/durability.py).
    backup_sync: bool = False
    sync_commit_timeout: float = 5.0
    # RELOAD=on|off: Granian restarts its workers when a file under app/
    # changes (`make dev`); only the development image can (see `_reload`).
    reload: bool = False

    @property
    def threads(self) -> int:
        """Granian's blocking threads: one per pooled connection by default.

        More threads than connections only queue on the pool while holding
        the GIL; Granian's own default (hundreds) would drown it.
        """
        return self.blocking_threads or self.pool_max

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        conninfo, url_password = _database_url(env)
        file_password = _secret_file(env, "DATABASE_PASSWORD_FILE")
        pool_min = _integer(env, "DB_POOL_MIN", 2, low=1, high=1000)
        pool_max = _integer(env, "DB_POOL_MAX", max(4, pool_min), low=1, high=1000)
        if pool_max < pool_min:
            raise ConfigError(
                f"DB_POOL_MAX ({pool_max}) must be at least DB_POOL_MIN ({pool_min})"
            )
        log_level = env.get("LOG_LEVEL", "INFO").strip().upper()
        if log_level not in LOG_LEVELS:
            raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        blocking = env.get("BLOCKING_THREADS", "").strip()
        port = _integer(env, "PORT", 5000, low=1, high=65535)
        metrics_port = _integer(env, "METRICS_PORT", 9100, low=1, high=65535)
        if metrics_port == port:
            raise ConfigError(f"METRICS_PORT ({metrics_port}) must differ from PORT ({port})")
        return cls(
            conninfo=conninfo,
            database_password=file_password if file_password is not None else url_password,
            pool_min=pool_min,
            pool_max=pool_max,
            pool_timeout=_number(env, "DB_POOL_TIMEOUT", 3.0, low=0.1, high=300),
            log_level=log_level,
            max_body_bytes=_integer(env, "MAX_BODY_BYTES", MAX_BODY_BYTES, low=1024, high=2**31),
            host=env.get("HOST", "0.0.0.0").strip() or "0.0.0.0",
            port=port,
            workers=_integer(env, "WORKERS", 1, low=1, high=64),
            blocking_threads=(
                _integer(env, "BLOCKING_THREADS", 0, low=1, high=1024) if blocking else None
            ),
            watchdog_timeout=_watchdog(env),
            proxy_hops=_integer(env, "PROXY_HOPS", 0, low=0, high=5),
            auth_required=_auth(env),
            docs_enabled=_switch(env, "API_DOCS", True),
            metrics_enabled=_switch(env, "METRICS", True),
            metrics_port=metrics_port,
            metrics_host=_host(env, "METRICS_HOST", "127.0.0.1"),
            metrics_dir=env.get("PROMETHEUS_MULTIPROC_DIR", "").strip() or None,
            backup_sync=_switch(env, "BACKUP_SYNC", False),
            sync_commit_timeout=_number(env, "DB_SYNC_COMMIT_TIMEOUT", 5.0, low=0.1, high=60),
            reload=_reload(env),
        )


def _database_url(env: Mapping[str, str]) -> tuple[str, str | None]:
    """Return libpq connection parameters without the password, and the password."""
    raw = env.get("DATABASE_URL", "").strip()
    if not raw:
        raise ConfigError("DATABASE_URL is not set (expected postgresql://user@host:port/dbname)")
    if not raw.startswith(("postgresql://", "postgres://")):
        raise ConfigError("DATABASE_URL must start with postgresql://")
    try:
        params = psycopg.conninfo.conninfo_to_dict(raw)
    except psycopg.Error:
        raise ConfigError("DATABASE_URL is not a valid PostgreSQL URI") from None
    password = params.pop("password", None)
    # Without the password the parameters are safe to log and to show.
    return psycopg.conninfo.make_conninfo("", **params), password


def _secret_file(env: Mapping[str, str], name: str) -> str | None:
    path = env.get(name, "").strip()
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read()
    except OSError as e:
        raise ConfigError(f"{name}: cannot read {path} ({e.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{name}: {path} is not UTF-8 text") from None
    # Secret files usually end with a newline that is not part of the secret.
    value = value.rstrip("\r\n")
    if not value:
        raise ConfigError(f"{name}: {path} is empty")
    return value


def _integer(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit():
        raise ConfigError(f"{name} must be a whole number from {low} to {high}, got {raw!r}")
    value = int(raw)
    if not low <= value <= high:
        raise ConfigError(f"{name} must be from {low} to {high}, got {value}")
    return value


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name, "").strip().lower()
    if not value:
        return default
    if value not in ("on", "off"):
        raise ConfigError(f"{name} must be on or off, got {value!r}")
    return value == "on"


def _host(env: Mapping[str, str], name: str, default: str) -> str:
    """An IP address, a DNS name, or a network (CIDR: the machine's address in it); whether it is
    this machine's is known only when it is bound."""
    value = env.get(name, "").strip() or default
    try:
        if "/" in value:
            return str(ipaddress.ip_network(value, strict=False))
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if len(value) > 253 or not _HOST_NAME.fullmatch(value):
        raise ConfigError(f"{name} must be an IP address, a host name or a network (CIDR), got {value!r}")
    return value


def _auth(env: Mapping[str, str]) -> bool:
    value = env.get("API_AUTH", "required").strip().lower() or "required"
    if value not in AUTH_MODES:
        raise ConfigError(f"API_AUTH must be one of {', '.join(AUTH_MODES)}, got {value!r}")
    return value == "required"


def _reload(env: Mapping[str, str]) -> bool:
    """RELOAD=on needs watchfiles, which only the development image has.

    The production image leaves it out on purpose (a server that follows its
    files is a development tool), so there RELOAD=on is refused at start-up
    rather than served without reloading.
    """
    reload = _switch(env, "RELOAD", False)
    if reload and importlib.util.find_spec("watchfiles") is None:
        raise ConfigError(
            "RELOAD=on needs watchfiles, which only the development image has (make dev)"
        )
    return reload


def _watchdog(env: Mapping[str, str]) -> float:
    value = _number(env, "WATCHDOG_TIMEOUT", 30.0, low=0, high=3600)
    if 0 < value < 5:
        raise ConfigError(f"WATCHDOG_TIMEOUT must be 0 (off) or at least 5 seconds, got {value:g}")
    return value


def _number(env: Mapping[str, str], name: str, default: float, *, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not low <= value <= high:  # also rejects nan
        raise ConfigError(f"{name} must be from {low} to {high} seconds, got {raw}")
    return value
