#!/usr/bin/env bash
# .ci/engine.sh -- provision and start a Docker Engine on a Debian 12 machine that has a `docker`
# client but no engine and no registry (see docs: only the Debian archive and PyPI are reachable).
#
# What it does, skipping every step that is already done (safe to run again and again):
#   1. installs the host tools from Debian 12: runc (sid's runc needs a newer glibc), iptables
#      (bridge networking) and debootstrap (used by tools/offline_images.py);
#   2. downloads -- never `apt install`s, which would drag in sid's libc -- the sid packages
#      docker.io (engine 28.x), docker-cli (a client of the same version), containerd,
#      tini-static (docker-init), docker-compose and docker-buildx with a private apt
#      configuration, and unpacks them under ENGINE_DIR;
#   3. links the Compose and buildx CLI plugins into /usr/local/lib/docker/cli-plugins, a
#      directory every docker client searches;
#   4. starts dockerd in the background (log: /var/log/dockerd.log) unless an engine answers;
#   5. prints the engine, Compose and buildx versions.
#
# Usage:
#   bash .ci/engine.sh [ENGINE_DIR]            provision + start (ENGINE_DIR default /opt/docker-engine,
#                                              or $DOCKER_ENGINE_DIR)
#   eval "$(bash .ci/engine.sh --print-env)"   only print `export PATH=...` for the calling shell
#   . /opt/docker-engine/env.sh                same, from the file this script writes
# The engine's binaries live in ENGINE_DIR/usr/sbin and ENGINE_DIR/usr/bin: put both first on PATH.
set -euo pipefail

ENG=${DOCKER_ENGINE_DIR:-/opt/docker-engine}
PRINT_ENV=0
for arg in "$@"; do
  case $arg in
    --print-env) PRINT_ENV=1 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    -*) echo "engine.sh: unknown option $arg" >&2; exit 2 ;;
    *) ENG=$arg ;;
  esac
done
ENV_LINE="export PATH=\"$ENG/usr/sbin:$ENG/usr/bin:\$PATH\""
if [[ $PRINT_ENV == 1 ]]; then echo "$ENV_LINE"; exit 0; fi

START=$SECONDS
step() { echo "[engine +$((SECONDS - START))s] $*"; }
export DEBIAN_FRONTEND=noninteractive
PLUGINS=/usr/local/lib/docker/cli-plugins

# 1. Host tools from the machine's own release (bookworm).
if ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null || ! command -v iptables >/dev/null; then
  step "installing runc, iptables, debootstrap from Debian 12"
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends runc iptables debootstrap >/dev/null
else
  step "host tools present (runc, iptables, debootstrap)"
fi

# 2. + 3. Engine and plugins from sid, unpacked (not installed) so the host's libc stays as it is.
if [[ ! -x $ENG/usr/sbin/dockerd || ! -x $ENG/usr/bin/containerd || ! -x $ENG/usr/bin/docker \
      || ! -x $PLUGINS/docker-compose || ! -x $PLUGINS/docker-buildx ]]; then
  # Use the same archive as the host (the machine may only reach this mirror), with suite sid.
  src=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
  [[ -n $src ]] || src=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null)
  [[ -n $src ]] || { echo "engine.sh: cannot find the host's Debian archive URL" >&2; exit 1; }
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $src sid main" >"$work/sources.list"
  # A private apt state: the host's own sources and lists are left untouched.
  # The archive is a snapshot, so its Release file is "expired": Check-Valid-Until=false.
  apt_opts=(-o "Dir::Etc::sourcelist=$work/sources.list" -o Dir::Etc::sourceparts=-
            -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache"
            -o Acquire::Check-Valid-Until=false -o APT::Sandbox::User=root)
  step "reading the sid package index from $src"
  apt-get "${apt_opts[@]}" update -q >/dev/null
  pkgs=(docker.io docker-cli containerd tini-static docker-compose docker-buildx)
  step "downloading ${pkgs[*]} (sid)"
  (cd "$work/debs" && apt-get "${apt_opts[@]}" download -q "${pkgs[@]}" >/dev/null)
  step "unpacking into $ENG"
  mkdir -p "$ENG"
  for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$ENG"; done
  # sid's runc needs glibc >= 2.38; Debian 12's runc (in /usr/sbin) is used instead.
  rm -f "$ENG/usr/sbin/runc" "$ENG/usr/bin/runc"
  # dockerd looks for docker-init on PATH; Debian ships it as tini-static.
  if [[ ! -e $ENG/usr/bin/docker-init && -x $ENG/usr/bin/tini-static ]]; then
    ln -s tini-static "$ENG/usr/bin/docker-init"
  fi
  mkdir -p "$PLUGINS"
  for p in docker-compose docker-buildx; do
    ln -sfn "$ENG/usr/libexec/docker/cli-plugins/$p" "$PLUGINS/$p"
  done
  rm -rf "$work"
  trap - EXIT
else
  step "engine already unpacked in $ENG"
fi
echo "$ENV_LINE" >"$ENG/env.sh"

# 4. Start dockerd if no engine answers. containerd must be on dockerd's PATH.
export PATH=$ENG/usr/sbin:$ENG/usr/bin:$PATH
if docker info >/dev/null 2>&1; then
  step "an engine already answers"
else
  step "starting dockerd (log: /var/log/dockerd.log)"
  nohup "$ENG/usr/sbin/dockerd" >>/var/log/dockerd.log 2>&1 </dev/null &
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  if ! docker info >/dev/null 2>&1; then
    echo "engine.sh: dockerd did not answer within 60 s; last log lines:" >&2
    tail -n 20 /var/log/dockerd.log >&2
    exit 1
  fi
fi

# 5. Report.
step "ready: engine $(docker version -f '{{.Server.Version}}'), compose $(docker compose version --short)," \
     "buildx $(docker buildx version | awk '{print $2}')"
echo "PATH for callers: . $ENG/env.sh   (or: eval \"\$(bash .ci/engine.sh --print-env)\")"
