"""The stack verifier behind tools/verify_stack.py, one job per module.

- model:    the shared vocabulary: services, results, Finding, the errors
- values:   read the engine's raw values exactly (pure, unit-tested)
- nginx:    read nginx's running configuration (`nginx -T`) (pure, unit-tested)
- tls:      the certificate a port serves, and which TLS versions it speaks
- web:      HTTP(S) answers whole, and the readings of them the edge's checks share
- budget:   PostgreSQL's connection budget (also used by tools/swarm.py)
- targets:  what a check looks at: a Compose container, or a Swarm service adapted to look like one
- registry: the one check table (`@check`) and how one check runs
- checks:   every container check, one decorated function each
- edge:     the edge's checks (TLS, HSTS, nginx -T, its own errors)
- chaos:    the --chaos drills (in the same table, run only when asked)
- engine:   load the stack from the Docker engine
- run:      Compose or Swarm, the wait loop, the checks into findings
- report:   the findings as text or JSON; the check table as text, JSON or Markdown
"""
