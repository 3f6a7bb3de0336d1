"""`make dev`: a change under app/ reaches the running API within seconds, without a rebuild.

The development stack (compose.yaml + compose.dev.yaml, `docker compose up --watch`) runs from a
temporary copy of the checkout, as a developer's own clone; the test edits a handler there the
way many editors save a file (a new file renamed over the old) and asks the running API again.
The same container keeps running (Granian reloads its workers: no rebuild, no restart), also
through a save that breaks the app and the one that fixes it. Only flask-api and its database
run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from compose_stack import ROOT, Stack, new_stack
from support import wait_for
from tools.docker_cli import Docker

DEV_FILES = ("-f", "compose.yaml", "-f", "compose.dev.yaml")
ORIGINAL = 'json.dumps({"status": "ok"})'
EDITED = 'json.dumps({"status": "ok", "edited": True})'


def copy_checkout(dest: Path) -> Path:
    """The checkout's files (tracked, and new ones not ignored) copied to `dest`, as a clone has them."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, names):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def live(stack: Stack) -> dict | None:
    try:
        response = requests.get(f"{stack.api_url}/health/live", timeout=2)
    except requests.RequestException:
        return None
    return response.json() if response.status_code == 200 else None


def started_at(stack: Stack, client: Docker) -> str:
    """When flask-api's container started: the same after a reload, later after a restart."""
    container = client.lines("compose", "-p", stack.project, *DEV_FILES, "ps", "-q", "flask-api")[0]
    return client.inspect(container)["State"]["StartedAt"]


@pytest.fixture(scope="module")
def dev(docker: Docker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Path, Docker]]:
    tmp = tmp_path_factory.mktemp("dev")
    checkout = copy_checkout(tmp_path_factory.mktemp("checkout"))
    stack = new_stack(docker, tmp, label="dev", project=os.environ.get("E2E_PROJECT", "items-e2e") + "-dev")
    client = Docker(docker.binary, cwd=checkout, env=stack.env, timeout=300)
    base = ("compose", "--env-file", str(stack.env_file), "-p", stack.project, *DEV_FILES)
    client(*base, "down", "--volumes", "--remove-orphans")
    stack.create_data_volume()
    log = (tmp / "watch.log").open("w")
    watch = subprocess.Popen([docker.binary, *base, "up", "--watch", "flask-api"], cwd=checkout,
                             env=stack.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    output = tmp / "watch.log"
    try:
        try:
            # The first start may build the image (a cold build takes minutes on a busy machine).
            wait_for(lambda: live(stack) is not None or watch.poll() is not None, 900, "the dev API answers")
            assert watch.poll() is None, "compose up --watch exited"
            # Compose says when it follows the files; an edit before that would be missed.
            wait_for(lambda: "watch enabled" in output.read_text().lower(), 60, "watch enabled")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{output.read_text()[-4000:]}") from None
        yield stack, checkout, client
    finally:
        os.killpg(watch.pid, signal.SIGINT)
        try:
            watch.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(watch.pid, signal.SIGKILL)
        client(*base, "down", "--volumes", "--remove-orphans", check=False)
        stack.remove_data_volume()
        log.close()


def test_a_saved_handler_change_is_served_within_seconds_without_a_rebuild(dev) -> None:
    stack, checkout, client = dev
    assert live(stack) == {"status": "ok"}
    image_before = client.lines("compose", "-p", stack.project, *DEV_FILES, "images", "-q", "flask-api")
    started = started_at(stack, client)
    handler = checkout / "app" / "health.py"
    assert ORIGINAL in handler.read_text()
    # Saved as many editors save: a new file renamed over the old one.
    draft = handler.with_name(".health.py.swp")
    draft.write_text(handler.read_text().replace(ORIGINAL, EDITED))
    os.replace(draft, handler)
    saved = time.monotonic()
    wait_for(lambda: live(stack) == {"status": "ok", "edited": True}, 30, "the edited answer",
             interval=0.25)
    print(f"\n[{stack.project}] the edit was served {time.monotonic() - saved:.1f} s after saving")
    assert client.lines("compose", "-p", stack.project, *DEV_FILES, "images", "-q", "flask-api") == image_before
    assert started_at(stack, client) == started, "the container restarted"


def test_a_save_that_breaks_the_app_is_served_again_once_fixed_without_a_restart(dev) -> None:
    stack, checkout, client = dev
    before = live(stack)
    assert before is not None
    started = started_at(stack, client)
    handler = checkout / "app" / "health.py"
    working = handler.read_text()
    handler.write_text(working + "\nthis line is not Python\n")
    wait_for(lambda: live(stack) is None, 30, "no answer from code that does not import", interval=0.25)
    handler.write_text(working.replace('json.dumps({"status": "ok"', 'json.dumps({"status": "ok", "fixed": True'))
    wait_for(lambda: live(stack) == {**before, "fixed": True}, 30, "the fixed answer", interval=0.25)
    assert started_at(stack, client) == started, "the container restarted"
