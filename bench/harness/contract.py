"""Before anything is measured: every peer answers the benchmarked reads with the same JSON as
ours, value for value, so that a faster peer cannot be one that does less. Timestamps compare as
instants (pydantic writes UTC with `Z`, the others with `+00:00`)."""

from __future__ import annotations

import datetime as dt
import json

from .config import PEERS
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


def _get(c: Candidate, path: str) -> tuple[int, dict | None]:
    return get_json(f"http://127.0.0.1:{c.host_port}{path}")


def _same(status: int, body: dict | None, peer_status: int, peer_body: dict | None) -> bool:
    if peer_status != status or peer_body is None or body is None:
        return False
    return same_page(body, peer_body) if "items" in body else same_item(body, peer_body)


def contract_check(stack: Stack) -> ContractCheck:
    """Every peer answers `GET /items/<id>` and `GET /items?limit=20` with our JSON."""
    paths = (f"/items/{stack.id_range[0]}", "/items?limit=20")
    ours = {p: _get(stack.candidates["ours"], p) for p in paths}
    report = ContractCheck()
    for key in PEERS:
        for path, (status, body) in ours.items():
            peer_status, peer_body = _get(stack.candidates[key], path)
            if not _same(status, body, peer_status, peer_body):
                report.ok = False
                report.problems.append(f"{key} {path}: {peer_status} {json.dumps(peer_body)[:300]} "
                                       f"vs ours {status} {json.dumps(body)[:300]}")
    if report.ok:
        log("contract check: the peers answer GET /items/<id> and GET /items?limit=20 with our JSON")
    else:
        log("contract check FAILED: " + "; ".join(report.problems))
    return report
