"""What the API promises its clients at the door: no `/items` without a key, and which way `/docs` is.

Both are read twice, as the container is configured (API_AUTH, API_DOCS in
its environment) and as a client meets it (a GET through the stack's entry
point, the edge's HTTP port in prod). The probes send no credentials: the
verifier never makes, holds or prints an API key. Registered after the
container checks (checks.py), before the edge's (edge.py).
"""

from __future__ import annotations

from .model import API, FAIL, Outcome, result
from .registry import check
from .targets import Target
from .web import Answer, bearer_params, csp_faults, problem_faults

REALM = "items"  # app/auth.py's realm, in every challenge the API sends


def setting(t: Target, name: str, default: str) -> tuple[str, str]:
    """(the value the API runs with, how to show it): an unset or empty variable means `default`,
    as app/config.py reads it."""
    raw = t.env().get(name)
    value = (raw or "").strip().lower() or default
    return value, f"{name}={raw.strip()}" if raw and raw.strip() else f"{name} unset ({default})"


def ask(t: Target, path: str) -> Answer:
    try:
        return t.request(path)
    except (OSError, ValueError) as e:
        raise ConnectionError(f"GET {path} failed: {e}") from None


def refusal_faults(answer: Answer) -> list[str]:
    """What is wrong with the answer to a GET /items without credentials: 401, a Bearer challenge
    for the items realm with no error (RFC 6750 3.1: no credentials, no error code), a problem
    document."""
    if answer.status != 401:
        return [f"GET /items without a key: {answer.status}, expected 401"]
    challenge = answer.headers.get("WWW-Authenticate")
    params = bearer_params(challenge)
    ok = params is not None and params.get("realm") == REALM and "error" not in params
    faults = [] if ok else [f'WWW-Authenticate {challenge or "missing"}, expected Bearer realm="{REALM}"']
    return faults + problem_faults(answer)


@check("AUTH", "/items refuses a request without an API key (401); API_AUTH is required", services=(API,),
       hardening=True, live=True)
def check_auth(t: Target) -> Outcome:
    """Without a key nobody reads or writes an item: API_AUTH must be `required` (unset means required;
    `off` is for local experiments only), and a GET /items without credentials must get 401.

    The 401 must carry `WWW-Authenticate: Bearer realm="items"` and a
    problem+json body, as a client meets it through the edge. Under --profile
    dev a failure is a warning: a development stack may run with
    API_AUTH=off on purpose.
    """
    mode, shown = setting(t, "API_AUTH", "required")
    faults = []
    if mode == "off":
        faults.append(f"{shown}: /items answers anyone (required is the only value the verifier "
                      "accepts in prod)")
    elif mode != "required":
        faults.append(f"{shown}: not required or off")
    try:
        answer = ask(t, "/items")
    except ConnectionError as e:
        return FAIL, "; ".join([*faults, str(e)])
    faults += refusal_faults(answer)
    challenge = answer.headers.get("WWW-Authenticate")
    good = f"{shown}; GET /items without a key: 401, {challenge}, {answer.media_type()}"
    return result(not faults, good, "; ".join(faults))


@check("API-DOCS", "reports whether /docs is served; when it is, with a same-origin CSP", services=(API,),
       live=True)
def check_docs(t: Target) -> Outcome:
    """/docs (Swagger UI) is a choice, not a fault: the check passes either way and says which way it is
    (API_DOCS, and what GET /docs answers). Served, the page must keep to its own origin.

    With API_DOCS on (the default) GET /docs must answer 200 with a
    Content-Security-Policy that allows this origin only (default-src set;
    no source but 'self' or 'none', and data: for images and fonts); with
    API_DOCS=off it must answer 404.
    """
    mode, shown = setting(t, "API_DOCS", "on")
    if mode not in ("on", "off"):
        return FAIL, f"{shown}: not on or off"
    try:
        answer = ask(t, "/docs")
    except ConnectionError as e:
        return FAIL, str(e)
    if mode == "off":
        return result(answer.status == 404, f"off: {shown}, GET /docs 404",
                      f"{shown} but GET /docs {answer.status}, expected 404")
    if answer.status != 200:
        return FAIL, f"{shown} but GET /docs {answer.status}, expected 200"
    faults = csp_faults(answer.headers.get("Content-Security-Policy"))
    return result(not faults, f"on: {shown}, GET /docs 200 with a same-origin Content-Security-Policy",
                  f"GET /docs 200, Content-Security-Policy: {'; '.join(faults)}")
