"""A real organisation PKI for tests: root CA, intermediate, staff leaf certificates (``cryptography``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Issued:
    key: Any
    cert: x509.Certificate

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Hospital Example"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ski(builder: x509.CertificateBuilder, key: Any, issuer: Issued | None) -> x509.CertificateBuilder:
    builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if issuer is not None:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    else:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
    return builder


def make_ca(cn: str, parent: Issued | None = None, *, not_before: dt.datetime = T0, days: int = 3650, path_length: int | None = None) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(parent.cert.subject if parent else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
    )
    builder = _ski(builder, key, parent)
    cert = builder.sign((parent.key if parent else key), hashes.SHA256())
    return Issued(key, cert)


def make_leaf(
    issuer: Issued | None,
    email: str,
    *,
    cn: str | None = None,
    not_before: dt.datetime = T0,
    days: int = 730,
    digital_signature: bool = True,
    ekus: list | None = None,
    key: Any = None,
) -> Issued:
    """A staff certificate; ``issuer=None`` makes it self-signed (an attacker's)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = _name(cn or email.split("@")[0])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=digital_signature, content_commitment=not digital_signature, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage(ekus if ekus is not None else [ExtendedKeyUsageOID.EMAIL_PROTECTION, ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    )
    builder = _ski(builder, key, issuer)
    cert = builder.sign((issuer.key if issuer else key), hashes.SHA256())
    return Issued(key, cert)


@dataclass
class Pki:
    root: Issued
    intermediate: Issued

    def leaf(self, email: str, **kw: Any) -> Issued:
        return make_leaf(self.intermediate, email, **kw)

    def chain_pem(self, leaf: Issued) -> bytes:
        return leaf.pem + self.intermediate.pem


def make_pki(name: str = "Hospital Staff") -> Pki:
    root = make_ca(f"{name} Root CA")
    return Pki(root, make_ca(f"{name} Issuing CA 1", root, path_length=0))
