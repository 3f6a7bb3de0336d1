"""The API image built from build/Dockerfile: what is in it, and how it runs.

The image is built once here (BuildKit, tag items-api:e2e) with labels from build arguments and
an `extra_ca` build secret: the CA bundle pip needs on this network plus a random canary line,
which must show up nowhere in the image. The builder stage is built without BuildKit's cache
(`--no-cache-filter build`): a pip step found in the cache would run without the secret, and the
canary could then not show up anywhere whatever the Dockerfile did with it. The build log shows
that the step ran.
"""

from __future__ import annotations

import re
import tarfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import wait_for
from tools.docker_cli import free_port

IMAGE = "items-api:e2e"
LABELS = {
    "org.opencontainers.image.version": "1.2.3-e2e",
    "org.opencontainers.image.revision": "0123456789abcdef0123456789abcdef01234567",
    "org.opencontainers.image.source": "https://example.com/items-api.git",
}
CANARY = f"e2e-canary-{uuid.uuid4().hex}"
# Base names that must not exist anywhere in the runtime image.
FORBIDDEN = re.compile(
    r"(apt|apt-get|aptitude|dpkg|dpkg-.*|gcc|gcc-\d+|.*-gcc(-\d+)?|cc|c\+\+|g\+\+|ld|as|make"
    r"|pip|pip\d(\.\d+)?|ensurepip|curl|wget|bash|busybox)"
)


@dataclass
class Build:
    tag: str
    log: str  # BuildKit's plain progress output


@pytest.fixture(scope="module")
def build(docker, ca_bundle: Path | None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Build]:
    ca = tmp_path_factory.mktemp("image") / "extra_ca.pem"
    ca.write_text((ca_bundle.read_text() if ca_bundle else "") + f"\n# {CANARY}\n")
    args = [a for k, v in LABELS.items() for a in ("--build-arg", f"{k.rsplit('.', 1)[1].upper()}={v}")]
    started = time.monotonic()
    r = docker("buildx", "build", "--progress=plain", "--no-cache-filter", "build", "-f", "build/Dockerfile",
               "-t", IMAGE, *args, "--secret", f"id=extra_ca,src={ca}", ".", check=False, timeout=900)
    assert r.returncode == 0, f"build failed:\n{r.stderr[-6000:]}"
    print(f"\n[e2e] image {IMAGE} built in {time.monotonic() - started:.1f} s")
    yield Build(IMAGE, r.stderr)
    docker("image", "rm", IMAGE, check=False)


@pytest.fixture(scope="module")
def image(build: Build) -> str:
    return build.tag


@pytest.fixture(scope="module")
def rootfs(docker, image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tarfile.TarFile]:
    """The image's filesystem, as `docker export` of a created (never started) container."""
    path = tmp_path_factory.mktemp("export") / "rootfs.tar"
    cid = docker("create", image).stdout.strip()
    try:
        docker("export", "--output", str(path), cid)
    finally:
        docker("rm", cid, check=False)
    with tarfile.open(path) as tar:
        yield tar


def test_psycopg_uses_its_c_implementation(docker, image: str) -> None:
    r = docker("run", "--rm", "--entrypoint", "python", image,
               "-c", "import psycopg; print(psycopg.pq.__impl__)")
    assert r.stdout.strip() == "c"


def test_no_package_manager_compiler_pip_or_downloader(rootfs: tarfile.TarFile) -> None:
    names = rootfs.getnames()
    found = [n for n in names if FORBIDDEN.fullmatch(Path(n).name)]
    found += [n for n in names if re.search(r"(^|/)(site-packages/pip|var/lib/(dpkg|apt)|etc/apt)(/|$)", n)]
    assert not found, f"forbidden in the runtime image: {found}"
    # The one shell, kept for entrypoint.sh, is a POSIX sh.
    assert "usr/bin/sh" in names or "bin/sh" in names


def test_no_file_watcher_and_reload_is_refused(docker, image: str, rootfs: tarfile.TarFile) -> None:
    """watchfiles (Granian's reload) is for the `dev` target only: the default build has none,
    and RELOAD=on there stops at start-up instead of serving without reloading."""
    assert not [n for n in rootfs.getnames() if "/watchfiles" in n]
    r = docker("run", "--rm", "-e", "RELOAD=on", "-e", "DATABASE_URL=postgresql://app@127.0.0.1/appdb",
               "--entrypoint", "python", image, "-m", "app", "serve", check=False)
    assert r.returncode == 2 and "RELOAD=on needs watchfiles" in r.stderr, r.stderr


