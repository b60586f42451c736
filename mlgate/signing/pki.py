"""X.509 for signatures: organisation PKI certificates and Sigstore keyless bundles (offline).

**Organisation PKI.** Hospitals issue staff certificates from their own CA. A certificate bundle
(model-signing's certificate mode, or ``mlgate approve`` with a certificate) carries the leaf and
possibly intermediates; :func:`verify_chain` builds the path to a root the trust policy lists
for that CA with ``cryptography.x509.verification`` (RFC 5280 path validation: signatures,
validity of every certificate *at the signing time*, basic constraints, path length, name
constraints), then :func:`check_signing_usage` requires keyUsage digitalSignature and, when an
extendedKeyUsage is present, one meant for signing. Who signed is pinned separately (the SAN
email, and optionally the subject, must be the identity listed for the signer): a valid chain
alone says nothing about *which* member of staff signed, and model-signing's certificate mode
does not check it.

**Sigstore keyless.** :func:`verify_keyless` hands the bundle to sigstore-python's ``Verifier``
with a ``TrustedRoot`` read from a file (no TUF, no network): the Fulcio chain at the
transparency-log time, the certificate's SCT against the CT log keys, the Rekor inclusion
proof, checkpoint and promise, the DSSE signature, and the identity policy (SAN and OIDC
issuer). Every sigstore failure becomes one line naming the file.

``cryptography`` and ``sigstore`` are imported inside the functions: the CLI must start fast.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from mlgate.signing.attestation import AttestationError, SignatureMismatch
from mlgate.clock import rfc3339

#: extendedKeyUsage values that mean "may sign": codeSigning, emailProtection, documentSigning
#: (RFC 9336) and anyExtendedKeyUsage. A certificate without the extension is not restricted.
SIGNING_EKUS = {
    "1.3.6.1.5.5.7.3.3": "codeSigning",
    "1.3.6.1.5.5.7.3.4": "emailProtection",
    "1.3.6.1.5.5.7.3.36": "documentSigning",
    "2.5.29.37.0": "anyExtendedKeyUsage",
}


class CertificateError(AttestationError):
    """A certificate is malformed, does not chain to a trusted CA, or may not sign."""


@dataclass(frozen=True)
class CertificateFacts:
    subject: str
    issuer: str
    serial: str
    fingerprint_sha256: str
    not_before: str
    not_after: str
    emails: tuple[str, ...]
    ca: str | None  # the trust policy's CA id (organisation PKI) or "sigstore" (keyless)

    def as_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject, "issuer": self.issuer, "serial": self.serial,
            "fingerprint_sha256": self.fingerprint_sha256, "not_before": self.not_before,
            "not_after": self.not_after, "emails": list(self.emails), "ca": self.ca,
        }


def load_der(der: bytes, name: str, field: str) -> Any:
    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(der)
        cert.subject, cert.issuer  # noqa: B018 - force the lazy parse of the names
    except ValueError as exc:
        raise CertificateError(f"not a valid DER certificate ({' '.join(str(exc).split())[:120]})", file=name, field=field) from None
    return cert


def emails(cert: Any) -> tuple[str, ...]:
    """The SAN rfc822Name values, lowercased (the identity a person's certificate carries)."""
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    except ValueError:  # a malformed extension
        return ()
    return tuple(e.lower() for e in san.get_values_for_type(x509.RFC822Name))


def _name(value: Any) -> str:
    try:
        return value.rfc4514_string()
    except ValueError:  # pragma: no cover - cryptography parsed it already
        return "<unprintable name>"


def facts(cert: Any, ca: str | None) -> CertificateFacts:
    from cryptography.hazmat.primitives import hashes

    return CertificateFacts(
        subject=_name(cert.subject), issuer=_name(cert.issuer), serial=format(cert.serial_number, "x"),
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
        not_before=rfc3339(cert.not_valid_before_utc), not_after=rfc3339(cert.not_valid_after_utc),
        emails=emails(cert), ca=ca,
    )


def describe(cert: Any) -> str:
    mails = emails(cert)
    return f"certificate {_name(cert.subject)}" + (f" <{', '.join(mails)}>" if mails else "") + f" issued by {_name(cert.issuer)}"


# --------------------------------------------------------------------------- organisation PKI
def verify_chain(leaf: Any, intermediates: list[Any], roots: tuple[Any, ...], extra_intermediates: tuple[Any, ...], at: dt.datetime) -> list[Any]:
    """Path validation of ``leaf`` to one of ``roots`` at time ``at``; the validated path (leaf
    first, root last), or ValueError with the reason."""
    from cryptography.x509 import ExtendedKeyUsage
    from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store, VerificationError

    # A client verifier would demand the clientAuth EKU; staff signing certificates carry
    # emailProtection/codeSigning/documentSigning instead, checked by check_signing_usage.
    ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(ExtendedKeyUsage, Criticality.NON_CRITICAL, None)
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(ExtendedKeyUsage, Criticality.NON_CRITICAL, None)
    verifier = (
        PolicyBuilder().store(Store(list(roots))).time(at)
        .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
        .build_client_verifier()
    )
    try:
        return list(verifier.verify(leaf, [*intermediates, *extra_intermediates]).chain)
    except VerificationError as exc:
        raise ValueError(" ".join(str(exc).split())) from None
    except Exception as exc:  # noqa: BLE001 - e.g. UnsupportedGeneralNameType: any failure is "no valid path"
        raise ValueError(f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:200]) from None


