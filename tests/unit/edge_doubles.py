"""Stand-ins for the edge in the verifier's unit tests: its captured answers, replayed by real local servers.

tests/unit/data/edge holds what a real edge of the prod stack gave (see
test_verify_edge.py). Here: that data, a self-signed pair with chosen dates,
and a local HTTP(S) server that replays one captured answer to every GET, so
that the edge's checks talk to a real server on a port the test controls,
never to whatever this machine happens to run on the captured ports.
"""

from __future__ import annotations

import copy
import json
import ssl
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tools.verify.model import EDGE_HTTP, EDGE_HTTPS

DATA = Path(__file__).parent / "data"
DUMP = (DATA / "edge" / "nginx-T.txt").read_text()  # `nginx -T -q` in the edge's container
ANSWERS = json.loads((DATA / "edge" / "answers.json").read_text())  # its HTTPS /health, its own 414
# The API's answers through the edge to GETs without credentials: /items, /docs (see test_verify_api.py).
API_ANSWERS = json.loads((DATA / "api" / "answers.json").read_text())
EDGE_RECORD = json.loads((DATA / "inspect" / "stack-edge.json").read_text())  # its container's inspect record
MODERN = (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)


def edge_record(http: int | None = None, https: int | None = None) -> dict:
    """The captured edge's record, its HTTP (8080) and HTTPS (8443) ports published on these local ports."""
    attrs = copy.deepcopy(EDGE_RECORD)
    bindings = {f"{container}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
                for container, port in ((EDGE_HTTP, http), (EDGE_HTTPS, https)) if port}
    attrs["NetworkSettings"]["Ports"] = attrs["HostConfig"]["PortBindings"] = bindings
    return attrs


def make_pair(folder: Path, not_before: datetime, not_after: datetime) -> tuple[Path, Path]:
    """A self-signed ECDSA pair for localhost with these dates."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after).sign(key, hashes.SHA256()))
    folder.mkdir(exist_ok=True)
    crt, pem = folder / "tls.crt", folder / "tls.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return crt, pem


def replaying(captured: dict, routes: dict[str, dict] | None = None) -> type[BaseHTTPRequestHandler]:
    """A handler that answers a GET of a path in `routes` with its captured answer, every other GET
    with `captured`, the Server header included."""

    class Replay(BaseHTTPRequestHandler):
        def answer(self) -> dict:
            return (routes or {}).get(self.path, captured)

        def version_string(self):
            return dict(self.answer()["headers"]).get("Server", "")

        def do_GET(self):
            answer = self.answer()
            body = answer["body"].encode()
            self.send_response(answer["status"])
            for key, value in answer["headers"]:
                if key not in ("Server", "Date", "Content-Length", "Connection"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Replay


@contextmanager
def server(captured: dict, pair: tuple[Path, Path] | None = None,
           versions: tuple[ssl.TLSVersion, ssl.TLSVersion] = MODERN,
           any_cipher: bool = False, routes: dict[str, dict] | None = None) -> Iterator[int]:
    """A local HTTP server replaying `captured` (`routes`' answers on their paths; HTTPS with `pair`,
    speaking `versions`); its port."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), replaying(captured, routes))
    if pair:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*pair)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version, context.maximum_version = versions
        if any_cipher:
            context.set_ciphers("ALL:@SECLEVEL=0")
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


def fresh_pair(folder: Path) -> tuple[Path, Path]:
    """A pair valid from yesterday for a year."""
    now = datetime.now(timezone.utc)
    return make_pair(folder, now - timedelta(days=1), now + timedelta(days=365))


@contextmanager
def edge_ports(folder: Path) -> Iterator[dict[int, int]]:
    """Local servers for the edge's two container ports: {8080: the 414 replayed over HTTP (and the
    API's answers to /items and /docs without credentials), 8443: GET /health replayed over HTTPS
    (TLS 1.2+, a current certificate)} as local ports."""
    api = {"/items": API_ANSWERS["items-no-key"], "/docs": API_ANSWERS["docs-on"]}
    with server(ANSWERS["uri-too-long"], routes=api) as http:
        with server(ANSWERS["https-health"], fresh_pair(folder)) as https:
            yield {8080: http, 8443: https}