def test_image_user_is_numeric_and_not_root(docker, image: str) -> None:
    user = docker.inspect(image)["Config"]["User"]
    assert re.fullmatch(r"\d+:\d+", user), user
    assert user.split(":")[0] != "0"


def test_oci_labels_come_from_build_arguments(docker, image: str) -> None:
    labels = docker.inspect(image)["Config"]["Labels"]
    for key, value in LABELS.items():
        assert labels.get(key) == value, key


def test_healthcheck_entrypoint_and_stop_signal_are_exec_form(docker, image: str) -> None:
    config = docker.inspect(image)["Config"]
    assert config["Healthcheck"]["Test"][0] == "CMD"  # CMD-SHELL would need a shell
    assert config["Healthcheck"]["Test"][1:] == ["/opt/venv/bin/python", "-I", "-S", "/app/app/healthcheck.py"]
    assert config["Entrypoint"] == ["/app/entrypoint.sh"]
    assert config.get("Cmd") in (None, [])
    assert config["StopSignal"] == "SIGTERM"


def test_ca_secret_is_in_no_layer_history_or_file(docker, build: Build, rootfs: tarfile.TarFile) -> None:
    # The step that mounts the secret ran (was not taken from the cache), with the canary in it.
    steps = set(re.findall(r"^#(\d+) \[build [^\n]*--mount=type=secret,id=extra_ca", build.log, re.M))
    assert len(steps) == 1, f"no single build step mounts extra_ca in the log:\n{build.log[-3000:]}"
    step = steps.pop()
    assert re.search(rf"^#{step} DONE", build.log, re.M), f"step #{step} did not run"
    assert not re.search(rf"^#{step} CACHED", build.log, re.M), f"step #{step} came from the cache"
    history = docker("history", "--no-trunc", build.tag).stdout
    assert CANARY not in history
    assert "BEGIN CERTIFICATE" not in history
    names = rootfs.getnames()
    assert not [n for n in names if "extra_ca" in n]
    canary = CANARY.encode()
    for member in rootfs:
        if member.isfile():
            assert canary not in rootfs.extractfile(member).read(), member.name


def test_runs_read_only_without_capabilities_and_stops_on_sigterm(
    docker, image: str, tmp_path: Path
) -> None:
    """With a throwaway PostgreSQL: the entrypoint migrates, serves /health/live, turns healthy."""
    run_id = uuid.uuid4().hex[:8]
    net, db, api = f"e2e-img-{run_id}", f"e2e-img-db-{run_id}", f"e2e-img-api-{run_id}"
    password = uuid.uuid4().hex
    secret = tmp_path / "db_password"
    secret.write_text(password + "\n")
    secret.chmod(0o644)
    port = free_port()
    docker("network", "create", net)
    try:
        docker("run", "-d", "--name", db, "--network", net, "-e", f"POSTGRES_PASSWORD={password}",
               "-e", "POSTGRES_DB=appdb", "postgres:18-trixie")
        wait_for(lambda: docker("exec", db, "pg_isready", "-h", "127.0.0.1", "-U", "postgres",
                                check=False).returncode == 0, 60, "postgres ready")
        docker("run", "-d", "--name", api, "--network", net, "--read-only", "--cap-drop", "ALL",
               "--security-opt", "no-new-privileges", "-p", f"127.0.0.1:{port}:5000",
               # Its one writable path, as compose gives it: the metrics' files (docs/observability.md).
               "--tmpfs", "/tmp:uid=10001,gid=10001,mode=0700,size=16m",
               "-v", f"{secret}:/run/secrets/db_password:ro",
               "-e", f"DATABASE_URL=postgresql://postgres@{db}:5432/appdb",
               "-e", "DATABASE_PASSWORD_FILE=/run/secrets/db_password", image)
        wait_for(lambda: _status(f"http://127.0.0.1:{port}/health/live") == 200, 60, "/health/live")
        wait_for(lambda: docker.inspect(api)["State"]["Health"]["Status"] == "healthy", 30, "healthy")
        started = time.monotonic()
        docker("stop", "--time", "20", api)
        state = docker.inspect(api)["State"]
        assert state["ExitCode"] == 0, docker("logs", api).stderr[-2000:]
        assert time.monotonic() - started < 10, "SIGTERM did not stop Granian promptly"
    finally:
        docker("rm", "-f", "-v", api, db, check=False)
        docker("network", "rm", net, check=False)


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except OSError:
        return None


