"""What the abuser scripts share: HTTP/1.1 on raw asyncio streams, and their reports.

The scripts in this folder run inside throwaway containers on the stack's `edge` network, so
that the edge sees them at an address of their own (every client on the test host reaches the
edge through one docker-proxy address). Standard library only: the container is the plain
Python image, with this folder mounted read-only. They talk to the edge only. Their requests
to /items carry the stack's write key, read from a file the test mounts (`KEY_FILE`): a key is
never an argument or an environment variable of a container (`docker inspect` shows both).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field

PROBLEM = "application/problem+json"
KEY_FILE = "/run/secrets/api_key"


def authorization() -> str:
    """The header line that sends the mounted API key."""
    with open(KEY_FILE) as f:
        return f"Authorization: Bearer {f.read().strip()}\r\n"


@dataclass
class Answer:
    """One HTTP answer as the client read it."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)  # names in lower case
    body: bytes = b""

    @property
    def problem(self) -> bool:
        return self.headers.get("content-type", "").split(";")[0].strip() == PROBLEM

    def proper_429(self) -> bool:
        """A 429 problem+json whose document says 429, with a Retry-After in whole seconds."""
        try:
            document = json.loads(self.body)
        except ValueError:
            return False
        retry_after = self.headers.get("retry-after", "")
        return self.problem and document.get("status") == 429 and retry_after.isdigit() and int(retry_after) > 0


def _head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(lines[0].split(" ")[1]), headers


async def read_answer(reader: asyncio.StreamReader) -> Answer | None:
    """The next answer on the connection, body included (Content-Length only: the edge's
    answers and the API's have one); None when the server closed the connection first."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    status, headers = _head(head)
    return Answer(status, headers, await reader.readexactly(int(headers.get("content-length", "0"))))


def answer_in(received: bytes) -> Answer | None:
    """The first answer in bytes read off a connection; None when nothing was answered."""
    if not received.startswith(b"HTTP/"):
        return None
    head, _, body = received.partition(b"\r\n\r\n")
    return Answer(*_head(head), body)


async def wait_for_close(reader: asyncio.StreamReader, until: float) -> tuple[bytes, str]:
    """Read whatever comes until the server closes the connection ("eof" or "reset") or
    time.monotonic() passes `until` ("open"): the bytes received and how it ended."""
    received = b""
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return received, "open"
        try:
            data = await asyncio.wait_for(reader.read(65536), left)
        except TimeoutError:
            return received, "open"
        except (ConnectionResetError, BrokenPipeError):
            return received, "reset"
        if not data:
            return received, "eof"
        received += data


def report(**fields) -> None:
    """One JSON line on stdout: what the test reads."""
    print(json.dumps(fields), flush=True)


def arguments(doc: str) -> argparse.ArgumentParser:
    """A script's command line: the edge's host and port, then the script's own options."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    return parser
