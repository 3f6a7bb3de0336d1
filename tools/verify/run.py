"""How a verification runs: Compose or Swarm, the one wait loop, and the checks into findings.

An `Orchestrator` holds the little that differs between checking a Compose
project and a Swarm stack (its services, how to load them, the default name
and profile); its checks and drills are its view of the one check table.
Everything else (waiting, running the checks, the report) is shared.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from .engine import compose_project_name, default_stack, detect_profile, load_swarm, load_targets
from .model import FAIL, MONITORING, PROD_ONLY, SERVICES, SWARM_SERVICES, Finding
from .registry import Check, run_check, table
from .targets import Target


@dataclass(frozen=True)
class Orchestrator:
    """What differs between checking a Compose project and a Swarm stack."""

    name: str  # compose or swarm, as the report and the check table say it
    kind: str  # how the report names what it checked
    services: tuple[str, ...]
    missing: str  # what a service without targets lacks
    load: Callable[[object, str], dict[str, Target]]  # (client, project or stack name)
    default_name: Callable[[], str]
    default_profile: Callable[[dict[str, Target]], str]

    @property
    def checks(self) -> tuple[Check, ...]:
        return tuple(c for e in table() if not e.drill and (c := e.form(self.name, self.services)))

    @property
    def drills(self) -> tuple[Check, ...]:
        return tuple(c for e in table() if e.drill and (c := e.form(self.name, self.services)))


COMPOSE = Orchestrator("compose", "Stack", SERVICES, "no container", load_targets, compose_project_name,
                       detect_profile)
SWARM = Orchestrator("swarm", "Swarm stack", SWARM_SERVICES, "no Swarm service", load_swarm, default_stack,
                     lambda targets: "prod")


def expected(on: Orchestrator, targets: dict[str, Target], profile: str) -> tuple[str, ...]:
    """The services to check: the orchestrator's, less a prod-only one (the edge) that a dev stack lacks
    and the monitoring profile's when it does not run."""
    return tuple(s for s in on.services
                 if s in targets or ((profile != "dev" or s not in PROD_ONLY) and s not in MONITORING))


def verify(targets: dict[str, Target], profile: str, on: Orchestrator = COMPOSE) -> list[Finding]:
    """Every check on every service it applies to; a missing service is one failure."""
    findings = []
    table = on.checks
    for service in expected(on, targets, profile):
        t = targets.get(service)
        if t is None:
            findings.append(Finding(service, table[0].id, table[0].title, "", FAIL,
                                    f"{on.missing} for this service"))
            continue
        findings += [run_check(c, t, profile) for c in table if service in c.services]
    return findings


def health_word(t: Target | None) -> str:
    return "missing" if t is None else t.health()


def wait(on: Orchestrator, client, name: str, seconds: float, out=sys.stderr,
         profile: str | None = None) -> dict[str, Target]:
    """Load until every expected service is ready, or the time is up; progress on one line (redrawn on a tty).

    Without a `profile`, the one the stack itself suggests decides which services are expected.
    """
    deadline = time.monotonic() + seconds
    last, tty = "", out.isatty()
    while True:
        targets = on.load(client, name)
        services = expected(on, targets, profile or on.default_profile(targets))
        line = ", ".join(f"{s} {health_word(targets.get(s))}" for s in services)
        left = deadline - time.monotonic()
        if all(s in targets and targets[s].ready() for s in services) or left <= 0:
            if last:
                print(("\r" if tty else "") + f"waited: {line}" + (" " * 10), file=out)
            return targets
        if line != last or tty:
            print(("\r" if tty else "") + f"waiting up to {left:.0f}s: {line}", end="" if tty else "\n",
                  file=out, flush=True)
            last = line
        time.sleep(1)
