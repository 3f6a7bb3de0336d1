"""Before anything is measured: every peer answers the benchmarked reads with the same JSON as
ours, value for value, so that a faster peer cannot be one that does less; and every route through
an edge answers with the JSON of the API behind it (HTTPS verified against the edge's certificate),
so that the edge passes requests through rather than answering them itself; ours without API keys
answers like ours. Timestamps compare as instants (pydantic writes UTC with `Z`, the others with
`+00:00`).

And that the key is really checked where it is sent: without it ours, directly and through its edge,
answers 401, while ours without API keys answers 200 (the peers have no auth)."""

from __future__ import annotations

import datetime as dt
import json
import ssl

from .config import CLONES, EDGE_ROUTES, OURS_NO_AUTH, PEERS
from .records import ContractCheck
from .shell import get_json, log
from .stack import Candidate, Stack

TIMESTAMPS = ("created_at", "updated_at")


def same_item(a: dict, b: dict) -> bool:
    if set(a) != set(b):
        return False
    for k, value in a.items():
        if k in TIMESTAMPS:
            if dt.datetime.fromisoformat(value) != dt.datetime.fromisoformat(b[k]):
                return False
        elif value != b[k]:
            return False
    return True


def same_page(a: dict, b: dict) -> bool:
    """Two pages of `GET /items`: the same items, and a next cursor on both or on neither."""
    return (set(a) == set(b) and len(a["items"]) == len(b["items"])
            and all(same_item(x, y) for x, y in zip(a["items"], b["items"], strict=True))
            and (a["next_cursor"] is None) == (b["next_cursor"] is None))


def _get(c: Candidate, path: str, context: ssl.SSLContext, key: bool = True) -> tuple[int, dict | None]:
    """GET `path` from `c` (with its API key unless `key` is false; HTTPS verified with `context`)."""
    return get_json(f"{c.url}{path}", context=context if c.scheme == "https" else None,
                    headers=c.headers if key else None)


def _check_keys(stack: Stack, path: str, tls: ssl.SSLContext, report: ContractCheck) -> None:
    """Without a key: 401 from every candidate that is sent one, 200 from ours without API keys."""
    for key, c in stack.candidates.items():
        if c.api_key or key == OURS_NO_AUTH:
            status, _ = _get(c, path, tls, key=False)
            report.without_key[key] = status
            expected = 401 if c.api_key else 200
            if status != expected:
                report.ok = False
                report.problems.append(f"{key} {path} without a key: {status}, expected {expected}")


def _same(status: int, body: dict | None, peer_status: int, peer_body: dict | None) -> bool:
    if peer_status != status or peer_body is None or body is None:
        return False
    return same_page(body, peer_body) if "items" in body else same_item(body, peer_body)


def contract_check(stack: Stack) -> ContractCheck:
    """Every peer and ours once more (CLONES: without API keys, without metrics) answer `GET /items/<id>` and `GET /items?limit=20` with our
    JSON, every edge route with its API's; and the key is checked where it is sent."""
    paths = (f"/items/{stack.id_range[0]}", "/items?limit=20")
    tls = ssl.create_default_context(cafile=str(stack.tls_cert))
    report = ContractCheck()
    pairs = ([(key, "ours") for key in (*PEERS, *CLONES)]
             + [(key, r.api) for key, r in EDGE_ROUTES.items()])
    for key, reference in pairs:
        c, ref = stack.candidates[key], stack.candidates[reference]
        for path in paths:
            status, body = _get(ref, path, tls)
            other_status, other_body = _get(c, path, tls)
            if not _same(status, body, other_status, other_body):
                report.ok = False
                report.problems.append(f"{key} {path}: {other_status} {json.dumps(other_body)[:300]} "
                                       f"vs {reference} {status} {json.dumps(body)[:300]}")
    _check_keys(stack, paths[0], tls, report)
    if report.ok:
        log("contract check: the peers and ours without keys answer GET /items/<id> and GET /items?limit=20 "
            "with our JSON, each edge route with its API's; without a key ours answers 401")
    else:
        log("contract check FAILED: " + "; ".join(report.problems))
    return report
