"""Unit tests for the verifier's API checks (tools/verify/api.py: AUTH, API-DOCS), no engine.

tests/unit/data/api/answers.json holds what the real prod stack answered
through the edge's HTTP port to GETs without credentials (status, headers,
body): `items-no-key` (API_AUTH unset: 401), `items-auth-off` (the weakened
stack's API_AUTH=off: 200), `docs-on` (API_DOCS unset: the page with its
Content-Security-Policy) and `docs-off` (API_DOCS=off: 404); `api-env` is
the API container's environment then. The checks talk to a real local server
replaying one of those answers, published as the edge's HTTP port
(edge_doubles.py); the API's container is the captured prod record with the
environment each test sets.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from edge_doubles import API_ANSWERS as CAPTURED
from edge_doubles import DATA, edge_record, server

from tools.verify import api, web
from tools.verify.model import API, EDGE, FAIL, PASS, WARN
from tools.verify.registry import run_check
from tools.verify.run import COMPOSE, SWARM
from tools.verify.targets import Target

API_RECORD = json.loads((DATA / "inspect" / "stack-flask-api.json").read_text())
NO_KEY_DETAIL = ('API_AUTH unset (required); GET /items without a key: 401, Bearer realm="items", '
                 "application/problem+json")


def api_target(port: int | None, **env: str) -> Target:
    """The captured API container, with the environment it ran with and `env` set in it (None
    removes a variable), behind an edge whose HTTP port is the local `port`."""
    attrs = copy.deepcopy(API_RECORD)
    kept = [e for e in CAPTURED["api-env"] if e.partition("=")[0] not in env]
    attrs["Config"]["Env"] = kept + [f"{k}={v}" for k, v in env.items() if v is not None]
    stack = {EDGE: Target(EDGE, edge_record(http=port))}
    return stack.setdefault(API, Target(API, attrs, stack=stack))


@contextmanager
def answering(name: str, **changes) -> Iterator[int]:
    """A local server replaying the captured answer `name` (with `changes`: status, headers, body)."""
    with server({**CAPTURED[name], **changes}) as port:
        yield port


def headers(name: str, **replaced: str | None) -> list[list[str]]:
    """The captured answer's headers with some replaced (None: removed); names in any case."""
    names = {k.lower() for k in replaced}
    kept = [[k, v] for k, v in CAPTURED[name]["headers"] if k.lower() not in names]
    return kept + [[k, v] for k, v in replaced.items() if v is not None]


# --- what was captured -----------------------------------------------------------------------------


def test_the_captured_api_ran_as_compose_starts_it():
    assert "API_AUTH=required" in CAPTURED["api-env"]
    assert not [e for e in CAPTURED["api-env"] if e.startswith("API_DOCS=")]


# --- AUTH ------------------------------------------------------------------------------------------


def test_the_stacks_401_with_auth_unset_passes():
    with answering("items-no-key") as port:
        assert api.check_auth(api_target(port, API_AUTH=None)) == (PASS, NO_KEY_DETAIL)


def test_the_stacks_401_with_auth_required_passes():
    with answering("items-no-key") as port:
        outcome, detail = api.check_auth(api_target(port))
    assert (outcome, detail) == (PASS, NO_KEY_DETAIL.replace("API_AUTH unset (required)", "API_AUTH=required"))


def test_the_setting_is_read_as_the_api_reads_it():
    with answering("items-no-key") as port:
        outcome, detail = api.check_auth(api_target(port, API_AUTH=" Required "))
    assert outcome == PASS and detail.startswith("API_AUTH=Required; GET /items without a key: 401")


def test_auth_off_fails_on_the_setting_and_on_the_answer():
    with answering("items-auth-off") as port:
        outcome, detail = api.check_auth(api_target(port, API_AUTH="off"))
    assert outcome == FAIL
    assert detail.split("; ") == [
        "API_AUTH=off: /items answers anyone (required is the only value the verifier accepts in prod)",
        "GET /items without a key: 200, expected 401"]


def test_auth_off_is_a_warning_under_the_dev_profile_only():
    check = next(c for c in COMPOSE.checks if c.id == "AUTH")
    with answering("items-auth-off") as port:
        target = api_target(port, API_AUTH="off")
        dev, prod = run_check(check, target, "dev"), run_check(check, target, "prod")
    assert (dev.result, prod.result) == (WARN, FAIL)
    assert dev.detail.endswith("(dev profile: not required)")


def test_an_open_api_fails_even_with_auth_unset():
    with answering("items-auth-off") as port:
        outcome, detail = api.check_auth(api_target(port, API_AUTH=None))
    assert (outcome, detail) == (FAIL, "GET /items without a key: 200, expected 401")


def test_an_unknown_auth_value_fails():
    with answering("items-no-key") as port:
        outcome, detail = api.check_auth(api_target(port, API_AUTH="maybe"))
    assert (outcome, detail) == (FAIL, "API_AUTH=maybe: not required or off")


