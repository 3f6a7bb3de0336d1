#!/bin/sh
# Run by /docker-entrypoint.sh. Render every $NGINX_ENVSUBST_TEMPLATE_DIR/**/*$SUFFIX
# (default /etc/nginx/templates/**/*.template) into $NGINX_ENVSUBST_OUTPUT_DIR (default
# /etc/nginx/conf.d) under the same relative name minus the suffix. Only variables that are
# set in the environment are replaced (optionally those matching NGINX_ENVSUBST_FILTER), so
# nginx's own $variables survive. An output directory that is not writable is reported and
# skipped, as upstream does.
set -e

template_dir="${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}"
suffix="${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}"
output_dir="${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}"
filter="${NGINX_ENVSUBST_FILTER:-}"

note() {
    if [ -z "${NGINX_ENTRYPOINT_QUIET_LOGS:-}" ]; then
        echo "$0: $*" >&2
    fi
}

[ -d "$template_dir" ] || exit 0
if [ ! -w "$output_dir" ]; then
    note "ERROR: $template_dir exists, but $output_dir is not writable"
    exit 0
fi

# The names of the environment's variables (matching the filter), as ${NAME} for envsubst.
names=$(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' | grep -E -- "${filter:-.}" || true)
# shellcheck disable=SC2016,SC2086  # literal ${NAME}, one per word of $names
shell_format=$(printf '${%s} ' $names)

find "$template_dir" -follow -type f -name "*$suffix" -print | while read -r template; do
    relative="${template#"$template_dir"/}"
    output="$output_dir/${relative%"$suffix"}"
    mkdir -p "$(dirname "$output")"
    note "rendering $template to $output"
    envsubst "$shell_format" < "$template" > "$output"
done
