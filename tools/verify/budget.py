"""PostgreSQL's connection budget: do all the API tasks' pools fit in max_connections?

Shared by the verifier (CONN-BUDGET, read live) and tools/swarm.py (which
refuses to deploy rendered files that break it), so both do the same sum.
"""

from __future__ import annotations

# PostgreSQL connections kept out of the API's budget: pgAdmin sessions, psql, a starting
# task's `migrate`, monitoring.
DB_RESERVE = 10
PG_DEFAULTS = {"max_connections": 100, "superuser_reserved_connections": 3, "reserved_connections": 0}


def update_surge(replicas: int, order: str, parallelism: int) -> int:
    """Extra tasks an update (or rollback) runs next to the old ones: start-first only.

    Parallelism 0 means all at once, as in Swarm.
    """
    if order != "start-first" or replicas <= 0:
        return 0
    return replicas if parallelism <= 0 else min(parallelism, replicas)


def postgres_settings(command: list[str] | None, live: dict[str, str] | None = None) -> dict[str, int]:
    """max_connections and the reserved slots, from `SHOW` output (live) or `-c name=value` arguments."""
    settings = dict(PG_DEFAULTS)
    args = list(command or [])
    for i, arg in enumerate(args):
        pair = args[i + 1] if arg == "-c" and i + 1 < len(args) else arg[2:] if arg.startswith("--") else ""
        name, _, value = pair.partition("=")
        name = name.replace("-", "_")
        if name in settings and value.strip().isdigit():
            settings[name] = int(value)
    for name, value in (live or {}).items():
        if name in settings and str(value).strip().isdigit():
            settings[name] = int(value)
    return settings


def connection_budget(api_env: dict[str, str], replicas: int, surge: int, settings: dict[str, int],
                      reserve: int = DB_RESERVE) -> tuple[bool, str]:
    """Whether every API task's pools fit in PostgreSQL, with room to spare.

    Each task opens at most WORKERS x DB_POOL_MAX connections (app/config.py's
    defaults: 1 and max(4, DB_POOL_MIN)); a start-first update runs `surge` more
    tasks for a while. That must fit under max_connections minus the slots
    PostgreSQL keeps for superusers (and for pg_use_reserved_connections) minus
    `reserve` for everything else.
    """
    try:
        workers = int(str(api_env.get("WORKERS") or "1"))
        pool_min = int(str(api_env.get("DB_POOL_MIN") or "2"))
        pool_max = int(str(api_env.get("DB_POOL_MAX") or max(4, pool_min)))
    except ValueError as e:
        return False, f"unreadable pool settings ({e})"
    tasks = replicas + surge
    need = tasks * workers * pool_max
    room = (settings["max_connections"] - settings["superuser_reserved_connections"]
            - settings["reserved_connections"] - reserve)
    detail = (f"{tasks} tasks ({replicas} + {surge} while updating) x {workers} workers x {pool_max} "
              f"connections = {need}, room {room} (max_connections {settings['max_connections']} - "
              f"{settings['superuser_reserved_connections']} superuser - {settings['reserved_connections']} "
              f"reserved - {reserve} spare)")
    return need <= room, detail
