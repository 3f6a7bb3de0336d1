"""The container suite's stack: compose.yaml + compose.prod.yaml as a user starts them.

One stack for the session, under the project name ``items-e2e`` (or $E2E_PROJECT), on free
loopback ports unless $E2E_API_PORT / $E2E_PGADMIN_PORT name others, with secrets of its own;
tests/compose_stack.py builds it (and removes it at the end), tests/conftest.py provides the
`docker` client and skips, or fails under CI=true, without an engine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from compose_stack import Stack, new_stack, running_stack
from tools.docker_cli import Docker


@pytest.fixture(scope="session")
def stack(docker: Docker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    settings = new_stack(docker, tmp_path_factory.mktemp("stack"), label="e2e",
                         project=os.environ.get("E2E_PROJECT", "items-e2e"),
                         api_port=int(os.environ.get("E2E_API_PORT") or 0) or None,
                         pgadmin_port=int(os.environ.get("E2E_PGADMIN_PORT") or 0) or None)
    with running_stack(settings) as s:
        yield s
