"""End-to-end checks of the offline stand-in images (tools/offline_images.py), with real containers.

They check the contracts the stack relies on: postgres as root and as 999:999 on a read-only root,
*_FILE secrets, /docker-entrypoint-initdb.d run once, TCP readiness only after init, an atomic
first-start init; pgAdmin read-only as uid 5050 (ping + login); nginx's entrypoint contract
(templates rendered with envsubst, /docker-entrypoint.d, uid 101, logs to stdout); Prometheus and
the two exporters as upstream runs them (uids, paths, flags, a real scrape); the python
image's pip behind a CA given as a build secret, and its C headers.

Self-contained on purpose: only the `docker` CLI (tools/docker_cli.py), no fixtures from a conftest.
Every container, volume, network and image made here carries a per-run label and is removed in a
finalizer, also when a test fails. Without an engine (or without the images) the tests skip,
except under CI=true, where they fail.
Run: bash .ci/engine.sh && python3 tools/offline_images.py && pytest tests/stack/test_offline_images.py
"""
from __future__ import annotations

import gzip
import http.cookiejar
import json
import re
import subprocess
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
from support import unavailable, wait_for

from tools import offline_images
from tools.docker_cli import Docker, docker_binary

PYTHON_IMAGE = offline_images.PYTHON_IMAGE
POSTGRES_IMAGE = offline_images.POSTGRES_IMAGE
PGADMIN_IMAGE = offline_images.PGADMIN_IMAGE
NGINX_IMAGE = offline_images.NGINX_IMAGE
PROMETHEUS_IMAGE = offline_images.PROMETHEUS_IMAGE
POSTGRES_EXPORTER_IMAGE = offline_images.POSTGRES_EXPORTER_IMAGE
NGINX_EXPORTER_IMAGE = offline_images.NGINX_EXPORTER_IMAGE

RUN_ID = uuid.uuid4().hex[:10]
RUN_LABEL = f"e2e.offline-images.run={RUN_ID}"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
docker = Docker(docker_binary() or "docker", timeout=120)  # without a client, the fixture below skips


@pytest.fixture(scope="module", autouse=True)
def engine_and_images():
    """An engine must answer and the stand-ins must be built; remove leftovers of this run at the end."""
    if not docker_binary():
        unavailable("no docker client found (PATH, $DOCKER or /opt/docker-engine)")
    try:
        alive = docker("info", check=False, timeout=30).returncode == 0
    except subprocess.TimeoutExpired:
        alive = False
    if not alive:
        unavailable("no Docker engine answers (run `bash .ci/engine.sh`)")
    missing = [img for img in (PYTHON_IMAGE, POSTGRES_IMAGE, PGADMIN_IMAGE, NGINX_IMAGE, PROMETHEUS_IMAGE,
                               POSTGRES_EXPORTER_IMAGE, NGINX_EXPORTER_IMAGE)
               if docker("image", "inspect", img, check=False).returncode != 0]
    if missing:
        unavailable(f"images not built: {missing} (run `python3 tools/offline_images.py`)")
    yield
    # Safety net for anything a test's own finalizer did not get to.
    ids = docker("ps", "-aq", "--filter", f"label={RUN_LABEL}", check=False).stdout.split()
    if ids:
        docker("rm", "-fv", *ids, check=False)
    for kind in ("volume", "network"):
        names = docker(kind, "ls", "-q", "--filter", f"label={RUN_LABEL}", check=False).stdout.split()
        if names:
            docker(kind, "rm", *names, check=False)


