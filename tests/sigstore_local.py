"""A local, offline Sigstore instance for tests: Fulcio CA, CT log and Rekor (v1) keys, and a
signer that produces keyless DSSE bundles (v0.3) that sigstore-python's ``Verifier`` accepts
against the matching ``TrustedRoot`` JSON.

Only ``cryptography`` signs. What a real deployment gets from Fulcio/CTFE/Rekor is built here the
way those services build it, so that the verifier checks all of it:

* the leaf certificate: SAN email, OIDC issuer extensions (v1 and v2), keyUsage digitalSignature,
  extendedKeyUsage codeSigning, and an embedded SCT (RFC 6962 precertificate entry signed by the
  CT log key over the TBS without the SCT extension and the issuer key hash);
* a Rekor ``dsse/0.0.1`` entry: canonicalized body (payload hash, signature, verifier cert), an
  inclusion promise (SET over the RFC 8785 canonical entry), and a one-leaf Merkle inclusion
  proof whose checkpoint is a signed note.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

UTC = dt.timezone.utc
SCT_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
ORIGIN = "rekor.local - 1"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _spki(key: Any) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _der_utf8(text: str) -> bytes:
    raw = text.encode()
    assert len(raw) < 128
    return bytes([0x0C, len(raw)]) + raw


def _der_octets(raw: bytes) -> bytes:
    n = len(raw)
    if n < 128:
        return bytes([0x04, n]) + raw
    length = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x04, 0x80 | len(length)]) + length + raw


@dataclass
class LocalSigstore:
    fulcio_key: Any
    fulcio_cert: x509.Certificate
    ct_key: Any
    rekor_key: Any
    start: dt.datetime

    @classmethod
    def create(cls, start: dt.datetime = dt.datetime(2026, 1, 1, tzinfo=UTC)) -> "LocalSigstore":
        key = ec.generate_private_key(ec.SECP384R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sigstore.local"), x509.NameAttribute(NameOID.COMMON_NAME, "sigstore")])
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(start + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA384())
        )
        return cls(key, cert, ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1()), start)

    # ------------------------------------------------------------------ trust root
    def trusted_root(self) -> dict[str, Any]:
        def log(key: Any, url: str) -> dict[str, Any]:
            return {
                "baseUrl": url, "hashAlgorithm": "SHA2_256",
                "publicKey": {"rawBytes": _b64(_spki(key)), "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                              "validFor": {"start": self.start.strftime("%Y-%m-%dT%H:%M:%SZ")}},
                "logId": {"keyId": _b64(hashlib.sha256(_spki(key)).digest())},
            }

        return {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [log(self.rekor_key, "https://rekor.local")],
            "certificateAuthorities": [{
                "subject": {"organization": "sigstore.local", "commonName": "sigstore"},
                "uri": "https://fulcio.local",
                "certChain": {"certificates": [{"rawBytes": _b64(self.fulcio_cert.public_bytes(serialization.Encoding.DER))}]},
                "validFor": {"start": self.start.strftime("%Y-%m-%dT%H:%M:%SZ")},
            }],
            "ctlogs": [log(self.ct_key, "https://ctfe.local")],
            "timestampAuthorities": [],
        }

    def trusted_root_json(self) -> bytes:
        return json.dumps(self.trusted_root(), indent=2).encode()

    # ------------------------------------------------------------------ Fulcio + CT
    def issue(self, key: Any, subject: str, issuer: str, at: dt.datetime) -> x509.Certificate:
        """A 10-minute Fulcio-style certificate with an embedded SCT."""
        san = x509.RFC822Name(subject) if "@" in subject else x509.UniformResourceIdentifier(subject)

        def builder() -> x509.CertificateBuilder:
            return (
                x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(self.fulcio_cert.subject)
                .public_key(key.public_key()).serial_number(serial)
                .not_valid_before(at - dt.timedelta(seconds=30)).not_valid_after(at + dt.timedelta(minutes=10))
                .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.fulcio_key.public_key()), critical=False)
                .add_extension(x509.SubjectAlternativeName([san]), critical=True)
                .add_extension(x509.UnrecognizedExtension(ISSUER_V1, issuer.encode()), critical=False)
                .add_extension(x509.UnrecognizedExtension(ISSUER_V2, _der_utf8(issuer)), critical=False)
            )

        serial = x509.random_serial_number()
        # The precertificate's TBS is the final TBS without the SCT extension (which comes last).
        pre = builder().sign(self.fulcio_key, hashes.SHA384())
        tbs = pre.tbs_certificate_bytes
        timestamp_ms = int(at.timestamp() * 1000)
        issuer_key_hash = hashlib.sha256(_spki(self.fulcio_key)).digest()
        signed = struct.pack("!BBQH", 0, 0, timestamp_ms, 1) + issuer_key_hash + len(tbs).to_bytes(3, "big") + tbs + struct.pack("!H", 0)
        signature = self.ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        log_id = hashlib.sha256(_spki(self.ct_key)).digest()
        sct = bytes([0]) + log_id + struct.pack("!QH", timestamp_ms, 0) + bytes([4, 3]) + struct.pack("!H", len(signature)) + signature
        sct_list = struct.pack("!H", len(sct) + 2) + struct.pack("!H", len(sct)) + sct
        final = builder().add_extension(x509.UnrecognizedExtension(SCT_OID, _der_octets(sct_list)), critical=False)
        return final.sign(self.fulcio_key, hashes.SHA384())

    # ------------------------------------------------------------------ Rekor
    def _tlog_entry(self, payload: bytes, signature: bytes, cert: x509.Certificate, at: dt.datetime) -> dict[str, Any]:
        cert_pem_b64 = _b64(cert.public_bytes(serialization.Encoding.PEM))
        body = {
            "apiVersion": "0.0.1", "kind": "dsse",
            "spec": {
                "envelopeHash": {"algorithm": "sha256", "value": hashlib.sha256(b"envelope").hexdigest()},
                "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
                "signatures": [{"signature": _b64(signature), "verifier": cert_pem_b64}],
            },
        }
        body_bytes = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        log_id = hashlib.sha256(_spki(self.rekor_key)).digest()
        integrated = int(at.timestamp())
        set_payload = rfc8785.dumps({"body": _b64(body_bytes), "integratedTime": integrated, "logID": log_id.hex(), "logIndex": 0})
        set_sig = self.rekor_key.sign(set_payload, ec.ECDSA(hashes.SHA256()))
        root = hashlib.sha256(b"\x00" + body_bytes).digest()  # a one-leaf tree: the root is the leaf hash
        note = f"{ORIGIN}\n1\n{_b64(root)}\n"
        note_sig = self.rekor_key.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        checkpoint = note + "\n\u2014 " + ORIGIN.split(" ")[0] + " " + _b64(log_id[:4] + note_sig) + "\n"
        return {
            "logIndex": "0", "logId": {"keyId": _b64(log_id)},
            "kindVersion": {"kind": "dsse", "version": "0.0.1"},
            "integratedTime": str(integrated),
            "inclusionPromise": {"signedEntryTimestamp": _b64(set_sig)},
            "inclusionProof": {"logIndex": "0", "rootHash": _b64(root), "treeSize": "1", "hashes": [], "checkpoint": {"envelope": checkpoint}},
            "canonicalizedBody": _b64(body_bytes),
        }

    # ------------------------------------------------------------------ sign
    def sign_dsse(self, payload: bytes, *, subject: str, issuer: str, at: dt.datetime,
                  payload_type: str = "application/vnd.in-toto+json") -> bytes:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self.issue(key, subject, issuer, at)
        pae = b"DSSEv1 %d %b %d %b" % (len(payload_type), payload_type.encode(), len(payload), payload)
        signature = key.sign(pae, ec.ECDSA(hashes.SHA256()))
        bundle = {
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {
                "certificate": {"rawBytes": _b64(cert.public_bytes(serialization.Encoding.DER))},
                "tlogEntries": [self._tlog_entry(payload, signature, cert, at)],
            },
            "dsseEnvelope": {"payload": _b64(payload), "payloadType": payload_type, "signatures": [{"sig": _b64(signature)}]},
        }
        return json.dumps(bundle, separators=(",", ":")).encode()


def model_signing_payload(model) -> bytes:
    """The in-toto statement model-signing signs for ``model`` (its own hashing and serialisation)."""
    from google.protobuf import json_format
    from model_signing import hashing
    from model_signing._signing import signing

    return json_format.MessageToJson(signing.Payload(hashing.hash(model)).statement.pb).encode("utf-8")
