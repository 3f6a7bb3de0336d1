"""Command line: ``python -m app serve|migrate|keys|healthcheck``.

Containers and people run the same commands. A configuration error ends the
process with exit code 2 and one line naming the variable, never a
traceback or a secret.
"""

from __future__ import annotations

import argparse
import sys

import psycopg

from . import keyadmin
from .config import Config, ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="serve the API with Granian (HOST, PORT, WORKERS...)")
    commands.add_parser("migrate", help="apply pending database migrations")
    keyadmin.add_parser(commands)
    commands.add_parser("healthcheck", help="exit 0 when the local /health/live answers 200")
    args = parser.parse_args(argv)

    if args.command == "healthcheck":
        # Only the port matters here; the check must not need the database settings.
        from .healthcheck import main as healthcheck

        return healthcheck()

    try:
        config = Config.from_env()
    except ConfigError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2

    if args.command == "migrate":
        from . import logs
        from .migrate import MigrationError, migrate

        logs.setup(config.log_level)
        try:
            migrate(config)
        except (MigrationError, OSError) as e:
            print(f"migration failed: {e}", file=sys.stderr)
            return 1
        except Exception as e:  # psycopg errors: the message, not a traceback
            print(f"migration failed: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
        return 0

    if args.command == "keys":
        try:
            return keyadmin.run(config, args)
        except psycopg.Error as e:  # the message, not a traceback
            print(f"keys {args.action} failed: {type(e).__name__}: {e}", file=sys.stderr)
            return 1

    from .serve import serve

    return serve(config)


if __name__ == "__main__":
    sys.exit(main())
