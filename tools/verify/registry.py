"""The one table of checks, filled by `@check` on each check's function, and how one check runs.

Everything about a check is said once, where its function is defined: its
id, the CIS Docker Benchmark 1.6.0 control it maps to, whether only the prod
profile requires it (hardening: a warning under --profile dev), what it asks
(its title), why (its docstring's first paragraph), which services it applies
to, and how it runs on Swarm: the same function, a variant with a function or
title of its own, or not at all. The verifier, `--list-checks` and the table
in docs/verify.md all read this table, so they cannot disagree. Adding a
check is adding one decorated function to checks.py (api.py for what the API
promises its clients, edge.py for the edge's).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from .model import FAIL, SERVICES, WARN, Failed, Finding, NotHere, Outcome
from .targets import Target

CheckFn = Callable[[Target], Outcome]


@dataclass(frozen=True)
class Check:
    """A check as one orchestrator runs it: a row of the table, seen from Compose or from Swarm."""

    id: str
    title: str
    cis: str  # CIS Docker Benchmark 1.6.0 control(s), "" when none exists
    fn: CheckFn
    services: tuple[str, ...] = SERVICES
    hardening: bool = False  # required by prod only: a warning under --profile dev
    live: bool = False  # needs the running container (top, exec, HTTP)


@dataclass(frozen=True)
class Variant:
    """How a check runs on Swarm: a function and/or a title of its own (unset: the container check's)."""

    fn: CheckFn | None = None
    title: str = ""


SAME = Variant()  # the default: the container check runs on Swarm as it is


def why(fn: Callable) -> str:
    """A check's reason: the first paragraph of its docstring, on one line."""
    return " ".join((fn.__doc__ or "").strip().split("\n\n")[0].split())


@dataclass(frozen=True)
class CheckInfo:
    """What --list-checks says of a check (and docs/verify.md's table shows)."""

    id: str
    cis: str
    what: str
    why: str
    on: list[str]  # compose, swarm
    profiles: list[str]  # the profiles that require it; elsewhere a failure is a warning
    services: list[str] | None  # None: every service of the stack
    live: bool
    chaos: bool
    swarm: dict[str, str] | None  # {"what", "why"} where Swarm runs a variant ("why": "" when the same)


@dataclass(frozen=True)
class Entry:
    """One row of the table: a check with its Compose and Swarm forms."""

    id: str
    title: str
    cis: str
    compose: CheckFn | None  # None: Swarm only
    swarm: Variant | None  # None: Compose only
    services: tuple[str, ...] | None  # None: every service of the stack
    hardening: bool
    live: bool
    drill: bool  # a --chaos drill: run only when asked, once, on the API

    def form(self, orchestrator: str, services: tuple[str, ...]) -> Check | None:
        """This check as `orchestrator` ("compose" or "swarm", with `services`) runs it, on those of its
        services the orchestrator has; None where it does not run."""
        if orchestrator == "compose":
            fn, title = self.compose, self.title
        elif self.swarm is None:
            return None
        else:
            fn, title = self.swarm.fn or self.compose, self.swarm.title or self.title
        mine = tuple(s for s in self.services or services if s in services)
        if fn is None or not mine:
            return None
        return Check(self.id, title, self.cis, fn, mine, self.hardening, self.live)

    def info(self) -> CheckInfo:
        main = self.compose or self.swarm.fn
        variant = None
        if self.compose and self.swarm and self.swarm != SAME:
            reason = why(self.swarm.fn) if self.swarm.fn else ""
            variant = {"what": self.swarm.title or self.title, "why": reason}
        return CheckInfo(self.id, self.cis, self.title, why(main),
                         [o for o, ok in (("compose", self.compose), ("swarm", self.swarm)) if ok],
                         ["prod"] if self.hardening else ["prod", "dev"],
                         list(self.services) if self.services else None, self.live, self.drill, variant)


TABLE: list[Entry] = []
# The modules that define checks, in the table's order: the container checks, the API's promises to
# clients (keys, /docs), the edge's, the monitoring profile's, the drills.
MODULES = ("checks", "api", "edge", "monitoring", "chaos")


def module(entry: Entry) -> str:
    return (entry.compose or entry.swarm.fn).__module__.rpartition(".")[2]


def table() -> list[Entry]:
    """The whole check table: the checks of MODULES in that order, each module's in its own, whatever
    was imported first; the drills last.

    Importing the modules that define checks fills it.
    """
    for name in MODULES:
        importlib.import_module(f"{__package__}.{name}")
    rank = {name: i for i, name in enumerate(MODULES)}
    return sorted(TABLE, key=lambda e: (e.drill, rank.get(module(e), len(MODULES))))


def check(id: str, title: str, *, cis: str = "", services: tuple[str, ...] | None = None,
          hardening: bool = False, live: bool = False, swarm: Variant | None = SAME,
          swarm_only: bool = False, drill: bool = False) -> Callable[[CheckFn], CheckFn]:
    """Register the decorated function as check `id` (see the module's docstring); it stays as it is.

    `swarm` is how Swarm runs it (SAME, a Variant, or None for Compose only);
    `swarm_only` marks a function that is itself the Swarm form, with no
    container counterpart.
    """

    def register(fn: CheckFn) -> CheckFn:
        if any(e.id == id for e in TABLE):
            raise ValueError(f"check {id} is registered twice")
        compose_fn, variant = (None, Variant(fn)) if swarm_only else (fn, swarm)
        TABLE.append(Entry(id, title, cis, compose_fn, variant, services, hardening, live, drill))
        return fn

    return register


def run_check(check: Check, t: Target, profile: str) -> Finding:
    """One check on one service; an exception becomes a failure, dev softens hardening."""
    if check.live and not t.running:
        outcome, detail = FAIL, "container not running"
    else:
        try:
            outcome, detail = check.fn(t)
        except NotHere as e:  # Swarm: no task of this service runs on this node
            outcome, detail = WARN, str(e)
        except Failed as e:
            outcome, detail = FAIL, str(e)
        except Exception as e:  # a broken probe is a finding, not a crash of the verifier
            outcome, detail = FAIL, f"{type(e).__name__}: {e}"
    if outcome == FAIL and check.hardening and profile == "dev":
        outcome, detail = WARN, f"{detail} (dev profile: not required)"
    return Finding(t.service, check.id, check.title, check.cis, outcome, detail)
