"""Before anything is measured: every peer answers the benchmarked reads with the same JSON as
ours, value for value, so that a faster peer cannot be one that does less; and every route through
an edge answers with the JSON of the API behind it (HTTPS verified against the edge's certificate),
so that the edge passes requests through rather than answering them itself. Timestamps compare as
instants (pydantic writes UTC with `Z`, the others with `+00:00`)."""

from __future__ import annotations

import datetime as dt
import json
import ssl

from .config import EDGE_ROUTES, PEERS
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


def _get(c: Candidate, path: str, context: ssl.SSLContext | None = None) -> tuple[int, dict | None]:
    return get_json(f"{c.url}{path}", context=context)


def _same(status: int, body: dict | None, peer_status: int, peer_body: dict | None) -> bool:
    if peer_status != status or peer_body is None or body is None:
        return False
    return same_page(body, peer_body) if "items" in body else same_item(body, peer_body)


def contract_check(stack: Stack) -> ContractCheck:
    """Every peer answers `GET /items/<id>` and `GET /items?limit=20` with our JSON, and every edge
    route with its API's."""
    paths = (f"/items/{stack.id_range[0]}", "/items?limit=20")
    tls = ssl.create_default_context(cafile=str(stack.tls_cert))
    report = ContractCheck()
    pairs = [(key, "ours") for key in PEERS] + [(key, r.api) for key, r in EDGE_ROUTES.items()]
    for key, reference in pairs:
        c, ref = stack.candidates[key], stack.candidates[reference]
        for path in paths:
            status, body = _get(ref, path)
            other_status, other_body = _get(c, path, tls if c.scheme == "https" else None)
            if not _same(status, body, other_status, other_body):
                report.ok = False
                report.problems.append(f"{key} {path}: {other_status} {json.dumps(other_body)[:300]} "
                                       f"vs {reference} {status} {json.dumps(body)[:300]}")
    if report.ok:
        log("contract check: the peers answer GET /items/<id> and GET /items?limit=20 with our JSON, "
            "each edge route with its API's")
    else:
        log("contract check FAILED: " + "; ".join(report.problems))
    return report