@pytest.mark.parametrize(("challenge", "shown"), [
    (None, "missing"),
    ('Basic realm="items"', 'Basic realm="items"'),
    ('Bearer realm="other"', 'Bearer realm="other"'),
    # RFC 6750 3.1: a request without credentials gets no error code.
    ('Bearer realm="items", error="invalid_token"', 'Bearer realm="items", error="invalid_token"'),
])
def test_a_401_without_the_items_bearer_challenge_fails(challenge, shown):
    replaced = headers("items-no-key", **{"WWW-Authenticate": challenge})
    with answering("items-no-key", headers=replaced) as port:
        outcome, detail = api.check_auth(api_target(port))
    assert (outcome, detail) == (FAIL, f'WWW-Authenticate {shown}, expected Bearer realm="items"')


def test_a_401_that_is_no_problem_document_fails():
    with answering("items-no-key", body="Unauthorized",
                   headers=headers("items-no-key", **{"Content-Type": "text/plain"})) as port:
        outcome, detail = api.check_auth(api_target(port))
    assert outcome == FAIL
    assert detail == "Content-Type text/plain; body is not JSON: 'Unauthorized'"


def test_an_unreachable_api_fails_auth_and_docs():
    target = api_target(None)
    assert api.check_auth(target) == (FAIL, "GET /items failed: no published port")
    assert api.check_docs(target) == (FAIL, "GET /docs failed: no published port")


# --- API-DOCS --------------------------------------------------------------------------------------


def test_docs_on_by_default_with_the_pages_policy_passes_and_says_so():
    with answering("docs-on") as port:
        assert api.check_docs(api_target(port, API_DOCS=None)) == (
            PASS, "on: API_DOCS unset (on), GET /docs 200 with a same-origin Content-Security-Policy")


def test_docs_off_answering_404_passes_and_says_so():
    with answering("docs-off") as port:
        assert api.check_docs(api_target(port, API_DOCS="off")) == (PASS, "off: API_DOCS=off, GET /docs 404")


def test_docs_on_without_a_policy_fails():
    with answering("docs-on", headers=headers("docs-on", **{"Content-Security-Policy": None})) as port:
        assert api.check_docs(api_target(port)) == (
            FAIL, "GET /docs 200, Content-Security-Policy: no Content-Security-Policy")


def test_docs_on_with_a_policy_allowing_a_cdn_fails():
    policy = "default-src 'self'; script-src 'self' https://cdn.example"
    with answering("docs-on", headers=headers("docs-on", **{"Content-Security-Policy": policy})) as port:
        assert api.check_docs(api_target(port)) == (
            FAIL, "GET /docs 200, Content-Security-Policy: script-src https://cdn.example")


@pytest.mark.parametrize(("name", "env", "detail"), [
    ("docs-on", "off", "API_DOCS=off but GET /docs 200, expected 404"),
    ("docs-off", "on", "API_DOCS=on but GET /docs 404, expected 200"),
    ("docs-on", "yes", "API_DOCS=yes: not on or off"),
])
def test_docs_not_doing_what_its_setting_says_fails(name, env, detail):
    with answering(name) as port:
        assert api.check_docs(api_target(port, API_DOCS=env)) == (FAIL, detail)


def test_both_checks_run_on_the_api_under_compose_and_swarm():
    for orchestrator in (COMPOSE, SWARM):
        found = {c.id: (c.fn, c.services) for c in orchestrator.checks if c.id in ("AUTH", "API-DOCS")}
        assert found == {"AUTH": (api.check_auth, (API,)), "API-DOCS": (api.check_docs, (API,))}


# --- the readings (web.py) -------------------------------------------------------------------------


@pytest.mark.parametrize(("challenge", "params"), [
    ('Bearer realm="items"', {"realm": "items"}),
    ('bearer realm="items", error="insufficient_scope", scope="write"',
     {"realm": "items", "error": "insufficient_scope", "scope": "write"}),
    ('Bearer realm="a \\"quoted\\" realm"', {"realm": 'a "quoted" realm'}),
    ("Bearer", {}),
    ('Basic realm="items"', None),
    ("Bearer realm=", {"realm": ""}),
    ('Bearer realm="items" error', None),
    (None, None),
])
def test_bearer_challenges_are_read_per_rfc_6750(challenge, params):
    assert web.bearer_params(challenge) == params


def test_the_captured_page_policy_is_same_origin():
    policy = dict(CAPTURED["docs-on"]["headers"])["content-security-policy"]
    assert "default-src 'none'" in policy and web.csp_faults(policy) == []


@pytest.mark.parametrize(("policy", "faults"), [
    ("", ["no Content-Security-Policy"]),
    ("script-src 'self'", ["no default-src"]),
    ("default-src *", ["default-src *"]),
    ("default-src 'self'; script-src 'self' 'unsafe-inline'", ["script-src 'unsafe-inline'"]),
    ("default-src 'self' data:; img-src 'self' data:", ["default-src data:"]),
    ("default-src 'none'; connect-src https:; frame-ancestors http://x", ["connect-src https:",
                                                                          "frame-ancestors http://x"]),
    # CSP 3: the first of a repeated directive counts, later ones are ignored.
    ("default-src 'self'; default-src https://cdn.example", []),
    ("default-src 'SELF'; upgrade-insecure-requests; sandbox allow-scripts", []),
])
def test_a_policy_is_same_origin_only_with_self_or_none(policy, faults):
    assert web.csp_faults(policy) == faults
