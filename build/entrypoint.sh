#!/bin/sh
# Container entrypoint: apply pending migrations, then become the API server.
# POSIX sh: /bin/sh is the only shell in the image. Prints nothing secret: the
# database password is read by the app from DATABASE_PASSWORD_FILE.
set -eu

python -m app migrate
# exec: Granian replaces this shell, so the stop signal reaches it directly.
exec python -m app serve
