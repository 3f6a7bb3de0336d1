#!/bin/sh
# The official nginx image's entrypoint contract, written for the offline stand-in: when the
# command is nginx (or nginx-debug), run /docker-entrypoint.d/ first, in version order:
# executable *.envsh files are sourced (so they can export variables), executable *.sh files
# are run, anything else is skipped with a note. NGINX_ENTRYPOINT_QUIET_LOGS=1 silences it.
set -e

note() {
    if [ -z "${NGINX_ENTRYPOINT_QUIET_LOGS:-}" ]; then
        echo "$0: $*" >&2
    fi
}

if [ "$1" = nginx ] || [ "$1" = nginx-debug ]; then
    if [ -n "$(find /docker-entrypoint.d/ -mindepth 1 -maxdepth 1 2>/dev/null)" ]; then
        note "running the scripts in /docker-entrypoint.d/"
        for script in $(find /docker-entrypoint.d/ -follow -type f -print | sort -V); do
            if [ ! -x "$script" ]; then
                note "skipping $script: not executable"
                continue
            fi
            case "$script" in
                *.envsh)
                    note "sourcing $script"
                    # shellcheck disable=SC1090  # the script is only known at run time
                    . "$script"
                    ;;
                *.sh)
                    note "running $script"
                    "$script"
                    ;;
                *)
                    note "skipping $script: neither .sh nor .envsh"
                    ;;
            esac
        done
        note "configuration done, starting nginx"
    else
        note "/docker-entrypoint.d/ is empty, nothing to run"
    fi
fi

exec "$@"
