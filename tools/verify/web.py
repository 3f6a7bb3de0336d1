"""HTTP and HTTPS as a client on this host meets a published port: status, headers and body.

The live checks judge what a client gets, so they read answers whole: the
status, the headers (Strict-Transport-Security, Server, Content-Type) and the
start of the body, error statuses included. HTTPS here verifies no
certificate: the edge may serve a self-signed one, and EDGE-TLS-CERT judges
the certificate on its own. Also here: the readings of those answers that the
checks share (HSTS's max-age, a problem document, a bearer challenge, a
Content-Security-Policy that keeps a page to its own origin).
"""

from __future__ import annotations

import json
import re
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message

HTTP_TIMEOUT = 5.0
BODY_BYTES = 4096  # what a check reads of a body: enough for any health or problem document
PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True)
class Answer:
    """One HTTP response as the checks read it."""

    status: int
    headers: Message
    body: str

    def media_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()


def unverified_tls() -> ssl.SSLContext:
    """A client context that completes a handshake with any certificate (it reads, it does not trust)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def fetch(url: str, timeout: float = HTTP_TIMEOUT) -> Answer:
    """GET `url` (http or https); the answer, error statuses included."""
    extra = {"context": unverified_tls()} if url.startswith("https:") else {}
    try:
        with urllib.request.urlopen(url, timeout=timeout, **extra) as r:
            return Answer(r.status, r.headers, r.read(BODY_BYTES).decode("utf-8", "replace"))
    except urllib.error.HTTPError as e:
        return Answer(e.code, e.headers, e.read(BODY_BYTES).decode("utf-8", "replace"))


HSTS_DIRECTIVE = re.compile(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*(?:=\s*("[^"]*"|[^;\s]*))?\s*')


def hsts_max_age(value: str | None) -> int | None:
    """The max-age of a Strict-Transport-Security value in seconds; None when absent or malformed.

    RFC 6797 6.1: directives separated by `;`, names case-insensitive, a value
    a token or a quoted string; a directive given twice makes the header invalid.
    """
    if not value:
        return None
    seen: dict[str, str] = {}
    for part in value.split(";"):
        if not part.strip():
            continue
        m = HSTS_DIRECTIVE.fullmatch(part)
        if not m or m.group(1).lower() in seen:
            return None
        seen[m.group(1).lower()] = (m.group(2) or "").strip('"')
    age = seen.get("max-age", "")
    return int(age) if age.isdigit() else None


def server_version(answer: Answer) -> str | None:
    """The Server header when it names a version (nginx/1.30.4, Granian 2.8), else None."""
    server = answer.headers.get("Server") or ""
    return server if re.search(r"\d", server) else None


def problem_faults(answer: Answer) -> list[str]:
    """What keeps an error answer from being a problem document (RFC 9457) that a client can read."""
    faults = [] if answer.media_type() == PROBLEM_JSON else [f"Content-Type {answer.media_type() or 'none'}"]
    try:
        doc = json.loads(answer.body)
    except ValueError:
        return [*faults, f"body is not JSON: {answer.body[:40]!r}"]
    if not isinstance(doc, dict):
        return [*faults, "body is not a JSON object"]
    if doc.get("status") != answer.status:
        faults.append(f"status member {doc.get('status')!r}, the answer's is {answer.status}")
    if not isinstance(doc.get("title"), str) or not doc["title"]:
        faults.append("no title")
    return faults


AUTH_PARAM = re.compile(r'([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(?:,\s*|$)')


def bearer_params(challenge: str | None) -> dict[str, str] | None:
    """The parameters of a `Bearer` challenge (RFC 6750 3), names lowercased, values unquoted;
    None when the value is no Bearer challenge or its parameters cannot be read."""
    scheme, _, rest = (challenge or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    params, at = {}, 0
    rest = rest.strip()
    while at < len(rest):
        m = AUTH_PARAM.match(rest, at)
        if not m:
            return None
        value = m.group(2)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value[1:-1]) if value.startswith('"') else value
        at = m.end()
    return params


# Sources that keep a page to its own origin; data: URLs only for images and fonts (Swagger UI
# draws its icons as data: images), never for scripts.
SAME_ORIGIN = frozenset({"'self'", "'none'"})
DATA_ALLOWED = frozenset({"img-src", "font-src"})
# Directives with a source list besides the *-src ones.
SOURCE_LISTS = frozenset({"base-uri", "form-action", "frame-ancestors"})


def csp_faults(policy: str | None) -> list[str]:
    """What lets a page governed by this Content-Security-Policy load from, send to, or be framed
    by another origin: a missing policy or default-src, any source but 'self', 'none' (and data:
    for images and fonts), 'unsafe-inline' and the like included."""
    if not policy or not policy.strip():
        return ["no Content-Security-Policy"]
    directives: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *sources = part.split() or [""]
        if name:
            directives.setdefault(name.lower(), sources)  # CSP 3: a repeated directive is ignored
    faults = [] if "default-src" in directives else ["no default-src"]
    for name, sources in directives.items():
        if name.endswith("-src") or name in SOURCE_LISTS:
            allowed = SAME_ORIGIN | ({"data:"} if name in DATA_ALLOWED else set())
            faults += [f"{name} {s}" for s in sources if s.lower() not in allowed]
    return faults
