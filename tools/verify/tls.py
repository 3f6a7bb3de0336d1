"""TLS as a client meets it on a published port: the certificate served, and which protocol versions work.

No chain is verified (the edge may serve a self-signed certificate): the
certificate's own dates are read (with `cryptography`) and judged against
now. A protocol version is tried by pinning the client's minimum and maximum
version to it. For the old versions the client also allows every cipher at
OpenSSL's security level 0: Debian's OpenSSL would otherwise not even offer
TLS 1.0 or 1.1, every server would seem to refuse them, and the check could
not fail. When this client cannot offer a version at all, it says so
(ClientCannot) instead of crediting the server.
"""

from __future__ import annotations

import socket
import ssl
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta

from .model import FAIL, PASS, WARN, Outcome

TLS_TIMEOUT = 5.0
MODERN = ssl.TLSVersion.TLSv1_2  # the oldest version a server may accept
with warnings.catch_warnings():  # naming them is deprecated; refusing them is the point
    warnings.simplefilter("ignore", DeprecationWarning)
    OLD = {"TLS 1.0": ssl.TLSVersion.TLSv1, "TLS 1.1": ssl.TLSVersion.TLSv1_1}
# OpenSSL's reasons for a handshake this side gave up before sending anything.
CLIENT_REASONS = {"NO_CIPHERS_AVAILABLE", "NO_PROTOCOLS_AVAILABLE"}
EXPIRY_WARNING = timedelta(days=30)


class ClientCannot(Exception):
    """This host's OpenSSL cannot offer the protocol version: nothing was learnt about the server."""


def client(low: ssl.TLSVersion, high: ssl.TLSVersion | None = None,
           any_cipher: bool = False) -> ssl.SSLContext:
    """A client context for versions low..high that reads any certificate and trusts none."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = low
        context.maximum_version = high or ssl.TLSVersion.MAXIMUM_SUPPORTED
    if any_cipher:
        context.set_ciphers("ALL:@SECLEVEL=0")
    return context


def handshake(host: str, port: int, context: ssl.SSLContext) -> tuple[str, bytes]:
    """Complete a TLS handshake: (the version agreed, the server's certificate in DER)."""
    with socket.create_connection((host.strip("[]"), port), timeout=TLS_TIMEOUT) as raw:
        with context.wrap_socket(raw, server_hostname=None) as conn:
            return conn.version() or "?", conn.getpeercert(binary_form=True) or b""


def refuses(host: str, port: int, version: ssl.TLSVersion) -> bool:
    """Whether the server refuses a handshake pinned to `version` (an alert, or a closed connection).

    Raises ClientCannot when the failure is this side's (no cipher or protocol
    left to offer), OSError when the port cannot be reached at all.
    """
    try:
        context = client(version, version, any_cipher=True)
    except (ValueError, ssl.SSLError) as e:
        raise ClientCannot(f"this host's OpenSSL cannot pin {version.name}: {e}") from None
    try:
        handshake(host, port, context)
    except ssl.SSLError as e:
        if e.reason in CLIENT_REASONS:
            raise ClientCannot(f"this host's OpenSSL cannot offer {version.name} ({e.reason})") from None
        return True
    except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
        return True
    return False


@dataclass(frozen=True)
class Validity:
    """A certificate's subject and validity period (UTC)."""

    subject: str
    not_before: datetime
    not_after: datetime


def validity(der: bytes) -> Validity:
    """Read a DER certificate's subject and dates."""
    from cryptography import x509  # imported here: --list-checks needs no third-party package

    cert = x509.load_der_x509_certificate(der)
    return Validity(cert.subject.rfc4514_string(), cert.not_valid_before_utc, cert.not_valid_after_utc)


def judge(v: Validity, now: datetime) -> Outcome:
    """FAIL outside its validity period, WARN within EXPIRY_WARNING of its end, else PASS."""
    until = f"{v.not_after:%Y-%m-%d %H:%M} UTC"
    if now < v.not_before:
        return FAIL, f"{v.subject}: not valid before {v.not_before:%Y-%m-%d %H:%M} UTC"
    if now >= v.not_after:
        return FAIL, f"{v.subject}: expired on {until}"
    left = v.not_after - now
    if left < EXPIRY_WARNING:
        return WARN, f"{v.subject}: expires in {left.days} days, on {until}: renew it"
    return PASS, f"{v.subject}: valid until {until} ({left.days} days)"
