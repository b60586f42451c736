"""A real RFC 3161 timestamping authority on 127.0.0.1 for tests: ``openssl ts -reply`` behind a
tiny HTTP handler.

:func:`make_tsa` creates a root CA and a TSA certificate (``extendedKeyUsage = critical,
timeStamping``, as RFC 3161 2.3 requires) with ``cryptography``, writes an ``openssl ts`` config
and serves POSTs of ``application/timestamp-query`` by running ``openssl ts -reply -queryfile
... -config ...`` once per request. Nothing here forges a token: every timestamp a test sees was
signed by openssl with the TSA's key, at the machine's real time.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_LOCK = threading.Lock()  # openssl ts writes its serial file: one reply at a time


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Hospital Example"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Tsa:
    """A running TSA: its URL, its root and signing certificates (PEM) and the files behind it."""

    name: str
    directory: Path
    root_pem: bytes
    cert_pem: bytes
    url: str = ""
    requests: list[bytes] = field(default_factory=list)
    _server: Any = field(default=None, repr=False)

    def reply(self, query: bytes) -> bytes:
        """One ``openssl ts -reply`` for the DER TimeStampReq ``query``."""
        with _LOCK:
            self.requests.append(query)
            qfile = self.directory / "query.tsq"
            rfile = self.directory / "reply.tsr"
            qfile.write_bytes(query)
            rfile.unlink(missing_ok=True)
            subprocess.run(
                ["openssl", "ts", "-reply", "-config", str(self.directory / "tsa.cnf"), "-section", "tsa_config",
                 "-queryfile", str(qfile), "-out", str(rfile)],
                check=True, capture_output=True, timeout=30,
            )
            return rfile.read_bytes()

    def timestamp(self, data: bytes) -> bytes:
        """A timestamp over ``data`` (SHA-256), requested as ``mlgate approve --tsa`` does."""
        from mlgate.signing.timestamp import request_timestamp

        return request_timestamp(self.url, data)

    def trust_entry(self, tsa_id: str = "hospital-tsa", *, pin: bool = False) -> str:
        """The trust policy's ``timestampAuthorities`` item for this TSA (YAML, inline PEM)."""
        def block(pem: bytes, indent: int) -> str:
            return "".join(" " * indent + line + "\n" for line in pem.decode().strip().splitlines())

        text = f"  - id: {tsa_id}\n    name: {self.name}\n    roots:\n      - pem: |\n{block(self.root_pem, 10)}"
        if pin:
            text += f"    certificate:\n      pem: |\n{block(self.cert_pem, 8)}"
        return text

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def make_tsa(directory: Path, name: str = "Hospital Timestamping Authority", *, eku_critical: bool = True) -> Tsa:
    """Create the CA, the TSA certificate and the openssl config under ``directory`` (not started)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = (
        x509.CertificateBuilder().subject_name(_name(f"{name} Root CA")).issuer_name(_name(f"{name} Root CA"))
        .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=400)).not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    tsa_key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(_name(name)).issuer_name(root.subject)
        .public_key(tsa_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=365)).not_valid_after(now + dt.timedelta(days=1825))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=eku_critical)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(tsa_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    (directory / "root.pem").write_bytes(_pem(root))
    (directory / "tsa.pem").write_bytes(_pem(cert))
    (directory / "tsa.key").write_bytes(tsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (directory / "serial").write_text("01\n")
    (directory / "tsa.cnf").write_text(f"""\
[ tsa ]
default_tsa = tsa_config

[ tsa_config ]
dir = {directory}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.57264.9.1
other_policies = 1.3.6.1.4.1.57264.9.2
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
""")
    return Tsa(name=name, directory=directory, root_pem=_pem(root), cert_pem=_pem(cert))


def serve(tsa: Tsa) -> Tsa:
    """Start serving ``tsa`` on 127.0.0.1 (a free port); ``tsa.url`` is where."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            if self.headers.get("Content-Type") != "application/timestamp-query":
                self.send_error(415, "expected application/timestamp-query")
                return
            length = int(self.headers.get("Content-Length") or 0)
            query = self.rfile.read(length)
            try:
                body = tsa.reply(query)
            except subprocess.CalledProcessError as exc:
                self.send_error(400, exc.stderr.decode(errors="replace").splitlines()[0] if exc.stderr else "openssl ts failed")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    tsa._server = server
    tsa.url = f"http://127.0.0.1:{server.server_address[1]}/tsr"
    return tsa


def running_tsa(name: str = "Hospital Timestamping Authority", **kw: Any) -> Tsa:
    """A TSA in a fresh temporary directory, already serving (close() it)."""
    return serve(make_tsa(Path(tempfile.mkdtemp(prefix="mlgate-tsa-")), name, **kw))