class Resources:
    """Unique names for containers/volumes/networks/images, removed in a finalizer."""

    def __init__(self, test_name: str):
        self.prefix = f"e2e-offimg-{RUN_ID}-{re.sub(r'[^a-z0-9]+', '-', test_name.lower())[:30]}"
        self.containers: list[str] = []
        self.volumes: list[str] = []
        self.networks: list[str] = []
        self.images: list[str] = []

    def volume(self, suffix: str = "data") -> str:
        name = f"{self.prefix}-{suffix}"
        docker("volume", "create", "--label", RUN_LABEL, name)
        self.volumes.append(name)
        return name

    def network(self) -> str:
        name = f"{self.prefix}-net"
        docker("network", "create", "--label", RUN_LABEL, name)
        self.networks.append(name)
        return name

    def run(self, suffix: str, image: str, *args: str, cmd: tuple[str, ...] = ()) -> str:
        """Start a detached container; returns its name."""
        name = f"{self.prefix}-{suffix}"
        self.containers.append(name)
        docker("run", "-d", "--name", name, "--label", RUN_LABEL, *args, image, *cmd)
        return name

    def cleanup(self) -> None:
        for c in self.containers:
            docker("rm", "-fv", c, check=False)
        for v in self.volumes:
            docker("volume", "rm", "-f", v, check=False)
        for n in self.networks:
            docker("network", "rm", n, check=False)
        for i in self.images:
            docker("image", "rm", "-f", i, check=False)


@pytest.fixture
def res(request):
    r = Resources(request.node.name)
    yield r
    r.cleanup()


def logs(name: str) -> str:
    r = docker("logs", name, check=False)
    return r.stdout + r.stderr


def state(name: str) -> dict:
    return json.loads(docker("inspect", "--format", "{{json .State}}", name).stdout)


def pg_ready_tcp(name: str, *extra: str) -> bool:
    return docker("exec", name, "pg_isready", "-q", "-h", "127.0.0.1", *extra, check=False).returncode == 0


def wait_pg_ready(name: str, *extra: str, timeout: float = 60) -> None:
    def ready():
        if not state(name)["Running"]:
            raise AssertionError(f"{name} stopped:\n{logs(name)[-3000:]}")
        return pg_ready_tcp(name, *extra)
    wait_for(ready, timeout, f"{name} to accept TCP connections")


def wait_exit(name: str, timeout: float = 60) -> int:
    r = docker("wait", name, timeout=timeout)
    return int(r.stdout.strip())


def psql(name: str, user: str, db: str, sql: str) -> str:
    r = docker("exec", name, "psql", "-q", "-v", "ON_ERROR_STOP=1", "-U", user, "-d", db, "-tAc", sql)
    return r.stdout.strip()


def readable_dir(path: Path) -> Path:
    """Bind mounts keep host modes: let uid 999 / 5050 read what the tests mount."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    return path


def uid_of_pid1(name: str) -> str:
    status = docker("exec", name, "cat", "/proc/1/status").stdout
    return re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE).group(1)


# ----------------------------------------------------------------------------------------------
# image metadata
# ----------------------------------------------------------------------------------------------
def test_image_configs_match_upstream_contracts():
    def config(image):
        return json.loads(docker("image", "inspect", "--format", "{{json .Config}}", image).stdout)

    py = config(PYTHON_IMAGE)
    assert py["Cmd"] == ["python3"] and not py.get("User") and not py.get("Entrypoint")
    assert "PATH=/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" in py["Env"]

    pg = config(POSTGRES_IMAGE)
    assert pg["Entrypoint"] == ["docker-entrypoint.sh"] and pg["Cmd"] == ["postgres"]
    assert pg["StopSignal"] == "SIGINT" and "5432/tcp" in pg["ExposedPorts"]
    assert list(pg["Volumes"]) == ["/var/lib/postgresql"] and not pg.get("User")
    env = dict(e.split("=", 1) for e in pg["Env"])
    assert env["PGDATA"] == "/var/lib/postgresql/18/docker" and env["LANG"] == "en_US.utf8"
    assert env["PATH"].endswith(":/usr/lib/postgresql/18/bin")

    pga = config(PGADMIN_IMAGE)
    assert pga["User"] == "5050" and pga["WorkingDir"] == "/pgadmin4"
    assert pga["Entrypoint"] == ["/entrypoint.sh"] and list(pga["Volumes"]) == ["/var/lib/pgadmin"]
    assert {"80/tcp", "443/tcp"} <= set(pga["ExposedPorts"])

    web = config(NGINX_IMAGE)
    assert web["Entrypoint"] == ["/docker-entrypoint.sh"] and web["Cmd"] == ["nginx", "-g", "daemon off;"]
    assert web["StopSignal"] == "SIGQUIT" and list(web["ExposedPorts"]) == ["80/tcp"] and not web.get("User")

    for image in (PYTHON_IMAGE, POSTGRES_IMAGE, PGADMIN_IMAGE, NGINX_IMAGE):
        assert config(image)["Labels"].get(offline_images.LABEL), f"{image} has no recipe label"


# ----------------------------------------------------------------------------------------------
# postgres:18-trixie
# ----------------------------------------------------------------------------------------------
INIT_SQL = "CREATE TABLE init_log (src text NOT NULL);\nINSERT INTO init_log VALUES ('sql');\n"
INIT_EXEC_SH = """#!/bin/bash
set -e
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \\
    -c "INSERT INTO init_log VALUES ('sh-exec')"
