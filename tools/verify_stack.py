#!/usr/bin/env python3
"""Prove that the running stack is healthy and hardened.

Run it after `docker compose ... up` (or `make verify`; `make swarm-verify` for Swarm):

    python tools/verify_stack.py [--project NAME] [--profile prod|dev] [--json] [--wait N] [--chaos]
    python tools/verify_stack.py --swarm [--stack NAME] [same options]
    python tools/verify_stack.py --list-checks [--json | --markdown]

It reads the engine's own records of the stack (`docker inspect` through the
Docker SDK) and probes the live services, instead of trusting the compose
files: an override file, a stale container or a typo shows up here. Each
check has a stable ID, a title, a reason and, where one exists, the control
of the CIS Docker Benchmark 1.6.0 it maps to (1.6.0's numbering, not the
older 1.2.0 numbers many articles quote). `--list-checks` prints them all.

Profiles: `prod` (the default when the containers were started with
compose.prod.yaml, and for Swarm) requires every hardening setting; `dev`
reports missing hardening as warnings. Exit codes: 0 every check passes
(warnings allowed), 1 at least one check fails, 2 the verifier could not run
(no engine, no such stack). `--chaos` is opt-in and disruptive: it kills the
API's main process and stops PostgreSQL, and expects both to recover.
`--swarm [--stack NAME]` checks a Docker Swarm stack (tools/swarm.py) instead
of a Compose project; the stack defaults to $SWARM_STACK or items-swarm.

This file is the command line; the package tools/verify does the work, and
docs/verify.md explains every check.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, tools/ is on the path, not the checkout

from tools.verify.chaos import run_drills  # noqa: E402
from tools.verify.engine import DEFAULT_STACK, connect  # noqa: E402
from tools.verify.model import CannotRun  # noqa: E402
from tools.verify.registry import table  # noqa: E402
from tools.verify.report import (DOC, exit_code, list_json, list_text, markdown_table, render,  # noqa: E402
                                 render_json, with_table)
from tools.verify.run import COMPOSE, SWARM, verify, wait  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--project", help="Compose project name (default: as Compose derives it)")
    p.add_argument("--profile", choices=("prod", "dev"), help="expectations (default: prod when "
                   "compose.prod.yaml was used, else dev; prod for Swarm)")
    p.add_argument("--json", action="store_true", help="print the findings (or the checks) as JSON")
    p.add_argument("--wait", type=float, default=0, metavar="N", help="wait up to N seconds for healthy")
    p.add_argument("--chaos", action="store_true", help="also kill the API and stop PostgreSQL (disruptive)")
    p.add_argument("--swarm", action="store_true",
                   help="check a Docker Swarm stack instead of a Compose project")
    p.add_argument("--stack", help=f"Swarm stack name (default: $SWARM_STACK or {DEFAULT_STACK}; "
                   "implies --swarm)")
    p.add_argument("--list-checks", action="store_true",
                   help="list every check (id, CIS control, what and why) and exit; no engine needed")
    p.add_argument("--markdown", action="store_true", help="with --list-checks: docs/verify.md's table")
    p.add_argument("--update-docs", action="store_true",
                   help="rewrite the check table in docs/verify.md from the code, and exit")
    args = p.parse_args(argv)
    if args.stack:
        args.swarm = True
    if args.swarm and args.project:
        p.error("--project names a Compose project; a Swarm stack is --stack")
    if args.markdown and (args.json or not args.list_checks):
        p.error("--markdown goes with --list-checks, without --json")
    return args


def list_checks(args: argparse.Namespace) -> int:
    """--list-checks and --update-docs: the check table, from the code."""
    infos = [entry.info() for entry in table()]
    if args.update_docs:
        DOC.write_text(with_table(DOC.read_text(), markdown_table(infos)))
        print(f"updated the check table in {DOC.relative_to(ROOT)}")
    elif args.markdown:
        print(markdown_table(infos), end="")
    else:
        print(list_json(infos) if args.json else list_text(infos))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list_checks or args.update_docs:
        return list_checks(args)
    on = SWARM if args.swarm else COMPOSE
    name = (args.stack if args.swarm else args.project) or on.default_name()
    try:
        client = connect()
        targets = (wait(on, client, name, args.wait, profile=args.profile) if args.wait > 0
                   else on.load(client, name))
    except CannotRun as e:
        print(f"verify_stack: {e}", file=sys.stderr)
        return 2
    profile = args.profile or on.default_profile(targets)
    findings = verify(targets, profile, on)
    if args.chaos:
        findings += run_drills(targets, on.drills, profile)
    if args.json:
        print(render_json(findings, name, on.name, profile))
    else:
        print(render(findings, name, profile, on.kind))
    return exit_code(findings)


if __name__ == "__main__":
    sys.exit(main())
