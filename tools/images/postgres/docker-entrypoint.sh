#!/usr/bin/env bash
# docker-entrypoint.sh of the offline postgres:18-trixie stand-in (built by tools/offline_images.py).
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
