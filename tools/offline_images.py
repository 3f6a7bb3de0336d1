#!/usr/bin/env python3
"""Build local stand-ins for the upstream images this stack uses, without any registry.

The build machines reach the Debian archive and PyPI but no container registry, so
`docker pull` is impossible. This script builds images that honour the contracts the stack
relies on (see shared/docs/official-images.md) and tags them under the upstream names, so
Dockerfiles (`FROM python:3.14-slim-trixie`) and Compose files use them without pulling:

    python:3.14-slim-trixie    Debian sid's python3.14 (+ venv, headers, pip on PATH)
    postgres:18-trixie         Debian sid's postgresql-18 with our own docker-entrypoint.sh
    dpage/pgadmin4:9.18        pgadmin4 9.18 + gunicorn from PyPI in /venv, our /entrypoint.sh

All three are built FROM one Debian sid (minbase) root filesystem made with debootstrap and
imported as `offline-images/debian-sid:<hash>`; its tarball is cached (default
/var/cache/offline-images) so later runs skip debootstrap. Every image carries the label
`offline-images.recipe` = sha256 of its recipe (Dockerfile, entrypoint, package list); an image
whose label matches is left alone, whatever else holds the tag. Use --force to rebuild anyway.
(The sid archive moves on: --refresh-base runs debootstrap again and rebuilds every stand-in.)

Requirements: root, debootstrap, a running Docker engine with the buildx plugin
(`bash .ci/engine.sh` provisions both), Python 3.11+ (standard library only).

Usage:
    python3 tools/offline_images.py                  build what is missing or stale
    python3 tools/offline_images.py --list           show present / stale / missing
    python3 tools/offline_images.py --only postgres  build one (python | postgres | pgadmin)
    python3 tools/offline_images.py --force          rebuild even if up to date
    python3 tools/offline_images.py --pgadmin-tag    print the pgAdmin tag (9.18) and exit
Options: --cache-dir DIR (base tarball + build logs), --mirror URL (Debian archive; default: the
host's apt source), --ca-bundle FILE (CA bundle handed to pip inside builds as the BuildKit secret
`extra_ca`, never stored in a layer; default /etc/ssl/certs/ca-certificates.crt; '' for none),
--refresh-base (debootstrap again, then rebuild all).

The pgAdmin tag is also written to build/pgadmin.tag (one line) for shell scripts and Compose;
Python code can import PGADMIN_TAG / IMAGES from this module.

Differences from upstream worth knowing: Python is Debian's build (prefix /usr, with symlinks
in /usr/local/bin, headers in /usr/include/python3.14 (also linked from /usr/local/include);
`pip install` as root goes to /usr/local/lib/python3.14/dist-packages), so a Dockerfile that
copies /usr/local into another image gets symlinks, not an interpreter;
there is no PYTHON_VERSION / PG_VERSION / GOSU_VERSION env; pgAdmin runs from the PyPI wheel
(no postfix, no setcap'd python: Docker's default net.ipv4.ip_unprivileged_port_start=0 lets
uid 5050 bind port 80) and its upgrade check is off (no outside network here).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PGADMIN_VERSION = "9.18"  # what PyPI serves (`pip index versions pgadmin4`); tag of the stand-in
PGADMIN_TAG = PGADMIN_VERSION
GUNICORN_VERSION = "23.0.0"  # the version upstream's pgAdmin image pins
PYTHON_IMAGE = "python:3.14-slim-trixie"
POSTGRES_IMAGE = "postgres:18-trixie"
PGADMIN_IMAGE = f"dpage/pgadmin4:{PGADMIN_TAG}"
IMAGES = {"python": PYTHON_IMAGE, "postgres": POSTGRES_IMAGE, "pgadmin": PGADMIN_IMAGE}

LABEL = "offline-images.recipe"
BASE_REPO = "offline-images/debian-sid"
DEFAULT_CACHE = Path("/var/cache/offline-images")
DEFAULT_CA = "/etc/ssl/certs/ca-certificates.crt"
SECRET_ID = "extra_ca"  # same id the project's Compose build secret uses
REPO_ROOT = Path(__file__).resolve().parent.parent
BASE_PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# ---------------------------------------------------------------------------------------------
# Base root filesystem: files written into the debootstrap tree before it is imported.
# ---------------------------------------------------------------------------------------------
# The archive is a snapshot whose Release file has expired: apt must not check Valid-Until,
# inside images too (user Dockerfiles run a plain `apt-get update` in their builder stages).
APT_SNAPSHOT_CONF = 'Acquire::Check-Valid-Until "false";\n'
# Like Debian's official images: package scripts must not try to start services in a build.
POLICY_RC_D = "#!/bin/sh\nexit 101\n"


def debian_sources(mirror: str) -> str:
    return (
        "Types: deb\n"
        f"URIs: {mirror}\n"
        "Suites: sid\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )


# apt steps share cache mounts, so the package lists and .debs never land in a layer and
# later builds reuse the downloads; `sharing=locked` serialises concurrent apt runs.
APT_MOUNTS = (
    "--mount=type=cache,target=/var/cache/apt,sharing=locked "
    "--mount=type=cache,target=/var/lib/apt/lists,sharing=locked"
)

# ---------------------------------------------------------------------------------------------
# python:3.14-slim-trixie
# ---------------------------------------------------------------------------------------------
PYTHON_PACKAGES = "ca-certificates netbase tzdata python3.14 python3.14-venv python3.14-dev"
PYTHON_DOCKERFILE = f"""\
FROM {{base}}
# Debian's python3.14; -dev brings the headers (sysconfig include dir) so C extensions build
# once a user stage installs gcc. Upstream has no PEP 668 marker, so it goes. pip is installed
# from the wheel Debian ships for venv (no network needed) into /usr/local, as upstream's is.
# python3-config is a wrapper, not a symlink: Debian's script derives the prefix from the path
# it was called by, so a /usr/local/bin symlink would answer -I/usr/local/include/... (missing).
# /usr/local/include/python3.14 is linked too, for Dockerfiles that hard-code upstream's path.
RUN {APT_MOUNTS} \\
    set -eux; export DEBIAN_FRONTEND=noninteractive; \\
    apt-get update -q; \\
    apt-get install -y -q --no-install-recommends {PYTHON_PACKAGES}; \\
    rm -f /usr/lib/python3.14/EXTERNALLY-MANAGED; \\
    whl=$(ls /usr/share/python-wheels/pip-*.whl); \\
    python3.14 "$whl/pip" install -q --no-index --no-cache-dir --root-user-action=ignore \\
        --disable-pip-version-check "$whl"; \\
    cd /usr/local/bin; \\
    for f in python3.14 pydoc3.14; do ln -sf "/usr/bin/$f" "$f"; done; \\
    ln -sf python3.14 python3; ln -sf python3 python; \\
    printf '#!/bin/sh\\nexec /usr/bin/python3.14-config "$@"\\n' > python3.14-config; \\
    chmod 0755 python3.14-config; \\
    ln -sf python3.14-config python3-config; ln -sf python3-config python-config; \\
    ln -s /usr/include/python3.14 /usr/local/include/python3.14; \\
    ln -sf pydoc3.14 pydoc3; ln -sf pydoc3 pydoc; \\
    [ -e pip ] || ln -s pip3 pip; \\
    python3 -m pip --version; pip --version; pip3 --version; \\
    test -f "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h"; \\
    test "$(python3-config --includes)" = "-I/usr/include/python3.14 -I/usr/include/python3.14"
