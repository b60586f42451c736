"""Who signed a bundle: one check shared by approvals and model signatures.

:func:`authenticate` takes a parsed bundle (:mod:`mlgate.signing.attestation`) and the trust policy and
answers with the listed signer and the credential that verified, or raises a
:class:`~mlgate.signing.attestation.SignatureMismatch` / :class:`~mlgate.signing.pki.CertificateError` with a
specific one-line reason. Three identity sources:

* ``key``: the key-id hint names a key the trust policy lists for this purpose (approver or model
  signer); the DSSE signature verifies with it.
* ``certificate``: the leaf chains to a CA the trust policy lists, valid at the signing time,
  allowed to sign, and its SAN email (and subject, when pinned) is an identity listed for a
  signer of this purpose with that CA; the DSSE signature verifies with the leaf's key.
* ``keyless``: sigstore-python verifies the bundle offline against the trust policy's
  TrustedRoot for the (OIDC issuer, subject) listed for a signer of this purpose.

Then the credential's validity window and revocation are judged
(:meth:`mlgate.signing.trust.Validity.judge_signature`). Only a *trusted* time shows when a
signature was made: an RFC 3161 timestamp of a timestamping authority the trust policy lists
(key and certificate bundles, :mod:`mlgate.signing.timestamp`) or the transparency-log time of a
keyless bundle. With one, a signature made before a revocation or the end of the window still
counts and says so (``status: revoked_after_signing``). Without one, the time the signer wrote
is a claim: a credential revoked for a possible compromise voids every signature, and one whose
window ends or that was revoked for another reason counts only until then (``valid_until``,
compared with the evaluation time by the policy).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from mlgate.signing.attestation import Bundle, SignatureMismatch, pae, pae_legacy, verify_signature
from mlgate.signing.timestamp import MAX_CLAIM_AHEAD, TrustedTime, verify_timestamps
from mlgate.signing.trust import Judgement, Purpose, Signer, TrustPolicy, Validity

_WHAT = {"approver": "approver", "model_signer": "model signer"}
_OTHER: dict[str, Purpose] = {"approver": "model_signer", "model_signer": "approver"}


@dataclass(frozen=True)
class Authenticated:
    signer: Signer
    source: str  # key | certificate | keyless
    identity: str  # key id, certificate email, or keyless subject
    key_id: str | None
    status: str  # valid | revoked_after_signing
    validity: Validity
    certificate: dict[str, Any] | None
    payload_type: str
    payload: bytes
    verified_time: dt.datetime | None  # the trusted signing time (TSA or transparency log); None when only claimed
    time: TrustedTime | None = None  # where the trusted time comes from
    valid_until: dt.datetime | None = None  # no trusted time: the signature counts only before this


def _judge(validity: Validity, claimed: dt.datetime | None, trusted: TrustedTime | None, what: str, name: str) -> Judgement:
    judgement = validity.judge_signature(claimed, trusted.at if trusted else None)
    if judgement.problem is not None:
        source = f" (time from {trusted.authority})" if trusted else ""
        raise SignatureMismatch(f"{what}: {judgement.problem}{source}", file=name)
    return judgement


def _trusted_time(bundle: Bundle, trust: TrustPolicy, claimed: dt.datetime | None) -> TrustedTime | None:
    """The earliest time a listed TSA proves for the signature bytes (None without timestamps);
    a claimed time later than it is refused (a statement cannot be signed after its signature
    was timestamped)."""
    found = verify_timestamps(bundle.timestamps, bundle.signature, trust.timestamp_authorities, bundle.name)
    if found is not None and claimed is not None and claimed > found.at + MAX_CLAIM_AHEAD:
        raise SignatureMismatch(
            f"the statement claims to be signed at {_rfc(claimed)}, after {found.authority} timestamped its signature at {_rfc(found.at)}",
            file=bundle.name, field="verificationMaterial.timestampVerificationData",
        )
    return found


def authenticate(bundle: Bundle, trust: TrustPolicy, purpose: Purpose, *, signed_at: dt.datetime | None, legacy_pae: bool = False) -> Authenticated:
    """Identify and verify the signer of ``bundle``; ``signed_at`` is when it claims to be signed."""
    if bundle.mode == "key":
        return _by_key(bundle, trust, purpose, signed_at, legacy_pae)
    if bundle.mode == "certificate":
        return _by_certificate(bundle, trust, purpose, signed_at, legacy_pae)
    return _by_keyless(bundle, trust, purpose)


def _by_key(bundle: Bundle, trust: TrustPolicy, purpose: Purpose, signed_at: dt.datetime | None, legacy_pae: bool) -> Authenticated:
    name = bundle.name
    if bundle.hint is not None and trust.key_for(purpose, bundle.hint) is None:
        other = trust.key_for(_OTHER[purpose], bundle.hint)
        if other is not None:
            raise SignatureMismatch(
                f"key {bundle.hint} belongs to {_WHAT[_OTHER[purpose]]} {other[0].id!r}, not to an {_WHAT[purpose]}" if purpose == "approver"
                else f"key {bundle.hint} belongs to {_WHAT[_OTHER[purpose]]} {other[0].id!r}, not to a {_WHAT[purpose]}",
                file=name, field="verificationMaterial.publicKey.hint",
            )
    kid, _ = verify_signature(bundle, trust.keys_for(purpose), legacy_pae=legacy_pae)
    found = trust.key_for(purpose, kid)
    if found is None:  # pragma: no cover - keys_for() only holds this purpose's keys
        raise SignatureMismatch(f"key {kid} belongs to no {_WHAT[purpose]}", file=name)
    signer, key = found
    trusted = _trusted_time(bundle, trust, signed_at)
    judged = _judge(key.validity, signed_at, trusted, f"key {kid} of {_WHAT[purpose]} {signer.id!r}", name)
    return Authenticated(signer, "key", kid, kid, judged.status, key.validity, None, bundle.payload_type, bundle.payload,
                         trusted.at if trusted else None, trusted, judged.valid_until)


def _by_certificate(bundle: Bundle, trust: TrustPolicy, purpose: Purpose, signed_at: dt.datetime | None, legacy_pae: bool) -> Authenticated:
    from mlgate.signing import pki

    name = bundle.name
    field = "verificationMaterial"
    leaf = pki.load_der(bundle.certificates[0], name, f"{field}.certificate")
    chain = [pki.load_der(der, name, f"{field}.x509CertificateChain.certificates[{i + 1}]") for i, der in enumerate(bundle.certificates[1:])]
    # The chain is validated at the trusted time; else at the claimed one (and then it counts only
    # until the first certificate of the path expires); with neither (a model-signing certificate
    # bundle), at the leaf's notBefore, as model-signing's own certificate verifier does.
    trusted = _trusted_time(bundle, trust, signed_at)
    at = trusted.at if trusted else signed_at or leaf.not_valid_before_utc
    ca_ids = [c.ca for s in trust.signers(purpose) for c in s.certificates]
    cas = [ca for ca in trust.certificate_authorities if ca.id in ca_ids]
    if not cas:
        raise pki.CertificateError(f"a certificate-signed bundle, but the trust policy lists no certificate identity for any {_WHAT[purpose]}", file=name, field=field)
    problems = []
    ca = None
    path: list[Any] = []
    for candidate in cas:
        try:
            path = pki.verify_chain(leaf, chain, candidate.roots, candidate.intermediates, at)
        except ValueError as exc:
            problems.append(f"{candidate.id}: {exc}")
            continue
        ca = candidate
        break
    if ca is None:
        self_signed = leaf.issuer == leaf.subject
        what = f"a self-signed {pki.describe(leaf)}" if self_signed else pki.describe(leaf)
        raise pki.CertificateError(
            f"{what} does not chain to a CA the trust policy lists at {_rfc(at)} ({'; '.join(problems)})", file=name, field=field,
        )
    pki.check_signing_usage(leaf, name)
    mails = set(pki.emails(leaf))
    subject = leaf.subject.rfc4514_string()
    match = None
    for signer in trust.signers(purpose):
        for ident in signer.certificates:
            if ident.ca == ca.id and ident.email.lower() in mails and (ident.subject is None or ident.subject == subject):
                match = (signer, ident)
                break
        if match:
            break
    if match is None:
        raise pki.CertificateError(
            f"{pki.describe(leaf)} chains to CA {ca.id}, but no {_WHAT[purpose]} in the trust policy is listed with that CA for "
            f"{', '.join(sorted(mails)) or 'a certificate without an email SAN'}" + (f" and subject {subject}" if mails else ""),
            file=name, field=field,
        )
    signer, ident = match
    message = pae(bundle.payload_type, bundle.payload)
    if not pki.certificate_signature_ok(leaf, bundle.signature, message) and not (
        legacy_pae and pki.certificate_signature_ok(leaf, bundle.signature, pae_legacy(bundle.payload))
    ):
        raise SignatureMismatch(f"signature does not verify with the key of {pki.describe(leaf)}", file=name, field="dsseEnvelope.signatures[0].sig")
    judged = _judge(ident.validity, signed_at, trusted, f"certificate identity {ident.email} (CA {ca.id}) of {_WHAT[purpose]} {signer.id!r}", name)
    until = judged.valid_until
    if trusted is None and signed_at is not None:
        # A claimed time inside the certificates' validity shows nothing once they expired.
        ends = [c.not_valid_after_utc for c in path or [leaf]]
        until = min([*ends, *([until] if until else [])])
    return Authenticated(signer, "certificate", ident.email, None, judged.status, ident.validity, pki.facts(leaf, ca.id).as_dict(),
                         bundle.payload_type, bundle.payload, trusted.at if trusted else None, trusted, until)


def _rfc(at: dt.datetime) -> str:
    from mlgate.clock import rfc3339

    return rfc3339(at)


def _by_keyless(bundle: Bundle, trust: TrustPolicy, purpose: Purpose) -> Authenticated:
    from mlgate.signing import pki

    name = bundle.name
    if trust.sigstore_trusted_root is None:
        raise SignatureMismatch("a Sigstore keyless bundle, but the trust policy has no sigstore.trustedRoot to verify it with", file=name, field="verificationMaterial")
    leaf = pki.load_der(bundle.certificates[0], name, "verificationMaterial.certificate")
    issuer = pki.oidc_issuer(leaf)
    sans = set(pki.san_identities(leaf))
    match = None
    for signer in trust.signers(purpose):
        for ident in signer.keyless:
            if ident.issuer == issuer and ident.subject in sans:
                match = (signer, ident)
                break
        if match:
            break
    if match is None:
        raise SignatureMismatch(
            f"keyless certificate for {', '.join(sorted(sans)) or 'no identity'} (OIDC issuer {issuer or 'none'}) is not listed for any {_WHAT[purpose]}",
            file=name, field="verificationMaterial.certificate",
        )
    signer, ident = match
    root = pki.trusted_root(trust.sigstore_trusted_root, trust.sigstore_trusted_root_source or "trusted root")
    result = pki.verify_keyless(bundle.raw, name, root, ident.subject, ident.issuer)
    if (result.payload_type, result.payload) != (bundle.payload_type, bundle.payload):  # pragma: no cover - same bytes parsed twice
        raise SignatureMismatch("sigstore verified a different payload than the envelope holds", file=name)
    trusted = TrustedTime(result.integrated_time, "transparency_log", "Rekor") if result.integrated_time else None
    judged = _judge(ident.validity, None, trusted, f"keyless identity {ident.subject} of {_WHAT[purpose]} {signer.id!r}", name)
    return Authenticated(signer, "keyless", ident.subject, None, judged.status, ident.validity, pki.facts(result.certificate, "sigstore").as_dict(),
                         bundle.payload_type, bundle.payload, result.integrated_time, trusted, judged.valid_until)