def check_signing_usage(leaf: Any, name: str) -> None:
    """keyUsage must allow digitalSignature; an extendedKeyUsage, when present, must allow signing."""
    from cryptography import x509

    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise CertificateError(f"{describe(leaf)} has no keyUsage extension; expected digitalSignature", file=name) from None
    if not usage.digital_signature:
        raise CertificateError(f"{describe(leaf)} does not allow digitalSignature (keyUsage); it may not sign", file=name)
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    oids = {o.dotted_string for o in eku}
    if not oids & set(SIGNING_EKUS):
        raise CertificateError(
            f"{describe(leaf)} has extendedKeyUsage {', '.join(sorted(oids))}; expected one of {', '.join(SIGNING_EKUS.values())}",
            file=name,
        )


def certificate_signature_ok(leaf: Any, signature: bytes, message: bytes) -> bool:
    from mlgate.signing import keys as _keys

    try:
        public = leaf.public_key()
    except Exception:  # noqa: BLE001 - an unsupported key algorithm in the certificate
        return False
    return _keys.verify(public, signature, message)


# --------------------------------------------------------------------------- Sigstore keyless
@dataclass(frozen=True)
class KeylessResult:
    payload_type: str
    payload: bytes
    certificate: Any
    issuer: str | None
    subjects: tuple[str, ...]
    integrated_time: dt.datetime | None


def oidc_issuer(cert: Any) -> str | None:
    """Fulcio's OIDC issuer extension (v2 ``1.3.6.1.4.1.57264.1.8``, else v1 ``...1.1``)."""
    from cryptography import x509

    for oid, der in (("1.3.6.1.4.1.57264.1.8", True), ("1.3.6.1.4.1.57264.1.1", False)):
        try:
            ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid)).value
        except (x509.ExtensionNotFound, ValueError):
            continue
        raw = ext.value
        if der:  # a DER UTF8String: tag 0x0c, short or long length
            if len(raw) < 2 or raw[0] != 0x0C:
                continue
            length, offset = raw[1], 2
            if length & 0x80:
                n = length & 0x7F
                length, offset = int.from_bytes(raw[2 : 2 + n], "big"), 2 + n
            raw = raw[offset : offset + length]
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


def san_identities(cert: Any) -> tuple[str, ...]:
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return ()
    return tuple([*san.get_values_for_type(x509.RFC822Name), *san.get_values_for_type(x509.UniformResourceIdentifier)])


_TRUSTED_ROOTS: dict[bytes, Any] = {}


def trusted_root(data: bytes, source: str) -> Any:
    """Parse (once per content) a Sigstore TrustedRoot JSON document."""
    from mlgate.errors import InputError

    if data not in _TRUSTED_ROOTS:
        from sigstore.models import TrustedRoot
        from sigstore_models.trustroot.v1 import TrustedRoot as TrustedRootMessage

        try:
            _TRUSTED_ROOTS[data] = TrustedRoot(TrustedRootMessage.from_json(data))
        except Exception as exc:  # noqa: BLE001 - pydantic/sigstore errors: any is "not a trusted root"
            raise InputError(f"not a valid Sigstore TrustedRoot: {' '.join(str(exc).split())[:200]}", file=source) from None
    return _TRUSTED_ROOTS[data]


def verify_keyless(raw: bytes, name: str, root: Any, subject: str, issuer: str) -> KeylessResult:
    """Verify a keyless bundle offline against ``root`` for one identity; raise SignatureMismatch."""
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import Bundle
    from sigstore.verify import Verifier
    from sigstore.verify.policy import Identity

    try:
        bundle = Bundle.from_json(raw)
    except Exception as exc:  # noqa: BLE001 - sigstore raises InvalidBundle, pydantic ValidationError, ValueError...
        raise SignatureMismatch(f"not a valid Sigstore bundle: {' '.join(str(exc).split())[:200]}", file=name) from None
    try:
        payload_type, payload = Verifier(trusted_root=root).verify_dsse(bundle, Identity(identity=subject, issuer=issuer))
    except SigstoreError as exc:
        raise SignatureMismatch(f"Sigstore verification failed: {' '.join(str(exc).split())[:300]}", file=name) from None
    except Exception as exc:  # noqa: BLE001 - malformed inner material surfaces as assorted exceptions
        raise SignatureMismatch(f"Sigstore verification failed ({type(exc).__name__}): {' '.join(str(exc).split())[:200]}", file=name) from None
    integrated = bundle.log_entry._inner.integrated_time  # noqa: SLF001 - the verified log time
    when = dt.datetime.fromtimestamp(int(integrated), tz=dt.timezone.utc) if integrated else None
    cert = bundle.signing_certificate
    return KeylessResult(payload_type, payload, cert, oidc_issuer(cert), san_identities(cert), when)
