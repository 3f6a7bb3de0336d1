"""Read nginx's running configuration as `nginx -T` prints it: directives in blocks, includes in place.

The files on disk are not the configuration (templates are rendered at start,
an override may mount others): `nginx -T` dumps every file nginx read, each
after a `# configuration file PATH:` line, with `include` left as written.
This splits the dump into files, tokenises each as nginx does (quotes,
escapes, comments, `{` `}` `;`), splices included files in place, and answers
what a check asks: which value of a directive applies in a location, given
nginx's inheritance (the innermost level that sets it wins, and directives
such as limit_req are inherited only by a level that sets none of its own).
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

FILE_HEADER = re.compile(r"^# configuration file (.+):$", re.M)
MAIN = "/etc/nginx/nginx.conf"
SPECIAL = "{};"


@dataclass
class Directive:
    """One directive: its name, its arguments, and its block's directives (None for a simple one)."""

    name: str
    args: list[str]
    block: list[Directive] | None = field(default=None)


Level = list[Directive]  # the directives of one block
Chain = list[Level]  # the levels from `http` down to one location


def split_files(dump: str) -> dict[str, str]:
    """The dump as {path: text}; anything before the first file (nginx's own messages) is dropped."""
    parts = FILE_HEADER.split(dump)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def tokens(text: str) -> Iterator[str]:
    """nginx's tokens: words (quotes removed, escapes resolved) and the specials `{`, `}`, `;`."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif c in SPECIAL:
            yield c
            i += 1
        elif c in "\"'":
            word, i = quoted(text, i)
            yield word
        else:
            word, i = bare(text, i)
            yield word


def bare(text: str, i: int) -> tuple[str, int]:
    """The bare word starting at text[i] (`${name}` is part of it): (the word, the index after it)."""
    start, in_variable = i, False
    while i < len(text) and not text[i].isspace():
        if text[i] == "{" and text[i - 1:i] == "$":
            in_variable = True
        elif text[i] == "}" and in_variable:
            in_variable = False
        elif text[i] in SPECIAL:
            break
        i += 1
    return text[start:i], i


def quoted(text: str, i: int) -> tuple[str, int]:
    """The quoted string starting at text[i]: (its value, the index after it)."""
    quote, out, i = text[i], [], i + 1
    while i < len(text) and text[i] != quote:
        if text[i] == "\\" and i + 1 < len(text):
            i += 1
        out.append(text[i])
        i += 1
    return "".join(out), i + 1


def parse(text: str) -> Level:
    """One file's directives, blocks nested."""
    stack: list[Level] = [[]]
    words: list[str] = []
    for token in tokens(text):
        if token == ";":
            if words:
                stack[-1].append(Directive(words[0], words[1:]))
            words = []
        elif token == "{":
            block: Level = []
            stack[-1].append(Directive(words[0] if words else "", words[1:], block))
            stack.append(block)
            words = []
        elif token == "}":
            if len(stack) > 1:
                stack.pop()
            words = []
        else:
            words.append(token)
    return stack[0]


def load(dump: str, main: str = MAIN) -> Level:
    """The main file's directives with every `include` replaced by the directives of the files it names."""
    files = split_files(dump)
    parsed = {path: parse(text) for path, text in files.items()}
    prefix = posixpath.dirname(main)

    def expand(level: Level, depth: int = 0) -> Level:
        out: Level = []
        for d in level:
            if d.name == "include" and d.args and depth < 16:
                for path in included(parsed, posixpath.join(prefix, d.args[0])):
                    out += expand(parsed[path], depth + 1)
            elif d.block is not None:
                out.append(Directive(d.name, d.args, expand(d.block, depth)))
            else:
                out.append(d)
        return out

    return expand(parsed.get(main, []))


def included(files, pattern: str) -> list[str]:
    """The files an include pattern names, in nginx's (sorted) order; a glob does not cross a `/`."""
    folder, name = posixpath.split(pattern)
    return sorted(p for p in files if posixpath.dirname(p) == folder
                  and fnmatch.fnmatchcase(posixpath.basename(p), name))


def blocks(level: Level, name: str) -> list[Level]:
    return [d.block for d in level if d.name == name and d.block is not None]


def locations(config: Level) -> Iterator[tuple[str, Chain]]:
    """Every location of every server of `http`: (its description, the chain of levels down to it)."""
    for http in blocks(config, "http"):
        for server in blocks(http, "server"):
            listen = " ".join(d.args[0] for d in server if d.name == "listen" and d.args) or "?"
            yield from nested(server, [http, server], f"server {listen}")


def nested(level: Level, chain: Chain, where: str) -> Iterator[tuple[str, Chain]]:
    for d in level:
        if d.name == "location" and d.block is not None:
            inner = [*chain, d.block]
            name = f"{where} location {' '.join(d.args)}"
            yield name, inner
            yield from nested(d.block, inner, name)


def effective(chain: Chain, name: str) -> list[Directive]:
    """The `name` directives that apply at the end of `chain`: those of the innermost level that has any."""
    for level in reversed(chain):
        found = [d for d in level if d.name == name]
        if found:
            return found
    return []


def value(chain: Chain, name: str) -> str | None:
    """The first argument of the `name` that applies at the end of `chain`; None when nothing sets it."""
    found = effective(chain, name)
    return found[-1].args[0] if found and found[-1].args else None


def proxied(config: Level) -> list[tuple[str, Chain]]:
    """The locations that pass requests on (proxy_pass)."""
    return [(where, chain) for where, chain in locations(config)
            if any(d.name == "proxy_pass" for d in chain[-1])]


TIME_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000, "y": 31536000}
SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def seconds(text: str) -> float | None:
    """An nginx time (`10`, `10s`, `1m30s`, `500ms`) in seconds; None when it is not one."""
    parts = re.findall(r"(\d+)(ms|[smhdwMy]?)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(int(n) * TIME_UNITS[u or "s"] for n, u in parts)


def size(text: str) -> int | None:
    """An nginx size (`65536`, `64k`, `1m`) in bytes; None when it is not one."""
    m = re.fullmatch(r"(\d+)([kKmMgG]?)", text)
    return int(m.group(1)) * SIZE_UNITS[m.group(2).lower()] if m else None
