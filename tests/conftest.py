"""What every suite shares: which tests need a container engine, their order, and the engine.

The folders say what a test needs: unit/ nothing, api/ a PostgreSQL cluster and the server (see
api/conftest.py), stack/, reliability/ and swarm/ a Docker engine. Tests under the last three carry
the `e2e` marker (`make test-fast` runs unit/ and api/ only; `-m "not e2e"` selects the same).

The Swarm tests run last: `docker swarm init` and `leave` disturb the engine's networking for
Compose networks that already exist (containers recreated on them afterwards were seen failing to
reach their peers), and the other container suites keep their stacks up for the whole session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import compose_stack
from tools.docker_cli import Docker

TESTS = Path(__file__).resolve().parent
ENGINE_SUITES = ("stack", "reliability", "swarm")


def suite(item: pytest.Item) -> str:
    """The folder under tests/ that holds the test."""
    return item.path.resolve().relative_to(TESTS).parts[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if suite(item) in ENGINE_SUITES:
            item.add_marker(pytest.mark.e2e)
    items.sort(key=lambda item: suite(item) == "swarm")


@pytest.fixture(scope="session")
def docker() -> Docker:
    """The docker client, once an engine answers with what the stack needs (compose_stack.engine)."""
    return compose_stack.engine()


@pytest.fixture(scope="session")
def ca_bundle() -> Path | None:
    """The CA bundle builds give pip (compose_stack.ca_bundle)."""
    return compose_stack.ca_bundle()