"""
# Sourced (not executable): runs inside the entrypoint's shell, so its helpers are in reach.
INIT_SOURCED_SH = """
[ -s "$PGDATA/PG_VERSION" ] || { echo "PGDATA does not point at the cluster being initialised"; exit 1; }
docker_process_sql <<<"INSERT INTO init_log VALUES ('sh-sourced')"
"""


def test_postgres_as_root_with_password_file_init_scripts_once(res, tmp_path):
    password = f"pw-{uuid.uuid4().hex}"
    secrets = readable_dir(tmp_path / "secrets")
    (secrets / "pgpw").write_text(password + "\n")  # trailing newline is dropped, as upstream
    (secrets / "pgpw").chmod(0o600)  # root reads it before dropping to postgres
    initdb = readable_dir(tmp_path / "initdb")
    (initdb / "10-schema.sql").write_text(INIT_SQL)
    (initdb / "20-exec.sh").write_text(INIT_EXEC_SH)
    (initdb / "20-exec.sh").chmod(0o755)
    (initdb / "30-sourced.sh").write_text(INIT_SOURCED_SH)
    (initdb / "40-data.sql.gz").write_bytes(gzip.compress(b"INSERT INTO init_log VALUES ('sql-gz');\n"))
    (initdb / "50-ignored.txt").write_text("not a script\n")
    for f in initdb.iterdir():
        f.chmod(f.stat().st_mode | 0o444)

    net = res.network()
    name = res.run("db", POSTGRES_IMAGE,
                   "--network", net, "-v", f"{res.volume()}:/var/lib/postgresql",
                   "-v", f"{initdb}:/docker-entrypoint-initdb.d:ro",
                   "-v", f"{secrets / 'pgpw'}:/run/secrets/pgpw:ro",
                   "-e", "POSTGRES_PASSWORD_FILE=/run/secrets/pgpw",
                   "-e", "POSTGRES_USER=app_admin", "-e", "POSTGRES_DB=appdb")
    wait_pg_ready(name, "-U", "app_admin", "-d", "appdb")

    def init_rows():
        return psql(name, "app_admin", "appdb", "SELECT string_agg(src, ',' ORDER BY src) FROM init_log")

    assert init_rows() == "sh-exec,sh-sourced,sql,sql-gz"
    assert uid_of_pid1(name) == "999", "postgres must run as the postgres user, not root"
    assert "ignoring /docker-entrypoint-initdb.d/50-ignored.txt" in logs(name)
    hba = docker("exec", name, "sh", "-c", 'tail -n 1 "$PGDATA/pg_hba.conf"').stdout.strip()
    assert hba == "host all all all scram-sha-256"

    # The password from the file works over the network (scram); a wrong one does not.
    def remote(pw):
        return docker("run", "--rm", "--label", RUN_LABEL, "--network", net, "-e", f"PGPASSWORD={pw}",
                      POSTGRES_IMAGE, "psql", "-h", name, "-U", "app_admin", "-d", "appdb", "-tAc",
                      "SELECT 42", check=False)
    ok = remote(password)
    assert ok.returncode == 0 and ok.stdout.strip() == "42", ok.stderr
    assert remote("wrong").returncode != 0

    # Second start: init is skipped, scripts do not run again.
    docker("restart", "-t", "30", name, timeout=60)
    wait_pg_ready(name, "-U", "app_admin", "-d", "appdb")
    assert "Skipping initialization" in logs(name)
    assert init_rows() == "sh-exec,sh-sourced,sql,sql-gz"
    assert password not in logs(name), "the password must never reach the logs"


def test_postgres_hardened_as_999_read_only(res):
    name = res.run("db", POSTGRES_IMAGE,
                   "--user", "999:999", "--read-only", "--cap-drop", "ALL",
                   "--security-opt", "no-new-privileges",
                   "--tmpfs", "/run/postgresql", "--tmpfs", "/tmp",
                   "-v", f"{res.volume()}:/var/lib/postgresql",
                   "-e", "POSTGRES_PASSWORD=hardened-pw")
    wait_pg_ready(name)
    assert uid_of_pid1(name) == "999"
    inspect = json.loads(docker("inspect", "--format", "{{json .HostConfig}}", name).stdout)
    assert inspect["ReadonlyRootfs"] is True
    assert psql(name, "postgres", "postgres",
                "CREATE TABLE t (x int); INSERT INTO t VALUES (7); SELECT x FROM t") == "7"
    # Second start with the same read-only settings skips init and serves the same data.
    docker("restart", "-t", "30", name, timeout=60)
    wait_pg_ready(name)
    assert psql(name, "postgres", "postgres", "SELECT x FROM t") == "7"


def test_postgres_password_and_file_are_exclusive(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    r = docker("run", "--rm", "--label", RUN_LABEL, "-v", f"{secret}:/run/secrets/pw:ro",
               "-e", "POSTGRES_PASSWORD=from-env", "-e", "POSTGRES_PASSWORD_FILE=/run/secrets/pw",
               POSTGRES_IMAGE, check=False, timeout=60)
    assert r.returncode != 0
    assert "are exclusive" in r.stderr
    assert "from-env" not in r.stdout + r.stderr and "from-file" not in r.stdout + r.stderr


def test_postgres_tcp_readiness_only_after_init(res, tmp_path):
    initdb = readable_dir(tmp_path / "initdb")
    # Sourced: holds the temporary (socket-only) server up long enough to probe it.
    (initdb / "10-slow.sh").write_text("echo INIT-SLOW-BEGIN\nsleep 6\necho INIT-SLOW-END\n")
    (initdb / "10-slow.sh").chmod(0o644)
    name = res.run("db", POSTGRES_IMAGE, "-v", f"{initdb}:/docker-entrypoint-initdb.d:ro",
                   "-e", "POSTGRES_PASSWORD=pw")
    wait_for(lambda: "INIT-SLOW-BEGIN" in logs(name), 60, "the init script to start")
    socket_ready = docker("exec", name, "pg_isready", "-q", check=False).returncode == 0
    tcp_ready = pg_ready_tcp(name)
    assert socket_ready, "the temporary server should be up on the Unix socket"
    assert not tcp_ready, "pg_isready -h 127.0.0.1 must stay red during init"
    assert "INIT-SLOW-END" not in logs(name), "probe came too late to mean anything"
    wait_pg_ready(name)
    assert "PostgreSQL init process complete" in logs(name)


def test_postgres_failed_init_is_atomic_and_retried(res, tmp_path):
    initdb = readable_dir(tmp_path / "initdb")
    (initdb / "10-ok.sql").write_text("CREATE TABLE half (x int);\n")
    (initdb / "20-fail.sql").write_text("SELECT 1/0;\n")
    for f in initdb.iterdir():
        f.chmod(0o644)
    volume = res.volume()
    name = res.run("db", POSTGRES_IMAGE, "-v", f"{volume}:/var/lib/postgresql",
                   "-v", f"{initdb}:/docker-entrypoint-initdb.d:ro", "-e", "POSTGRES_PASSWORD=pw")
    assert wait_exit(name) != 0, "a failing init script must stop the container"
    assert "initialisation FAILED" in logs(name)

    def no_cluster_in_volume():
        r = docker("run", "--rm", "--label", RUN_LABEL, "-v", f"{volume}:/v", "--entrypoint", "sh",
                   POSTGRES_IMAGE, "-c", "test ! -e /v/18/docker/PG_VERSION", check=False)
        return r.returncode == 0

    assert no_cluster_in_volume(), "a failed init must not leave PG_VERSION in PGDATA"

    # Restart: it must not come up healthy on the half-made cluster; it tries again, and fails again.
    docker("start", name)
    assert wait_exit(name) != 0
    assert "discarding /var/lib/postgresql/18/docker.init-incomplete" in logs(name)
    assert not pg_ready_tcp(name)
    assert no_cluster_in_volume()

    # Once the script is fixed, the next start initialises from scratch and serves.
    (initdb / "20-fail.sql").write_text("INSERT INTO half VALUES (1);\n")
    docker("start", name)
    wait_pg_ready(name)
    assert psql(name, "postgres", "postgres", "SELECT count(*) FROM half") == "1"


# ----------------------------------------------------------------------------------------------
# dpage/pgadmin4
# ----------------------------------------------------------------------------------------------
SERVERS_JSON = {"Servers": {"1": {"Name": "e2e-db", "Group": "Servers", "Host": "db", "Port": 5432,
                                  "MaintenanceDB": "postgres", "Username": "postgres",
                                  "ConnectionParameters": {"sslmode": "prefer", "connect_timeout": 10}}}}


def pgadmin_login(base: str, email: str, password: str) -> tuple[urllib.request.OpenerDirector, str, str]:
    """Log in through the form; returns the session, the final URL and the CSRF token."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    page = opener.open(f"{base}/login", timeout=30).read().decode()
    token = re.search(r'"csrfToken":\s*"([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"email": email, "password": password, "csrf_token": token}).encode()
    resp = opener.open(urllib.request.Request(f"{base}/authenticate/login", data=form), timeout=30)
    return opener, resp.geturl(), token


def test_pgadmin_read_only_as_5050_pings_and_logs_in(res, tmp_path):
    email, password = "admin@example.com", f"pga-{uuid.uuid4().hex[:12]}"
    files = readable_dir(tmp_path / "pgadmin")
    (files / "password").write_text(password + "\n")
    (files / "servers.json").write_text(json.dumps(SERVERS_JSON))
    for f in files.iterdir():
        f.chmod(0o644)  # read as uid 5050
    name = res.run("pgadmin", PGADMIN_IMAGE,
                   "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
                   "--security-opt", "no-new-privileges",
                   "-v", f"{res.volume()}:/var/lib/pgadmin",
                   "-v", f"{files / 'password'}:/run/secrets/pgadmin_password:ro",
                   "-v", f"{files / 'servers.json'}:/pgadmin4/servers.json:ro",
                   "-e", f"PGADMIN_DEFAULT_EMAIL={email}",
                   "-e", "PGADMIN_DEFAULT_PASSWORD_FILE=/run/secrets/pgadmin_password",
                   "-e", "PGADMIN_CUSTOM_CONFIG_DISTRO_FILE=/var/lib/pgadmin/config_distro.py",
                   "-e", "PGADMIN_CONFIG_ENHANCED_COOKIE_PROTECTION=True",
                   "-e", "PGADMIN_DISABLE_POSTFIX=true",
                   "-p", "127.0.0.1::8080")  # restricted context -> 8080, like upstream 9.16+
    port = docker("port", name, "8080/tcp").stdout.split(":")[-1].strip()
    base = f"http://127.0.0.1:{port}"

    def ping():
        if not state(name)["Running"]:
            raise AssertionError(f"pgAdmin stopped:\n{logs(name)[-3000:]}")
        try:
            return urllib.request.urlopen(f"{base}/misc/ping", timeout=5).read() == b"PING"
        except OSError:
            return False

    wait_for(ping, 120, "pgAdmin to answer /misc/ping")
    assert uid_of_pid1(name) == "5050"
    # the health check the stack uses, from inside the container
    docker("exec", name, "/venv/bin/python3", "-c",
           "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/misc/ping')")
    assert urllib.request.urlopen(f"{base}/login", timeout=30).status == 200

    opener, url, token = pgadmin_login(base, email, password)
    assert urllib.parse.urlparse(url).path.startswith("/browser"), f"login did not succeed: {url}"
    groups = json.loads(opener.open(urllib.request.Request(
        f"{base}/browser/server_group/nodes/", headers={"X-pgA-CSRFToken": token}), timeout=30).read())
    gid = groups["data"][0]["_id"]
    servers = json.loads(opener.open(urllib.request.Request(
        f"{base}/browser/server/nodes/{gid}/", headers={"X-pgA-CSRFToken": token}), timeout=30).read())
    assert [s["label"] for s in servers["result"]] == ["e2e-db"], "servers.json was not loaded"

    # `docker exec` tools find the image's config defaults, even on the read-only root
    users = json.loads(docker("exec", name, "/venv/bin/pgadmin4-cli", "get-users", "--json").stdout)
    assert [u["email"] for u in users] == [email]

    _, bad_url, _ = pgadmin_login(base, email, "not-the-password")
    assert not urllib.parse.urlparse(bad_url).path.startswith("/browser")
    assert password not in logs(name)


# ----------------------------------------------------------------------------------------------
# python:3.14-slim-trixie
# ----------------------------------------------------------------------------------------------
# ----------------------------------------------------------------------------------------------
# nginx:1.30-trixie
# ----------------------------------------------------------------------------------------------
NGINX_TEMPLATE = 'server {\n    listen 8080;\n    location / { return 200 "${GREETING} from $uri\\n"; }\n}\n'
NGINX_ENVSH = '#!/bin/sh\nexport GREETING="$GREETING, sourced"\n'


def test_nginx_layout_user_101_and_stable_line():
    script = ("id nginx; nginx -v 2>&1; readlink /var/log/nginx/access.log /var/log/nginx/error.log; "
              "ls /etc/nginx/conf.d; command -v envsubst; command -v curl")
    out = docker("run", "--rm", "--entrypoint", "sh", NGINX_IMAGE, "-c", script).stdout
    assert "uid=101(nginx) gid=101(nginx)" in out
    assert re.search(r"nginx/1\.30\.\d+", out)
    assert "/dev/stdout\n/dev/stderr\n" in out and "default.conf" in out
    assert "/usr/bin/envsubst" in out and "/usr/bin/curl" in out


def test_nginx_renders_templates_runs_entrypoint_scripts_and_serves(res, tmp_path):
    templates = readable_dir(tmp_path / "templates")
    (templates / "hello.conf.template").write_text(NGINX_TEMPLATE)
    scripts = readable_dir(tmp_path / "entrypoint.d")
    (scripts / "05-greeting.envsh").write_text(NGINX_ENVSH)
    (scripts / "05-greeting.envsh").chmod(0o755)
    (scripts / "06-ignored.txt").write_text("not a script")
    name = res.run("web", NGINX_IMAGE, "-e", "GREETING=hello",
                   "-v", f"{templates}:/etc/nginx/templates:ro",
                   "-v", f"{scripts / '05-greeting.envsh'}:/docker-entrypoint.d/05-greeting.envsh:ro",
                   "-v", f"{scripts / '06-ignored.txt'}:/docker-entrypoint.d/06-ignored.txt:ro")
    body = wait_for(lambda: docker("exec", name, "curl", "-fsS", "http://127.0.0.1:8080/x",
                                   check=False).stdout, 30, "nginx answers on 8080")
    # envsubst replaced the environment's variable (as the sourced script left it), not nginx's $uri.
    assert body == "hello, sourced from /x\n"
    assert "06-ignored.txt" in logs(name)
    processes = [line.split(None, 2) for line in docker("top", name, "-o", "uid,pid,args").stdout.splitlines()[1:]]
    assert {uid for uid, _, args in processes if args.startswith("nginx: worker")} == {"101"}


# ----------------------------------------------------------------------------------------------
# prom/prometheus, prometheuscommunity/postgres-exporter, nginx/nginx-prometheus-exporter
# ----------------------------------------------------------------------------------------------
def image_config(image: str) -> dict:
    return json.loads(docker("image", "inspect", "--format", "{{json .Config}}", image).stdout)


def test_monitoring_image_configs_match_upstream_contracts():
    prom = image_config(PROMETHEUS_IMAGE)
    assert prom["Entrypoint"] == ["/bin/prometheus"]
    assert prom["Cmd"] == ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
    assert prom["User"] == "65534:65534" and prom["WorkingDir"] == "/prometheus"
    assert list(prom["Volumes"]) == ["/prometheus"] and list(prom["ExposedPorts"]) == ["9090/tcp"]
    pgx = image_config(POSTGRES_EXPORTER_IMAGE)
    assert pgx["Entrypoint"] == ["/bin/postgres_exporter"] and pgx["User"] == "65534:65534"
    assert list(pgx["ExposedPorts"]) == ["9187/tcp"]
    ngx = image_config(NGINX_EXPORTER_IMAGE)
    assert ngx["Entrypoint"] == ["/usr/bin/nginx-prometheus-exporter"] and ngx["User"] == "1001:1001"
    assert list(ngx["ExposedPorts"]) == ["9113/tcp"]
    for image in (PROMETHEUS_IMAGE, POSTGRES_EXPORTER_IMAGE, NGINX_EXPORTER_IMAGE):
        assert image_config(image)["Labels"].get(offline_images.LABEL), f"{image} has no recipe label"


def metrics_of(network: str, url: str) -> str:
    """GET `url` from a throwaway container on `network` (busybox wget of the Prometheus image)."""
    return docker("run", "--rm", "--label", RUN_LABEL, "--network", network, "--entrypoint", "wget",
                  PROMETHEUS_IMAGE, "-q", "-O", "-", url, check=False).stdout


def test_prometheus_runs_read_only_as_nobody_on_its_volume_with_promtool_and_wget(res):
    name = res.run("prom", PROMETHEUS_IMAGE, "--read-only", "--cap-drop", "ALL",
                   "-v", f"{res.volume()}:/prometheus")
    ready = wait_for(lambda: docker("exec", name, "wget", "-q", "-O", "-", "http://127.0.0.1:9090/-/ready",
                                    check=False).stdout, 30, "Prometheus ready")
    assert "Ready" in ready
    assert uid_of_pid1(name) == "65534"
    assert "wal" in docker("exec", name, "ls", "/prometheus").stdout.split()  # its database, in the volume
    assert "promtool, version 3.5." in docker("exec", name, "promtool", "--version").stdout


def test_postgres_exporter_reads_postgres_as_a_pg_monitor_role_from_a_password_file(res, tmp_path):
    net = res.network()
    db = res.run("db", POSTGRES_IMAGE, "--network", net, "--network-alias", "db", "-e", "POSTGRES_PASSWORD=pw")
    wait_pg_ready(db)
    psql(db, "postgres", "postgres", "CREATE ROLE watcher LOGIN PASSWORD 'secret-pw'; GRANT pg_monitor TO watcher")
    secret = tmp_path / "pass"
    secret.write_text("secret-pw\n")
    secret.chmod(0o644)
    res.run("pgx", POSTGRES_EXPORTER_IMAGE, "--network", net, "--network-alias", "pgx", "--read-only",
            "-e", "DATA_SOURCE_URI=db:5432/postgres?sslmode=disable", "-e", "DATA_SOURCE_USER=watcher",
            "-e", "DATA_SOURCE_PASS_FILE=/run/pass", "-v", f"{secret}:/run/pass:ro")
    body = wait_for(lambda: (m := metrics_of(net, "http://pgx:9187/metrics")) and "pg_up" in m and m, 30,
                    "postgres_exporter's metrics")
    assert re.search(r"^pg_up 1$", body, re.MULTILINE), body[-2000:]


def test_nginx_exporter_reads_stub_status_as_1001(res, tmp_path):
    net = res.network()
    conf = readable_dir(tmp_path / "conf")
    (conf / "status.conf").write_text("server { listen 8082; location = /stub_status { stub_status; } }\n")
    res.run("web", NGINX_IMAGE, "--network", net, "--network-alias", "web", "-v", f"{conf}:/etc/nginx/conf.d:ro")
    exporter = res.run("ngx", NGINX_EXPORTER_IMAGE, "--network", net, "--network-alias", "ngx", "--read-only",
                       cmd=("--nginx.scrape-uri=http://web:8082/stub_status",))
    body = wait_for(lambda: re.search(r"^nginx_up 1$", metrics_of(net, "http://ngx:9113/metrics"), re.MULTILINE),
                    30, "nginx_up 1")
    assert body
    assert uid_of_pid1_top(exporter) == "1001"


def uid_of_pid1_top(name: str) -> str:
    """The uid of a container's main process, from the engine (the image has no cat)."""
    return docker("top", name, "-o", "pid,uid").stdout.split()[3]


def test_python_image_headers_and_tools():
    r = docker("run", "--rm", "--label", RUN_LABEL, PYTHON_IMAGE, "python3", "-c",
               "import os, shutil, sysconfig; inc = sysconfig.get_paths()['include'];"
               "print(inc, os.path.exists(os.path.join(inc, 'Python.h')));"
               "print(*[shutil.which(n) for n in ('python', 'python3', 'pip', 'pip3')]);"
               "print(os.path.exists('/usr/lib/python3.14/EXTERNALLY-MANAGED'));"
               "print(os.path.exists('/usr/local/include/python3.14/Python.h'))", timeout=60)
    include_line, which_line, marker_line, local_include = r.stdout.split("\n")[:4]
    assert local_include == "True", "upstream's header path /usr/local/include/python3.14 is missing"
    assert include_line.endswith(" True"), f"no Python.h: {include_line}"
    assert which_line.split() == ["/usr/local/bin/python", "/usr/local/bin/python3",
                                  "/usr/local/bin/pip", "/usr/local/bin/pip3"]
    assert marker_line == "False", "PEP 668 marker must be gone, as upstream"
    listing = docker("run", "--rm", "--label", RUN_LABEL, PYTHON_IMAGE,
                     "ls", "-A", "/var/lib/apt/lists").stdout
    assert listing.split() in ([], ["partial"]), "apt lists must be cleaned"


PY_BUILD_DOCKERFILE = """\
FROM {image}
# pip over HTTPS with the CA handed in as a build secret (not stored in the image)
RUN --mount=type=secret,id=extra_ca \\
    if [ -s /run/secrets/extra_ca ]; then export PIP_CERT=/run/secrets/extra_ca; fi; \\
    pip install --no-cache-dir --root-user-action=ignore --disable-pip-version-check six \\
    && python3 -c 'import six'
# a plain apt-get update works against the snapshot archive; a C extension compiles
RUN apt-get update -q && apt-get install -y -q --no-install-recommends gcc libc6-dev libpq-dev >/dev/null \\
    && printf '%s\\n' '#include <Python.h>' \\
       'static struct PyModuleDef m = {{PyModuleDef_HEAD_INIT, "hello", NULL, -1, NULL}};' \\
       'PyMODINIT_FUNC PyInit_hello(void) {{ return PyModule_Create(&m); }}' > /tmp/hello.c \\
    && gcc -shared -fPIC $(python3-config --includes) /tmp/hello.c \\
           -o /tmp/hello$(python3-config --extension-suffix) \\
    && cd /tmp && python3 -c 'import hello; print("C-EXT-OK", hello.__name__)' && pg_config --version
RUN test ! -e /run/secrets/extra_ca
"""


def test_python_image_pip_with_ca_secret_and_c_extension(res, tmp_path):
    if docker("buildx", "version", check=False).returncode != 0:
        pytest.fail("docker buildx plugin missing (run `bash .ci/engine.sh`)")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(PY_BUILD_DOCKERFILE.format(image=PYTHON_IMAGE))
    tag = f"e2e-offimg-{RUN_ID}-pybuild:latest"
    res.images.append(tag)
    cmd = ["buildx", "build", "--load", "--no-cache", "--progress=plain", "--label", RUN_LABEL, "-t", tag]
    if Path(CA_BUNDLE).exists():
        cmd += ["--secret", f"id=extra_ca,src={CA_BUNDLE}"]
    r = docker(*cmd, str(ctx), check=False, timeout=480)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "C-EXT-OK hello" in r.stderr
    # the secret is in no layer
    assert docker("run", "--rm", "--label", RUN_LABEL, tag, "sh", "-c",
                  "test ! -e /run/secrets/extra_ca && python3 -c 'import six'",
                  check=False).returncode == 0
