"""Static checks of the build files (no engine needed).

hadolint reads every Dockerfile and shellcheck every shell script of the repository; which files
those are, and how each linter is found, is tools/lint.py's job (`make lint` runs it too).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support import ROOT
from tools import lint


def test_hadolint_passes_on_every_dockerfile():
    result = lint.run_linter("hadolint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_passes_on_every_shell_script():
    result = lint.run_linter("shellcheck")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_linters_see_the_build_files_and_the_offline_recipes():
    dockerfiles, scripts = set(lint.dockerfiles()), set(lint.shell_scripts())
    for name in ("build", "tools/images/python", "tools/images/postgres", "tools/images/pgadmin"):
        assert Path(name, "Dockerfile") in dockerfiles
    assert {Path("build/entrypoint.sh"), Path(".ci/run"), Path("tools/images/pgadmin/entrypoint.sh"),
            Path("tools/images/postgres/docker-entrypoint.sh"),
            Path("tools/images/base/usr/sbin/policy-rc.d")} <= scripts


@pytest.mark.parametrize("dockerfile", lint.dockerfiles(), ids=str)
def test_dockerfile_has_no_syntax_directive(dockerfile):
    # `# syntax=` makes BuildKit pull a frontend image, which fails without a registry.
    first_lines = (ROOT / dockerfile).read_text().splitlines()[:5]
    assert not any(line.replace(" ", "").startswith("#syntax=") for line in first_lines)
