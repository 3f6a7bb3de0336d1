"""The verifier's shared vocabulary: the services it knows, the three results, a finding, its errors.

Every other module of tools/verify speaks in these terms, so they live in one
place that imports nothing of the package.
"""

from __future__ import annotations

from dataclasses import dataclass

CIS = "CIS Docker Benchmark 1.6.0"
PASS, WARN, FAIL = "pass", "warn", "fail"

# The stack's services, as the compose files name them. The edge (nginx, compose.prod.yaml and
# compose.swarm.yaml) is where clients reach the API in production; a development stack
# (compose.yaml alone) has none. The backup service (Barman, build/backup) is in every stack;
# on Swarm the verifier does not check it yet.
API, POSTGRES, PGADMIN, EDGE, BACKUP = "flask-api", "postgres", "pgadmin", "edge", "backup"
# The `monitoring` profile (docs/observability.md): checked like the rest when it runs, never
# missed when it does not.
PROMETHEUS, POSTGRES_EXPORTER, NGINX_EXPORTER = "prometheus", "postgres-exporter", "nginx-exporter"
MONITORING = (PROMETHEUS, POSTGRES_EXPORTER, NGINX_EXPORTER)
SERVICES = (API, POSTGRES, PGADMIN, EDGE, BACKUP, *MONITORING)
SWARM_SERVICES = (API, POSTGRES, PGADMIN, EDGE)
PROD_ONLY = (EDGE,)  # absent from a development stack, and not missed there
# Upstream's nginx exporter image is FROM scratch: no command a health check could run. It is
# ready once running (a warning, not a failure); Prometheus' `up` for it says whether it works.
NO_HEALTHCHECK = (NGINX_EXPORTER,)
# The services that get secrets (passwords, the TLS key): all but Prometheus and the nginx exporter.
WITH_SECRETS = tuple(s for s in SERVICES if s not in (PROMETHEUS, NGINX_EXPORTER))
# The edge's container ports (build/edge/templates/edge.conf.template): plain HTTP and HTTPS.
EDGE_HTTP, EDGE_HTTPS = 8080, 8443

Outcome = tuple[str, str]  # (result, detail): what every check returns


class CannotRun(Exception):
    """The verifier cannot do its job (no engine, no stack): exit code 2."""


class Failed(Exception):
    """A check met its failure before judging anything (a port not published, nothing to read): the detail."""


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
