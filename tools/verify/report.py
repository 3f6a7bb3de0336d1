"""What the verifier prints: the findings (text or JSON), and the check table (--list-checks).

The check table comes in three forms, all from the one registry: text for
people, JSON for tools, and Markdown for docs/verify.md, where it sits
between marker comments; a unit test fails when the two differ, and
`verify_stack.py --update-docs` rewrites it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from .model import CIS, FAIL, PASS, WARN, Finding
from .registry import CheckInfo

DOC = Path(__file__).resolve().parents[2] / "docs" / "verify.md"
START, END = "<!-- verify-checks:start -->", "<!-- verify-checks:end -->"


def summary(findings: list[Finding]) -> dict[str, int]:
    return {r: sum(f.result == r for f in findings) for r in (PASS, WARN, FAIL)}


def exit_code(findings: list[Finding]) -> int:
    return 1 if any(f.result == FAIL for f in findings) else 0


def render(findings: list[Finding], project: str, profile: str, kind: str = "Stack") -> str:
    """The findings as a table per service, then the verdict."""
    lines = [f"{kind} '{project}', profile {profile}, checks mapped to {CIS}"]
    if profile == "dev":
        lines.append("dev profile: missing hardening is reported as warnings, not failures")
    width = max(len(f.id) for f in findings)
    for service in dict.fromkeys(f.service for f in findings):
        lines += ["", service, f"  {'CHECK':<{width}}  {'CIS':<16}  RESULT  DETAIL"]
        for f in (f for f in findings if f.service == service):
            lines.append(f"  {f.id:<{width}}  {f.cis or '-':<16}  {f.result.upper():<6}  {f.detail}")
    counts = summary(findings)
    verdict = "FAILED" if counts[FAIL] else "OK"
    lines += ["", f"{verdict}: {counts[PASS]} passed, {counts[WARN]} warnings, {counts[FAIL]} failed"]
    return "\n".join(lines)


def render_json(findings: list[Finding], project: str, orchestrator: str, profile: str) -> str:
    return json.dumps({"project": project, "orchestrator": orchestrator, "profile": profile, "benchmark": CIS,
                       "summary": summary(findings), "exit_code": exit_code(findings),
                       "findings": [asdict(f) for f in findings]}, indent=2)


# --- the check table -----------------------------------------------------------------------------


def where(info: CheckInfo) -> str:
    """Where a check runs: the orchestrators, and the services when not all of them."""
    on = ", ".join(o.capitalize() for o in info.on)
    return on + (f": {', '.join(info.services)}" if info.services else "")


def required(info: CheckInfo) -> str:
    """The profiles that require a check (a failure elsewhere is a warning), or `--chaos` for a drill."""
    return "`--chaos`" if info.chaos else ", ".join(info.profiles)


def swarm_text(info: CheckInfo) -> str:
    """What Swarm runs instead, where it runs a variant."""
    if not info.swarm:
        return ""
    what, why = info.swarm["what"], info.swarm["why"]
    return "On Swarm" + (f", {what}" if what != info.what else "") + (f": {why}" if why else ".")


def list_text(infos: list[CheckInfo]) -> str:
    lines = [f"Checks mapped to {CIS}; a failure is a warning in a profile that does not require it.", ""]
    for i in infos:
        needs = "run by --chaos" if i.chaos else f"required in {required(i)}"
        lines += [f"{i.id}  CIS {i.cis or '-'}; {where(i)}; {needs}", f"  asks: {i.what}", f"  why:  {i.why}"]
        lines += [f"  {swarm_text(i)}"] if i.swarm else []
    return "\n".join(lines)


def list_json(infos: list[CheckInfo]) -> str:
    return json.dumps({"benchmark": CIS, "checks": [asdict(i) for i in infos]}, indent=2)


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(infos: list[CheckInfo]) -> str:
    """The check table for docs/verify.md (what `--list-checks --markdown` prints)."""
    lines = ["| check | CIS 1.6.0 | runs on | required in | it asks | why |", "|---|---|---|---|---|---|"]
    for i in infos:
        why = i.why + (f"<br>{swarm_text(i)}" if i.swarm else "")
        cells = (i.id, i.cis or "–", cell(where(i)), required(i), cell(i.what), cell(why))
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def documented_table(text: str) -> str:
    """The table between docs/verify.md's markers."""
    if START not in text or END not in text:
        raise ValueError(f"{DOC.name} lacks the markers {START} and {END}")
    return text.split(START, 1)[1].split(END, 1)[0].lstrip("\n")


def with_table(text: str, table: str) -> str:
    """The document with `table` between its markers."""
    documented_table(text)  # the markers are there
    head, rest = text.split(START, 1)
    return f"{head}{START}\n{table}{END}{rest.split(END, 1)[1]}"
