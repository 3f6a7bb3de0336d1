"""``python -m app keys create|list|revoke``: the operator's API key commands.

`create` prints the new key once, alone on stdout, so that a script can
capture it (``KEY=$(python -m app keys create ...)``); everything else goes to
stderr. The key never becomes an argument, an environment variable or a log
line. `list` shows no secret; `revoke NAME` takes effect everywhere within
the API's cache window (`auth.CACHE_SECONDS`).
"""

from __future__ import annotations

import argparse
import sys

import psycopg

from . import apikeys
from .config import Config
from .db import connection_kwargs

MAX_DAYS = 3650
COLUMNS = ("name", "id", "scope", "created", "expires", "last used", "status")


def add_parser(commands: argparse._SubParsersAction) -> None:
    keys = commands.add_parser("keys", help="create, list or revoke API keys")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a key and print it once on stdout")
    create.add_argument("--name", required=True, help="who or what the key is for (1-100 characters)")
    create.add_argument("--scope", required=True, choices=apikeys.SCOPES, help="read, or write (includes read)")
    create.add_argument("--expires-in", type=int, metavar="DAYS", help=f"days until it expires (1-{MAX_DAYS})")
    actions.add_parser("list", help="every key: name, id, scope, dates, status (never a secret)")
    revoke = actions.add_parser("revoke", help="revoke the live key with this name")
    revoke.add_argument("name")


def run(config: Config, args: argparse.Namespace) -> int:
    """Exit status: 0 done, 1 refused (the reason on stderr)."""
    problem = _check(args)
    if problem:
        print(f"keys {args.action}: {problem}", file=sys.stderr)
        return 1
    with psycopg.connect(config.conninfo, **connection_kwargs(config)) as conn:
        return {"create": _create, "list": _list, "revoke": _revoke}[args.action](conn, args)


def _check(args: argparse.Namespace) -> str | None:
    if args.action == "create":
        if not 1 <= len(args.name.strip()) <= 100 or not args.name.isprintable():
            return "--name must be 1-100 printable characters"
        if args.expires_in is not None and not 1 <= args.expires_in <= MAX_DAYS:
            return f"--expires-in must be between 1 and {MAX_DAYS} days"
    return None


def _create(conn: psycopg.Connection, args: argparse.Namespace) -> int:
    key, key_id = apikeys.new_key()
    params = {"id": key_id, "name": args.name.strip(), "scope": args.scope,
              "secret_hash": apikeys.digest(key), "days": args.expires_in}
    try:
        _, expires_at = conn.execute(apikeys.CREATE, params).fetchone()
    except psycopg.errors.UniqueViolation:
        print(f"keys create: a live key named {params['name']!r} exists; revoke it first", file=sys.stderr)
        return 1
    until = f"expires {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else "does not expire"
    print(f"created key {params['name']!r} (id {key_id}, scope {args.scope}, {until});"
          " it is shown once, below:", file=sys.stderr)
    print(key, flush=True)
    return 0


def _list(conn: psycopg.Connection, args: argparse.Namespace) -> int:
    rows = conn.execute(apikeys.LIST).fetchall()
    table = [COLUMNS] + [(name, key_id, scope, _when(created), _when(expires), _when(used), status)
                         for name, key_id, scope, created, expires, used, _, status in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _revoke(conn: psycopg.Connection, args: argparse.Namespace) -> int:
    revoked = conn.execute(apikeys.REVOKE, (args.name,)).fetchone()
    if revoked is None:
        print(f"keys revoke: no live key named {args.name!r}", file=sys.stderr)
        return 1
    print(f"revoked key {args.name!r} (id {revoked[0]}); it stops working within seconds", file=sys.stderr)
    return 0


def _when(moment) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment else "-"
