# The image's config_distro.py defaults (the entrypoint appends PGADMIN_CONFIG_* after them):
# the wheel's own two settings, logs to stdout only (gunicorn), no upgrade check (no outside
# network), the Debian client tools for backup/restore.
HELP_PATH = '../../docs/en_US/_build/html/'
MINIFY_HTML = False
LOG_FILE = '/dev/null'
CA_FILE = '/etc/ssl/certs/ca-certificates.crt'
UPGRADE_CHECK_ENABLED = False
DEFAULT_BINARY_PATHS = {'pg': '/usr/lib/postgresql/18/bin', 'pg-18': '/usr/lib/postgresql/18/bin'}