ENV PATH=/usr/local/bin:{BASE_PATH_ENV}
CMD ["python3"]
"""

# ---------------------------------------------------------------------------------------------
# postgres:18-trixie
# ---------------------------------------------------------------------------------------------
POSTGRES_PACKAGES = "ca-certificates tzdata locales gosu libnss-wrapper util-linux xz-utils zstd"
POSTGRES_DOCKERFILE = f"""\
FROM {{base}}
# uid/gid 999 exist before the packages, so postgresql-common adopts them.
RUN set -eux; \\
    groupadd -r postgres --gid=999; \\
    useradd -r -g postgres --uid=999 --home-dir=/var/lib/postgresql --shell=/bin/bash postgres; \\
    install -d -o postgres -g postgres -m 1777 /var/lib/postgresql
# postgresql-common first, told not to create Debian's "main" cluster; then the server.
# initdb copies the sample conf, so listen_addresses='*' there reaches every new cluster.
RUN {APT_MOUNTS} \\
    set -eux; export DEBIAN_FRONTEND=noninteractive; \\
    apt-get update -q; \\
    apt-get install -y -q --no-install-recommends {POSTGRES_PACKAGES} postgresql-common; \\
    sed -ri 's/^#?[[:space:]]*create_main_cluster[[:space:]]*=.*/create_main_cluster = false/' \\
        /etc/postgresql-common/createcluster.conf; \\
    grep -qx 'create_main_cluster = false' /etc/postgresql-common/createcluster.conf; \\
    apt-get install -y -q --no-install-recommends postgresql-18; \\
    test -z "$(ls -A /etc/postgresql)"; \\
    sed -ri "s/^#?[[:space:]]*listen_addresses[[:space:]]*=[[:space:]]*'[^']*'/listen_addresses = '*'/" \\
        /usr/share/postgresql/18/postgresql.conf.sample; \\
    grep -q "^listen_addresses = '\\*'" /usr/share/postgresql/18/postgresql.conf.sample; \\
    echo 'en_US.UTF-8 UTF-8' > /etc/locale.gen; locale-gen; \\
    install -d -o postgres -g postgres -m 3777 /var/run/postgresql; \\
    mkdir -p /docker-entrypoint-initdb.d; \\
    ln -s /usr/sbin/gosu /usr/local/bin/gosu; gosu nobody true
ENV LANG=en_US.utf8 PG_MAJOR=18
ENV PATH=$PATH:/usr/lib/postgresql/18/bin
ENV PGDATA=/var/lib/postgresql/18/docker
VOLUME /var/lib/postgresql
COPY --chmod=0755 docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENTRYPOINT ["docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]
"""

POSTGRES_ENTRYPOINT = r"""#!/usr/bin/env bash
# docker-entrypoint.sh of the offline postgres:18-trixie stand-in (tools/offline_images.py).
# Contract: POSTGRES_PASSWORD/USER/DB/INITDB_ARGS (or their *_FILE), POSTGRES_HOST_AUTH_METHOD,
# POSTGRES_INITDB_WALDIR, /docker-entrypoint-initdb.d; runs as root (then drops to postgres
# with gosu) or as any uid (user: "999:999", read-only root, tmpfs /run/postgresql and /tmp).
#
# The first-start initialisation is atomic: the cluster is made in "$PGDATA.init-incomplete"
# and renamed to $PGDATA only once initdb, CREATE DATABASE and every init script succeeded.
# A failed attempt leaves no PG_VERSION in $PGDATA, so the next start initialises again from
# scratch (and fails again if a script keeps failing): a half-made cluster never serves.
# If $PGDATA is itself a mount point (no rename possible), the cluster is made in place with a
# marker file, and every start refuses to run while the marker is there.
set -Eeuo pipefail
shopt -s nullglob

INCOMPLETE_MARKER=.docker-init-incomplete

log() { printf 'entrypoint: %s\n' "$*"; }
die() { printf 'entrypoint: error: %s\n' "$*" >&2; exit 1; }

# file_env VAR [DEFAULT]: VAR or VAR_FILE (the file's content, trailing newlines dropped).
file_env() {
  local var=$1
  local file_var="${var}_FILE"
  local value=${2:-}
  if [[ -n ${!var:-} && -n ${!file_var:-} ]]; then
    die "both $var and $file_var are set (but are exclusive)"
  fi
  if [[ -n ${!var:-} ]]; then
    value=${!var}
  elif [[ -n ${!file_var:-} ]]; then
    [[ -r ${!file_var} ]] || die "$file_var: cannot read ${!file_var}"
    value=$(<"${!file_var}")
  fi
  export "$var=$value"
  unset "$file_var"
}

wants_setup() {
  [[ ${1:-} == postgres ]] || return 1
  local arg
  for arg in "$@"; do
    case $arg in --help|-V|--version|--describe-config) return 1 ;; esac
  done
}

