#!/bin/sh
# Make a self-signed TLS certificate and key for localhost, for the edge's HTTPS port when no
# real pair is given (`make up`, the test stacks). Valid 365 days for localhost, 127.0.0.1
# and ::1; an ECDSA P-256 key. Both files are written 0644 (the edge reads them as uid 101
# through bind mounts; keep them in a 0700 directory, as `make up` does with secrets/).
#
#   sh tools/self_signed_tls.sh CERT_FILE KEY_FILE
set -eu

if [ "$#" -ne 2 ]; then
    echo "usage: $0 CERT_FILE KEY_FILE" >&2
    exit 64
fi
cert=$1
key=$2
umask 022
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
    -keyout "$key.tmp" -out "$cert.tmp" 2>/dev/null
chmod 0644 "$key.tmp" "$cert.tmp"
mv "$key.tmp" "$key"
mv "$cert.tmp" "$cert"
echo "created $cert and $key (self-signed for localhost)" >&2
