"""The verifier's shared vocabulary: the services it knows, the three results, a finding, its errors.

Every other module of tools/verify speaks in these terms, so they live in one
place that imports nothing of the package.
"""

from __future__ import annotations

from dataclasses import dataclass

CIS = "CIS Docker Benchmark 1.6.0"
PASS, WARN, FAIL = "pass", "warn", "fail"

# The stack's services, as compose.yaml names them; the Swarm stack adds its entry point, the
# edge (nginx, compose.prod.yaml's `edge`).
API, POSTGRES, PGADMIN = "flask-api", "postgres", "pgadmin"
EDGE = "edge"
# The backup service (Barman, issue #16): in the Compose stack only, so far.
BACKUP = "backup"
SERVICES = (API, POSTGRES, PGADMIN)
COMPOSE_SERVICES = (*SERVICES, BACKUP)
SWARM_SERVICES = (*SERVICES, EDGE)

Outcome = tuple[str, str]  # (result, detail): what every check returns


class CannotRun(Exception):
    """The verifier cannot do its job (no engine, no stack): exit code 2."""


class NotHere(Exception):
    """A live probe found no task of the service on this node (Swarm): a warning, not a failure."""


@dataclass
class Finding:
    """One check's result on one service, as printed and as --json reports it."""

    service: str
    id: str
    title: str
    cis: str
    result: str
    detail: str


def result(ok: bool, good: str, bad: str) -> Outcome:
    """PASS with `good` when ok, else FAIL with `bad`."""
    return (PASS, good) if ok else (FAIL, bad)