# psql over the Unix socket of the temporary server; callers add --dbname and input.
psql_base() {
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc -q "$@"
}
# For init files and for sourced *.sh scripts that want it.
docker_process_sql() { psql_base --dbname "$POSTGRES_DB" "$@"; }

# initdb needs a passwd entry for the current uid: borrow one through nss_wrapper if missing.
run_initdb() {
  if getent passwd "$(id -u)" >/dev/null; then
    initdb "$@"
    return
  fi
  local passwd group lib
  passwd=$(mktemp) group=$(mktemp)
  printf 'postgres:x:%s:%s:PostgreSQL:%s:/bin/false\n' "$(id -u)" "$(id -g)" /var/lib/postgresql >"$passwd"
  printf 'postgres:x:%s:\n' "$(id -g)" >"$group"
  lib=(/usr/lib/*/libnss_wrapper.so)
  LD_PRELOAD=${lib[0]} NSS_WRAPPER_PASSWD=$passwd NSS_WRAPPER_GROUP=$group initdb "$@"
  rm -f "$passwd" "$group"
}

run_init_files() {
  local f
  for f in /docker-entrypoint-initdb.d/*; do
    case $f in
      *.sh)
        # shellcheck source=/dev/null
        if [[ -x $f ]]; then log "running $f"; "$f"
        else log "sourcing $f"; . "$f"; fi ;;
      *.sql)     log "running $f"; docker_process_sql -f "$f" ;;
      *.sql.gz)  log "running $f"; gunzip -c "$f" | docker_process_sql ;;
      *.sql.xz)  log "running $f"; xzcat "$f" | docker_process_sql ;;
      *.sql.zst) log "running $f"; zstd -dc "$f" | docker_process_sql ;;
      *)         log "ignoring $f" ;;
    esac
  done
}

on_init_failure() {
  local rc=$?
  [[ $rc != 0 ]] || rc=1   # e.g. a sourced init script said `exit 0`: the init is still unfinished
  pg_ctl -D "$INIT_DIR" -m immediate -w stop >/dev/null 2>&1 || :
  printf 'entrypoint: error: first-start initialisation FAILED (exit %s); %s holds no usable cluster.\n' \
    "$rc" "$FINAL_PGDATA" >&2
  if [[ $INIT_MODE == rename ]]; then
    printf 'entrypoint: error: the next start will discard %s and initialise again.\n' "$INIT_DIR" >&2
  else
    printf 'entrypoint: error: every start will refuse to run until %s is emptied.\n' "$FINAL_PGDATA" >&2
  fi
  exit "$rc"
}

init_cluster() {
  if [[ -z $POSTGRES_PASSWORD && $POSTGRES_HOST_AUTH_METHOD != trust ]]; then
    die "Database is uninitialized and superuser password is not specified.
  Set POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) to a non-empty value, or
  POSTGRES_HOST_AUTH_METHOD=trust to allow all connections without a password (NOT recommended)."
  fi
  # 18+ keeps data in /var/lib/postgresql/18/docker; a volume at the old .../data path would
  # silently hold nothing while the cluster lives in an anonymous volume.
  if [[ $PGDATA == /var/lib/postgresql/18/docker ]] \
     && mountpoint -q /var/lib/postgresql/data 2>/dev/null; then
    die "a volume is mounted at /var/lib/postgresql/data, but PostgreSQL 18 images keep their data in
  $PGDATA: mount the volume at /var/lib/postgresql instead (or set PGDATA explicitly)."
  fi
  ls /docker-entrypoint-initdb.d/ >/dev/null  # fail now, not half-way, if it is unreadable

  FINAL_PGDATA=$PGDATA
  local parent not_empty
  parent=$(dirname "$PGDATA")
  not_empty="$PGDATA is not empty but holds no PG_VERSION: refusing to initialise over it"
  if ! mountpoint -q "$PGDATA" 2>/dev/null && [[ -w $parent ]]; then
    INIT_MODE=rename INIT_DIR="$PGDATA.init-incomplete"
    if [[ -e $INIT_DIR ]]; then
      log "discarding $INIT_DIR left by an earlier first start that did not complete"
      rm -rf "$INIT_DIR"
    fi
    if [[ -d $PGDATA ]]; then
      rmdir "$PGDATA" 2>/dev/null || die "$not_empty"
    fi
    mkdir -m 0700 "$INIT_DIR"
  else
    INIT_MODE=in-place INIT_DIR=$PGDATA
    [[ -z $(ls -A "$PGDATA") ]] || die "$not_empty"
  fi
  trap on_init_failure EXIT

  local -a args
  read -r -a args <<<"$POSTGRES_INITDB_ARGS"  # split on blanks, never eval'd
  [[ -z ${POSTGRES_INITDB_WALDIR:-} ]] || args+=(--waldir "$POSTGRES_INITDB_WALDIR")
  log "initialising a new cluster in $INIT_DIR"
  if [[ -n $POSTGRES_PASSWORD ]]; then
    # the password reaches initdb through a pipe, never a command line, a file or SQL text
    run_initdb -D "$INIT_DIR" --username="$POSTGRES_USER" \
      --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") "${args[@]}"
  else
    run_initdb -D "$INIT_DIR" --username="$POSTGRES_USER" "${args[@]}"
  fi
  [[ $INIT_MODE == rename ]] || : >"$INIT_DIR/$INCOMPLETE_MARKER"

  if [[ $POSTGRES_HOST_AUTH_METHOD == trust ]]; then
    log "WARNING: POSTGRES_HOST_AUTH_METHOD=trust: every host may connect without a password"
  fi
  printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$INIT_DIR/pg_hba.conf"

  # Temporary server on the Unix socket only, so TCP health checks stay red meanwhile.
  # Init scripts see PGDATA = the directory being initialised.
  export PGDATA=$INIT_DIR PGPASSWORD=${PGPASSWORD:-$POSTGRES_PASSWORD}
  unset PGHOST PGHOSTADDR
  pg_ctl -D "$INIT_DIR" -w -o "-c listen_addresses='' -p ${PGPORT:-5432}" start

  if [[ $POSTGRES_DB != postgres ]]; then
    local exists
    exists=$(psql_base --dbname postgres -tA --set db="$POSTGRES_DB" \
      <<<"SELECT 1 FROM pg_database WHERE datname = :'db';")
    if [[ -z $exists ]]; then
      log "creating database $POSTGRES_DB"
      psql_base --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    fi
  fi
  run_init_files

  pg_ctl -D "$INIT_DIR" -m fast -w stop
  unset PGPASSWORD
  export PGDATA=$FINAL_PGDATA
  if [[ $INIT_MODE == rename ]]; then
    sync "$INIT_DIR" 2>/dev/null || :
    mv -T "$INIT_DIR" "$PGDATA"   # rename(2): atomic on one filesystem
    sync "$(dirname "$PGDATA")" 2>/dev/null || :
  else
    sync "$PGDATA" 2>/dev/null || :
    rm -f "$PGDATA/$INCOMPLETE_MARKER"
  fi
  trap - EXIT
  log "PostgreSQL init process complete; ready for start up."
}

main() {
  if [[ ${1:-} == -* ]]; then set -- postgres "$@"; fi
  wants_setup "$@" || exec "$@"

  file_env POSTGRES_PASSWORD
  file_env POSTGRES_USER postgres
  file_env POSTGRES_DB "$POSTGRES_USER"
  file_env POSTGRES_INITDB_ARGS
  export POSTGRES_HOST_AUTH_METHOD=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
  export PGDATA=${PGDATA%/}

  if [[ $(id -u) == 0 ]]; then
    # Root: make the directories the postgres user needs, then run this script again as it.
    # A parent we create is given to postgres (so the atomic rename can happen there); an
    # existing one is left as it is (then the cluster is made in place, with the marker).
    local parent
    parent=$(dirname "$PGDATA")
    if [[ ! -d $parent ]]; then
      mkdir -p "$parent"
      chown postgres:postgres "$parent"
    fi
    mkdir -p "$PGDATA" /var/run/postgresql
    chmod 0700 "$PGDATA" || :
    chmod 3775 /var/run/postgresql || :
    find /var/run/postgresql -maxdepth 0 \! -user postgres -exec chown postgres:postgres {} + || :
    find "$PGDATA" \! -user postgres -exec chown postgres:postgres {} +
    if [[ -n ${POSTGRES_INITDB_WALDIR:-} ]]; then
      mkdir -p "$POSTGRES_INITDB_WALDIR"
      find "$POSTGRES_INITDB_WALDIR" \! -user postgres -exec chown postgres:postgres {} +
    fi
    exec gosu postgres "${BASH_SOURCE[0]}" "$@"
  fi

  mkdir -p "$(dirname "$PGDATA")" 2>/dev/null || :
  [[ ! -d $PGDATA ]] || chmod 0700 "$PGDATA" 2>/dev/null || :
  mkdir -p /var/run/postgresql 2>/dev/null || :
  chmod 3775 /var/run/postgresql 2>/dev/null || :

  if [[ -e $PGDATA/$INCOMPLETE_MARKER ]]; then
    die "$PGDATA holds a cluster whose first-start initialisation did not complete.
  Refusing to start it. Empty $PGDATA (e.g. remove the volume) to initialise again."
  fi
  if [[ -s $PGDATA/PG_VERSION ]]; then
    log "PostgreSQL Database directory appears to contain a database; Skipping initialization"
  else
    init_cluster
  fi
  # The server never needs the password (it is in pg_authid now): keep it out
  # of the postmaster's /proc/<pid>/environ.
  unset POSTGRES_PASSWORD PGPASSWORD
  exec "$@"
}

main "$@"
"""

# ---------------------------------------------------------------------------------------------
# dpage/pgadmin4:<PGADMIN_TAG>
# ---------------------------------------------------------------------------------------------
PGADMIN_PACKAGES = "ca-certificates tzdata python3.14 python3.14-venv postgresql-client-18"
PGADMIN_DOCKERFILE = f"""\
FROM {{base}}
RUN {APT_MOUNTS} \\
    set -eux; export DEBIAN_FRONTEND=noninteractive; \\
    apt-get update -q; \\
    apt-get install -y -q --no-install-recommends {PGADMIN_PACKAGES}
# pip reaches PyPI; the CA bundle comes in as a BuildKit secret (never in a layer).
# pgadmin4 is a namespace package: its directory is found through __path__, not __file__.
RUN --mount=type=secret,id={SECRET_ID} --mount=type=cache,target=/root/.cache/pip \\
    set -eu; \\
    if [ -s /run/secrets/{SECRET_ID} ]; then export PIP_CERT=/run/secrets/{SECRET_ID}; fi; \\
    python3.14 -m venv /venv; \\
    /venv/bin/pip install -q --disable-pip-version-check \\
        pgadmin4=={PGADMIN_VERSION} gunicorn=={GUNICORN_VERSION}; \\
    app=$(/venv/bin/python3 -c 'import pgadmin4; print(list(pgadmin4.__path__)[0])'); \\
    ln -s "$app" /usr/local/lib/pgadmin4; \\
    test -f /usr/local/lib/pgadmin4/pgAdmin4.py
# uid 5050 with primary group 0 (root); data and run dirs owned 5050:0 with g=u, as upstream.
# The defaults of config_distro.py are also baked in, so `docker exec ... pgadmin4-cli` finds
# them (CONFIG_DISTRO_FILE_PATH) even on a read-only root; the entrypoint rewrites the file.
COPY config_defaults.py /usr/local/share/pgadmin4/config_defaults.py
RUN set -eux; \\
    useradd -r -u 5050 -g 0 -d /var/lib/pgadmin -s /usr/sbin/nologin pgadmin; \\
    install -d -o 5050 -g 0 -m 0770 /var/lib/pgadmin /run/pgadmin /pgadmin4; \\
    install -o 5050 -g 0 -m 0660 /usr/local/share/pgadmin4/config_defaults.py /pgadmin4/config_distro.py
COPY --chmod=0755 entrypoint.sh /entrypoint.sh
ENV CONFIG_DISTRO_FILE_PATH=/pgadmin4/config_distro.py
USER 5050
WORKDIR /pgadmin4
VOLUME /var/lib/pgadmin
EXPOSE 80 443
ENTRYPOINT ["/entrypoint.sh"]
"""

# Our config_distro.py defaults: the wheel's own two settings, logs to stdout only (gunicorn),
# no upgrade check (no outside network), the Debian client tools for backup/restore.
PGADMIN_CONFIG_DEFAULTS = """\
HELP_PATH = '../../docs/en_US/_build/html/'
MINIFY_HTML = False
LOG_FILE = '/dev/null'
CA_FILE = '/etc/ssl/certs/ca-certificates.crt'
UPGRADE_CHECK_ENABLED = False
DEFAULT_BINARY_PATHS = {'pg': '/usr/lib/postgresql/18/bin', 'pg-18': '/usr/lib/postgresql/18/bin'}
"""

PGADMIN_ENTRYPOINT = r"""#!/usr/bin/env bash
# /entrypoint.sh of the offline dpage/pgadmin4 stand-in (tools/offline_images.py).
# Honours PGADMIN_DEFAULT_EMAIL, PGADMIN_DEFAULT_PASSWORD(_FILE), PGADMIN_SERVER_JSON_FILE,
# PGADMIN_REPLACE_SERVERS_ON_STARTUP, PGPASS_FILE, PGADMIN_CONFIG_*,
# PGADMIN_CUSTOM_CONFIG_DISTRO_FILE, PGADMIN_LISTEN_ADDRESS/PORT, PGADMIN_ENABLE_TLS,
# GUNICORN_THREADS, GUNICORN_ACCESS_LOGFILE. PGADMIN_DISABLE_POSTFIX is accepted and ignored:
# this image has no postfix.
set -Eeuo pipefail

APP_DIR=/usr/local/lib/pgadmin4   # the pgadmin4 package inside /venv
DATA_DIR=/var/lib/pgadmin

log() { printf 'entrypoint: %s\n' "$*"; }
die() { printf 'entrypoint: error: %s\n' "$*" >&2; exit 1; }
is_true() { [[ ${1,,} =~ ^(true|yes|1|on)$ ]]; }

if [[ -n ${PGADMIN_DEFAULT_PASSWORD:-} && -n ${PGADMIN_DEFAULT_PASSWORD_FILE:-} ]]; then
  die "both PGADMIN_DEFAULT_PASSWORD and PGADMIN_DEFAULT_PASSWORD_FILE are set (but are exclusive)"
fi
if [[ -n ${PGADMIN_DEFAULT_PASSWORD_FILE:-} ]]; then
  [[ -r $PGADMIN_DEFAULT_PASSWORD_FILE ]] || die "cannot read $PGADMIN_DEFAULT_PASSWORD_FILE"
  PGADMIN_DEFAULT_PASSWORD=$(<"$PGADMIN_DEFAULT_PASSWORD_FILE")
fi
unset PGADMIN_DEFAULT_PASSWORD_FILE

# config_distro.py: the image's defaults, then one `NAME = value` line per PGADMIN_CONFIG_NAME
# (values are Python literals, e.g. PGADMIN_CONFIG_LOGIN_BANNER="'Hello'"). Rewritten at every
# start, so it always matches the environment. With a read-only root, point
# PGADMIN_CUSTOM_CONFIG_DISTRO_FILE at a writable path; without it, /tmp is used.
write_config() {
  local name
  (
    umask 077
    {
      echo "# generated by /entrypoint.sh at container start"
      cat /usr/local/share/pgadmin4/config_defaults.py
      for name in $(compgen -e); do
        [[ $name == PGADMIN_CONFIG_* ]] || continue
        printf '%s = %s\n' "${name#PGADMIN_CONFIG_}" "${!name}"
      done
    } >"$1"
  ) 2>/dev/null
}
config_file=${PGADMIN_CUSTOM_CONFIG_DISTRO_FILE:-/pgadmin4/config_distro.py}
if ! write_config "$config_file"; then
  [[ -z ${PGADMIN_CUSTOM_CONFIG_DISTRO_FILE:-} ]] || die "cannot write $config_file"
  config_file=/tmp/config_distro.py
  write_config "$config_file" \
    || die "cannot write /pgadmin4/config_distro.py nor $config_file: set PGADMIN_CUSTOM_CONFIG_DISTRO_FILE"
  log "/pgadmin4 is read-only: configuration written to $config_file"
fi
export CONFIG_DISTRO_FILE_PATH=$config_file

# First launch = no configuration database yet: create it with the default user.
first_launch=0
if [[ ! -f $DATA_DIR/pgadmin4.db ]]; then
  first_launch=1
  if [[ -z ${PGADMIN_DEFAULT_EMAIL:-} || -z ${PGADMIN_DEFAULT_PASSWORD:-} ]]; then
    die "You need to define the PGADMIN_DEFAULT_EMAIL and PGADMIN_DEFAULT_PASSWORD or
  PGADMIN_DEFAULT_PASSWORD_FILE environment variables."
  fi
  log "first launch: creating the configuration database for $PGADMIN_DEFAULT_EMAIL"
  # the password goes through the environment of this one command only
  PGADMIN_SETUP_EMAIL=$PGADMIN_DEFAULT_EMAIL PGADMIN_SETUP_PASSWORD=$PGADMIN_DEFAULT_PASSWORD \
    /venv/bin/pgadmin4-cli setup-db >/dev/null
fi

servers_file=${PGADMIN_SERVER_JSON_FILE:-/pgadmin4/servers.json}
replace_servers=${PGADMIN_REPLACE_SERVERS_ON_STARTUP:-false}
if [[ -f $servers_file ]] && { [[ $first_launch == 1 ]] || is_true "$replace_servers"; }; then
  [[ -n ${PGADMIN_DEFAULT_EMAIL:-} ]] || die "loading $servers_file needs PGADMIN_DEFAULT_EMAIL"
  load_args=(load-servers "$servers_file" --user "$PGADMIN_DEFAULT_EMAIL")
  [[ $first_launch == 1 ]] || load_args+=(--replace)
  # load-servers prints errors but exits 0: look for its success line
  out=$(/venv/bin/pgadmin4-cli "${load_args[@]}" 2>&1) || die "load-servers failed: $out"
  grep -qi 'Added [0-9]* Server' <<<"$out" || die "load-servers did not load $servers_file: $out"
  log "loaded servers from $servers_file"
fi

# A pgpass file is only used by libpq if private (0600): copy it into the user's storage
# directory (where servers.json "PassFile": "/pgpass" points) and point PGPASSFILE at it.
if [[ -n ${PGPASS_FILE:-} ]]; then
  [[ -r $PGPASS_FILE ]] || die "PGPASS_FILE: cannot read $PGPASS_FILE"
  [[ -n ${PGADMIN_DEFAULT_EMAIL:-} ]] || die "PGPASS_FILE needs PGADMIN_DEFAULT_EMAIL"
  storage="$DATA_DIR/storage/${PGADMIN_DEFAULT_EMAIL//@/_}"
  mkdir -p "$storage"
  (umask 077; cat "$PGPASS_FILE" >"$storage/pgpass")
  chmod 0600 "$storage/pgpass"
  export PGPASSFILE="$storage/pgpass"
fi
unset PGADMIN_DEFAULT_PASSWORD

# Like upstream 9.16+: without the right to bind low ports (no-new-privileges, or
# CAP_NET_BIND_SERVICE not in the bounding set) the default port moves to 8080 / 8443.
restricted=0
if grep -q '^NoNewPrivs:[[:space:]]*1' /proc/self/status; then restricted=1; fi
capbnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
if (( ((16#${capbnd:-0}) >> 10 & 1) == 0 )); then restricted=1; fi   # bit 10 = NET_BIND_SERVICE
tls_args=()
if [[ -n ${PGADMIN_ENABLE_TLS:-} ]]; then
  tls_args=(--keyfile /certs/server.key --certfile /certs/server.cert)
  default_port=443; [[ $restricted == 0 ]] || default_port=8443
else
  default_port=80; [[ $restricted == 0 ]] || default_port=8080
fi
if [[ -z ${PGADMIN_LISTEN_PORT:-} && $restricted == 1 ]]; then
  log "restricted context (no-new-privileges or no CAP_NET_BIND_SERVICE): listening on $default_port"
fi
bind="${PGADMIN_LISTEN_ADDRESS:-[::]}:${PGADMIN_LISTEN_PORT:-$default_port}"

log "starting gunicorn on $bind"
exec /venv/bin/gunicorn --chdir "$APP_DIR" --bind "$bind" --workers 1 \
  --threads "${GUNICORN_THREADS:-25}" --timeout 86400 \
  --access-logfile "${GUNICORN_ACCESS_LOGFILE:--}" "${tls_args[@]}" pgAdmin4:app
"""

# name -> (image, Dockerfile template with {base}, {file in the build context: its text})
RECIPES = {
    "python": (PYTHON_IMAGE, PYTHON_DOCKERFILE, {}),
    "postgres": (POSTGRES_IMAGE, POSTGRES_DOCKERFILE,
                 {"docker-entrypoint.sh": POSTGRES_ENTRYPOINT}),
    "pgadmin": (PGADMIN_IMAGE, PGADMIN_DOCKERFILE,
                {"entrypoint.sh": PGADMIN_ENTRYPOINT, "config_defaults.py": PGADMIN_CONFIG_DEFAULTS}),
}

# ---------------------------------------------------------------------------------------------
# Machinery
# ---------------------------------------------------------------------------------------------
START = time.monotonic()


class BuildError(Exception):
    pass


def step(msg: str) -> None:
    print(f"[offline-images {time.monotonic() - START:5.0f}s] {msg}", flush=True)


def sha256(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()


def run(cmd: list[str], log: Path | None = None, **kw) -> subprocess.CompletedProcess:
    """Run a command; its output goes to `log` (appended) or is captured."""
    if log is None:
        return subprocess.run(cmd, check=False, text=True, capture_output=True, **kw)
    with open(log, "a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        return subprocess.run(cmd, check=False, text=True, stdout=fh, stderr=subprocess.STDOUT, **kw)


def fail_with_log(what: str, log: Path) -> None:
    tail = log.read_text(errors="replace").splitlines()[-40:] if log.exists() else []
    raise BuildError(f"{what} failed; last lines of {log}:\n" + "\n".join(tail))


def host_mirror() -> str:
    """The Debian archive the host's apt uses (the only one this machine may reach)."""
    deb822 = Path("/etc/apt/sources.list.d/debian.sources")
    if deb822.exists():
        for line in deb822.read_text().splitlines():
            m = re.match(r"URIs:\s*(\S+)", line)
            if m and "security" not in m.group(1):
                return m.group(1)
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            m = re.match(r"deb\s+(?:\[[^]]*\]\s+)?(\S+)", line)
            if m and "security" not in m.group(1):
                return m.group(1)
    return "http://deb.debian.org/debian"


def image_label(image: str) -> str | None:
    """The recipe label of a local image; None if the image does not exist."""
    r = run(["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", image])
    if r.returncode != 0:
        return None
    labels = json.loads(r.stdout.strip() or "null") or {}
    return labels.get(LABEL, "")


def image_id(image: str) -> str:
    return run(["docker", "image", "inspect", "--format", "{{.Id}}", image]).stdout.strip()


def drop_replaced(old_id: str, image: str) -> None:
    """Remove the image a tag named before a rebuild (docker keeps it if a container uses it)."""
    if old_id and old_id != image_id(image):
        run(["docker", "image", "rm", old_id])


class Builder:
    def __init__(self, args: argparse.Namespace):
        self.cache = Path(args.cache_dir)
        self.logs = self.cache / "logs"
        self.mirror = args.mirror or host_mirror()
        self.ca = args.ca_bundle
        self.refresh_base = args.refresh_base
        self.force = args.force or args.refresh_base  # a new base means new stand-ins
        # The base recipe: everything that shapes the root filesystem.
        self.base_hash = sha256("debootstrap --variant=minbase sid", self.mirror,
                                debian_sources(self.mirror), APT_SNAPSHOT_CONF, POLICY_RC_D,
                                BASE_PATH_ENV)
        self.base_image = f"{BASE_REPO}:{self.base_hash[:12]}"
        self.base_tar = self.cache / f"debian-sid-minbase-{self.base_hash[:12]}.tar"

    def recipe(self, name: str) -> tuple[str, str, dict[str, str], str]:
        image, template, files = RECIPES[name]
        dockerfile = template.replace("{base}", self.base_image)
        digest = sha256(dockerfile, *(f"{k}\n{v}" for k, v in sorted(files.items())))
        return image, dockerfile, files, digest

    # -- base -----------------------------------------------------------------------------
    def ensure_base(self) -> None:
        if not self.refresh_base and image_label(self.base_image) == self.base_hash:
            step(f"base {self.base_image}: up to date")
            return
        self.cache.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        if self.refresh_base or not self.base_tar.exists():
            self.debootstrap()
        step(f"base: importing {self.base_tar.name} as {self.base_image}")
        old_id = image_id(self.base_image)
        r = run(["docker", "import",
                 "--change", f"ENV PATH={BASE_PATH_ENV}",  # Dockerfiles extend $PATH
                 "--change", 'CMD ["bash"]',
                 "--change", f"LABEL {LABEL}={self.base_hash}",
                 str(self.base_tar), self.base_image])
        if r.returncode != 0:
            raise BuildError(f"docker import failed: {r.stderr.strip()}")
        drop_replaced(old_id, self.base_image)

    def debootstrap(self) -> None:
        if os.geteuid() != 0:
            raise BuildError("debootstrap needs root")
        if not shutil.which("debootstrap"):
            raise BuildError("debootstrap is missing: run `bash .ci/engine.sh` "
                             "(or apt-get install debootstrap)")
        log = self.logs / "debootstrap.log"
        log.write_text("")
        root = Path(tempfile.mkdtemp(prefix="rootfs-", dir=self.cache))
        try:
            step(f"base: debootstrap --variant=minbase sid from {self.mirror} (log: {log})")
            r = run(["debootstrap", "--variant=minbase", "sid", str(root), self.mirror], log)
            if r.returncode != 0:
                fail_with_log("debootstrap", log)
            step("base: configuring apt (sources = host archive, suite sid; snapshot option)")
            (root / "etc/apt/sources.list").unlink(missing_ok=True)
            (root / "etc/apt/sources.list.d/debian.sources").write_text(debian_sources(self.mirror))
            (root / "etc/apt/apt.conf.d/99snapshot-archive").write_text(APT_SNAPSHOT_CONF)
            policy = root / "usr/sbin/policy-rc.d"
            policy.write_text(POLICY_RC_D)
            policy.chmod(0o755)
            # No package lists, .debs or host network settings in the image.
            for pattern in ("var/lib/apt/lists/*", "var/cache/apt/*.bin",
                            "var/cache/apt/archives/*.deb", "var/log/*.log"):
                for p in root.glob(pattern):
                    if p.is_file():
                        p.unlink()
            (root / "etc/resolv.conf").write_text("")
            (root / "etc/hostname").write_text("")
            step(f"base: writing {self.base_tar}")
            tmp_tar = self.base_tar.with_suffix(".tar.part")
            r = run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(tmp_tar), "."], log)
            if r.returncode != 0:
                fail_with_log("tar", log)
            tmp_tar.rename(self.base_tar)
            for old in self.cache.glob("debian-sid-minbase-*.tar"):
                if old != self.base_tar:
                    old.unlink()  # tarballs of earlier base recipes
        finally:
            shutil.rmtree(root, ignore_errors=True)

    # -- stand-ins -----------------------------------------------------------------------
    def build(self, name: str) -> None:
        image, dockerfile, files, digest = self.recipe(name)
        current = image_label(image)
        old_id = image_id(image)
        if current == digest and not self.force:
            step(f"{image}: up to date (recipe {digest[:12]})")
            return
        why = "forced" if current == digest else ("missing" if current is None else "stale")
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}.log"
        log.write_text("")
        with tempfile.TemporaryDirectory(prefix=f"ctx-{name}-") as ctx:
            (Path(ctx) / "Dockerfile").write_text(dockerfile)
            for fname, text in files.items():
                (Path(ctx) / fname).write_text(text)
            cmd = ["docker", "buildx", "build", "--load", "--progress=plain",
                   "--label", f"{LABEL}={digest}", "-t", image]
            if self.ca:
                cmd += ["--secret", f"id={SECRET_ID},src={self.ca}"]
            if self.force:
                cmd.append("--no-cache")
            t0 = time.monotonic()
            step(f"{image}: building ({why}; log: {log})")
            r = run(cmd + [ctx], log)
            if r.returncode != 0:
                fail_with_log(f"building {image}", log)
        step(f"{image}: built in {time.monotonic() - t0:.0f}s (recipe {digest[:12]})")
        drop_replaced(old_id, image)

    def status(self, name: str) -> str:
        image, _, _, digest = self.recipe(name)
        current = image_label(image)
        state = "missing" if current is None else ("present" if current == digest else "stale")
        return f"{state:8} {image:28} recipe {digest[:12]}"


def check_engine() -> None:
    if not shutil.which("docker"):
        raise BuildError("no docker client on PATH")
    if run(["docker", "info"]).returncode != 0:
        raise BuildError("no Docker engine answers: run `bash .ci/engine.sh` first "
                         "(and `. /opt/docker-engine/env.sh`)")
    if run(["docker", "buildx", "version"]).returncode != 0:
        raise BuildError("the docker buildx plugin is missing (needed for RUN --mount): "
                         "run `bash .ci/engine.sh`")


def write_tag_file() -> None:
    path = REPO_ROOT / "build" / "pgadmin.tag"
    path.parent.mkdir(exist_ok=True)
    if not path.exists() or path.read_text() != PGADMIN_TAG + "\n":
        path.write_text(PGADMIN_TAG + "\n")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Build offline stand-ins for upstream images.",
                                epilog="See the module docstring for details.")
    p.add_argument("--only", choices=sorted(IMAGES) + sorted(IMAGES.values()), metavar="NAME",
                   help="build only this one: python, postgres or pgadmin (or its image name)")
    p.add_argument("--list", action="store_true", help="show which images are present/stale/missing")
    p.add_argument("--force", action="store_true", help="rebuild even if the recipe label matches")
    p.add_argument("--refresh-base", action="store_true", help="run debootstrap again (implies --force)")
    p.add_argument("--cache-dir", default=os.environ.get("OFFLINE_IMAGES_CACHE", str(DEFAULT_CACHE)),
                   help=f"base tarball and build logs (default {DEFAULT_CACHE})")
    p.add_argument("--mirror", help="Debian archive URL (default: the host's apt source)")
    p.add_argument("--ca-bundle", default=DEFAULT_CA if Path(DEFAULT_CA).exists() else "",
                   help="CA bundle for pip inside builds, passed as a BuildKit secret ('' for none)")
    p.add_argument("--pgadmin-tag", action="store_true", help="print the pgAdmin tag and exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.pgadmin_tag:
        print(PGADMIN_TAG)
        return 0
    write_tag_file()
    if args.ca_bundle and not Path(args.ca_bundle).is_file():
        print(f"offline-images: error: --ca-bundle {args.ca_bundle} is not a file", file=sys.stderr)
        return 2
    try:
        check_engine()
        builder = Builder(args)
        if args.list:
            base = image_label(builder.base_image)
            print(f"{'present' if base == builder.base_hash else 'missing':8} {builder.base_image:28} "
                  f"(tarball {'cached' if builder.base_tar.exists() else 'not cached'})")
            for name in IMAGES:
                print(builder.status(name))
            return 0
        names = list(IMAGES)
        if args.only:
            names = [n for n, img in IMAGES.items() if args.only in (n, img)]
        todo = [n for n in names
                if builder.force or image_label(IMAGES[n]) != builder.recipe(n)[3]]
        if todo:
            builder.ensure_base()
        for name in names:
            builder.build(name)
    except BuildError as exc:
        print(f"offline-images: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("offline-images: interrupted", file=sys.stderr)
        return 130
    step("done: " + ", ".join(IMAGES[n] for n in names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
