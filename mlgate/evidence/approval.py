"""Signed approvals (21 CFR Part 11): create one, and verify one into an ``approvals.records[]`` fact.

An approval is an in-toto Statement v1 in a DSSE envelope in a Sigstore bundle v0.3 (key mode;
:mod:`mlgate.signing.attestation`), with predicate type ``https://mlgate.dev/attestation/approval/v1``::

    subject: [{name: <release name>, digest: {sha256: <model digest>}}]     # 11.70: bound to the model
    predicate:                                                           # 11.50: who, when, meaning
      signer: {id: jane.roe@hospital.example, printedName: Dr. Jane Roe}
      role: clinical-safety-officer
      meaning: approval                 # review | approval | responsibility | authorship
      environment: production
      signedAt: 2026-11-28T09:00:00Z
      expiresAt: 2027-02-28T09:00:00Z   # or null
      evidenceDigests: {evidence/model_card.md: <sha256>, ...}
      comment: "..."                    # or null
      authored: [evidence/bias_audit.json]   # optional: evidence the signer wrote (separation of duties)

validated by ``schemas/approval_predicate.schema.json``.

A record is ``verified`` only when the bundle parses, its signature verifies with a credential
the trust policy lists for an approver (a key, an organisation-PKI certificate chained to a listed
CA with the approver's email, or a Sigstore keyless identity; :mod:`mlgate.signing.signers`), that
credential was valid at the signing time (validity window, not revoked before signing), that
approver is the one the predicate names (a valid signature by A claiming to be B is not
verified) with the printed name the trust policy holds, and the statement and predicate
validate. A credential revoked *after* the signing time still verifies, with
``key_status: revoked_after_signing`` and the revocation time in the record. Whether the role, the meaning and the environment are
authorised for that approver are separate facts for the policy. Expiry is compared with the
evaluation time by the policy (``expires_at_ns``), not here.

Hostile bytes never raise: they give ``verified: false`` and a one-line ``reason``. Claimed
fields are filled in once the signature verified and the predicate validated (so a person can
read what was claimed); ``role_authorised``/``meaning_authorised``/``environment_authorised`` are
true only for a verified record.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable, Mapping

from mlgate.signing.attestation import AttestationError, StatementError, make_statement, parse_bundle, parse_statement, sign_statement
from mlgate.canonical import sha256_hex
from mlgate.clock import epoch_ns, parse_time, rfc3339
from mlgate.errors import InputError
from mlgate.signing.keys import load_private_key_pem
from mlgate.signing.trust import Approver, TrustPolicy, schema_errors

PREDICATE_TYPE = "https://mlgate.dev/attestation/approval/v1"
SCHEMA_FILE = "approval_predicate.schema.json"
_PREDICATE = "dsseEnvelope.payload.predicate"


def _is_hex64(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


# --------------------------------------------------------------------------- create
def create_approval(
    private_key_pem: bytes,
    *,
    release_name: str,
    model_digest: str,
    printed_name: str,
    signer_id: str,
    role: str,
    meaning: str,
    environment: str,
    signed_at: dt.datetime,
    expires_at: dt.datetime | None,
    evidence_digests: Mapping[str, str],
    comment: str | None,
    key_name: str = "<private key>",
    authored: list[str] | None = None,
    certificate_chain_pem: bytes | None = None,
    release: Mapping[str, Any] | None = None,
    timestamper: Callable[[bytes], bytes] | None = None,
) -> bytes:
    """Sign an approval and return the bundle JSON bytes (deterministic for a fixed key and time).

    ``certificate_chain_pem`` (the signer's certificate, then intermediates) signs in certificate
    mode (organisation PKI) instead of key mode. ``release`` is the release binding the signer
    approves (:func:`mlgate.manifest.release_binding`; ``mlgate approve`` always gives it; without
    it the approval is a legacy one, identity not bound). Raises :class:`InputError` for an unusable key
    (named ``key_name``) or an argument the verifier would refuse.
    """
    key = load_private_key_pem(private_key_pem, key_name)
    if not isinstance(release_name, str) or not release_name.strip():
        raise InputError("the release name must be a non-empty string", field="subject[0].name")
    if not _is_hex64(model_digest):
        raise InputError("the model digest must be 64 lowercase hex digits (sha256)", field="subject[0].digest.sha256")
    if signed_at.tzinfo is None or (expires_at is not None and expires_at.tzinfo is None):
        raise InputError("signed_at and expires_at must be timezone-aware", field="predicate.signedAt")
    if expires_at is not None and expires_at <= signed_at:
        raise InputError(f"expires_at {rfc3339(expires_at)} is not after signed_at {rfc3339(signed_at)}", field="predicate.expiresAt")
    predicate: dict[str, Any] = {
        "signer": {"id": signer_id, "printedName": printed_name},
        "role": role,
        "meaning": meaning,
        "environment": environment,
        "signedAt": rfc3339(signed_at),
        "expiresAt": rfc3339(expires_at) if expires_at is not None else None,
        "evidenceDigests": {k: evidence_digests[k] for k in sorted(evidence_digests)},
        "comment": comment,
    }
    if release is not None:
        predicate["release"] = dict(release)
    if authored is not None:
        predicate["authored"] = sorted(authored)
        unknown = [a for a in authored if a not in evidence_digests]
        if unknown:
            raise InputError(f"authored evidence {', '.join(unknown)} is not among the approved evidence digests", field="predicate.authored")
    errors = schema_errors(predicate, SCHEMA_FILE)
    if errors:
        where, message = errors[0]
        raise InputError(message, field=_under("predicate", where))
    certificates = None
    if certificate_chain_pem is not None:
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        try:
            certificates = [c.public_bytes(Encoding.DER) for c in x509.load_pem_x509_certificates(certificate_chain_pem)]
        except ValueError:
            raise InputError("not a PEM certificate chain", field="certificate") from None
    statement = make_statement([{"name": release_name, "digest": {"sha256": model_digest}}], PREDICATE_TYPE, predicate)
    return sign_statement(statement, key, certificates=certificates, timestamper=timestamper)


# --------------------------------------------------------------------------- verify
def signed_record(name: str, data: bytes, **specific: Any) -> dict[str, Any]:
    """The facts every signed statement's record carries before verification (all unproven),
    plus the kind's own keys in ``specific``."""
    return {
        "path": name, "digest": sha256_hex(data),
        "verified": False, "reason": None,
        "signer_id": None, "printed_name": None, "role": None, "manifestation": None,
        "role_authorised": False, "environment_authorised": False,
        "identity_source": None, "identity": None, "key_id": None, "certificate": None,
        "key_status": None, "key_revoked_at": None, "key_revoked_at_ns": None, "key_revocation_reason": None,
        "signed_at": None, "signed_at_ns": None, "signed_at_source": None, "time_authority": None, "claimed_signed_at": None,
        "key_valid_until": None, "key_valid_until_ns": None,
        "expires_at": None, "expires_at_ns": None,
        "environment": None, "subject_digest": None, "statement_digest": None,
        **specific,
    }


def _record(name: str, data: bytes) -> dict[str, Any]:
    return signed_record(name, data, meaning=None, meaning_authorised=False, evidence_digests={}, authored=[], comment=None)


def _fail(record: dict[str, Any], name: str, message: str, field: str | None = None) -> dict[str, Any]:
    record["reason"] = InputError(message, file=name, field=field).diagnostics()
    record["verified"] = False
    return record


def _under(prefix: str, where: str) -> str:
    """A schema error path (``$`` for the root) below ``prefix``."""
    return prefix if where == "$" else f"{prefix}{where}" if where.startswith("[") else f"{prefix}.{where}"


def manifestation(printed_name: Any, meaning: Any, role: Any, signed_at: Any) -> str:
    """21 CFR 11.50 in one line: printed name, meaning (role), date and time of signing."""
    return f"{printed_name or '?'}, {meaning or '?'} as {role or '?'}, signed {signed_at or '?'}"


def _claimed_time(statement: dict[str, Any] | None) -> dt.datetime | None:
    """The predicate's signedAt, before authentication: only to judge the credential at that time."""
    try:
        value = statement["predicate"]["signedAt"]  # type: ignore[index]
        return parse_time(value) if isinstance(value, str) and len(value) <= 40 else None
    except (KeyError, TypeError, ValueError, OverflowError):
        return None


def verify_signed_predicate(data: bytes, name: str, *, trust: TrustPolicy, record: dict[str, Any], predicate_type: str,
                            schema_file: str) -> tuple[dict[str, Any], Any, dt.datetime, dt.datetime | None] | None:
    """The checks every signed mlgate statement about one model shares (approvals, waivers).

    Authenticates the bundle as an approver's, then checks the predicate type, the single model
    subject, the predicate schema and its times, and that the approver the credential belongs to
    is the one the predicate names, with the trust policy's printed name. Fills ``record`` with
    what was established (identity, key status, claimed signer, times, subject digest) and
    returns ``(predicate, auth, signed_at, expires_at)``, or None once ``record`` holds the
    one-line reason it is not verified. Never raises for hostile bytes.
    """
    from mlgate.signing.signers import authenticate

    try:
        bundle = parse_bundle(data, name)
        try:
            statement: dict[str, Any] | None = parse_statement(bundle.payload, name, payload_type=bundle.payload_type)
            statement_error: StatementError | None = None
        except StatementError as exc:
            statement, statement_error = None, exc
        # The signature first: an unsigned payload's complaints are not the signer's.
        auth = authenticate(bundle, trust, "approver", signed_at=_claimed_time(statement))
        if statement_error is not None:
            raise statement_error
    except AttestationError as exc:
        record["reason"] = exc.diagnostics()
        return None
    assert statement is not None
    record.update({
        "identity_source": auth.source, "identity": auth.identity, "key_id": auth.key_id, "certificate": auth.certificate,
        "key_status": auth.status, "statement_digest": sha256_hex(auth.payload),
        **{f"key_{k}": v for k, v in auth.validity.as_facts().items()},
    })

    if statement["predicateType"] != predicate_type:
        _fail(record, name, f"got {statement['predicateType']!r}, expected {predicate_type!r}", "dsseEnvelope.payload.predicateType")
        return None
    subjects = statement["subject"]
    if len(subjects) != 1:
        _fail(record, name, f"expected exactly one subject (the model), got {len(subjects)}", "dsseEnvelope.payload.subject")
        return None
    subject = subjects[0]
    if set(subject) != {"name", "digest"} or not isinstance(subject["name"], str) or not subject["name"]:
        _fail(record, name, "the subject needs exactly a non-empty name and a digest", "dsseEnvelope.payload.subject[0]")
        return None
    if set(subject["digest"]) != {"sha256"}:
        _fail(record, name, "the subject digest must be exactly {sha256: <model digest>}", "dsseEnvelope.payload.subject[0].digest")
        return None
    predicate = statement.get("predicate")
    errors = schema_errors(predicate, schema_file)
    if errors:
        where, message = errors[0]
        _fail(record, name, message, _under(_PREDICATE, where))
        return None
    try:
        signed_at = parse_time(predicate["signedAt"])
        expires_at = parse_time(predicate["expiresAt"]) if predicate["expiresAt"] is not None else None
    except (ValueError, OverflowError) as exc:
        _fail(record, name, f"not a valid time: {exc}", f"{_PREDICATE}.signedAt")
        return None
    if expires_at is not None and expires_at <= signed_at:
        _fail(record, name, f"expiresAt {rfc3339(expires_at)} is not after signedAt {rfc3339(signed_at)}", f"{_PREDICATE}.expiresAt")
        return None
    claimed_at = signed_at
    if auth.verified_time is not None:  # a TSA's or the transparency log's time, not the signer's clock
        signed_at = auth.verified_time
    record.update({
        "signer_id": predicate["signer"]["id"],
        "printed_name": predicate["signer"]["printedName"],
        "role": predicate["role"],
        "signed_at": rfc3339(signed_at), "signed_at_ns": epoch_ns(signed_at),
        # The trusted time when there is one (an RFC 3161 timestamp of a listed TSA, or a keyless
        # bundle's transparency-log time), else the signer's own clock ("signer"); the time the
        # signer wrote is kept as claimed_signed_at. Only a trusted time can show
        # a signature predates a revocation or a key's notAfter: without one, key_valid_until is
        # when the signature stops counting (the policy compares it with the evaluation time).
        "signed_at_source": auth.time.source if auth.time else "signer",
        "time_authority": auth.time.authority if auth.time else None,
        "claimed_signed_at": rfc3339(claimed_at),
        "key_valid_until": rfc3339(auth.valid_until) if auth.valid_until else None,
        "key_valid_until_ns": epoch_ns(auth.valid_until) if auth.valid_until else None,
        "expires_at": rfc3339(expires_at) if expires_at else None,
        "expires_at_ns": epoch_ns(expires_at) if expires_at else None,
        "environment": predicate["environment"],
        "subject_digest": subject["digest"]["sha256"],
    })
    return predicate, auth, signed_at, expires_at


def check_signer(record: dict[str, Any], name: str, predicate: dict[str, Any], auth: Any, *, kind: str = "approval") -> bool:
    """The credential's approver is the signer the predicate claims, under the trust policy's
    printed name; if so, mark ``record`` verified and fill in what that approver may do."""
    approver = auth.signer
    claimed_id = predicate["signer"]["id"]
    if claimed_id != approver.id:
        _fail(record, name, f"signed with {auth.source} {auth.identity} of approver {approver.id!r}, but the {kind} claims signer {claimed_id!r}", f"{_PREDICATE}.signer.id")
        return False
    if predicate["signer"]["printedName"] != approver.name:
        _fail(record, name, f"printed name {predicate['signer']['printedName']!r} differs from {approver.name!r} in the trust policy", f"{_PREDICATE}.signer.printedName")
        return False
    assert isinstance(approver, Approver)
    record["verified"] = True
    record["role_authorised"] = predicate["role"] in approver.roles
    record["environment_authorised"] = approver.may_act_in(predicate["environment"])
    return True


def verify_approval(data: bytes, name: str, *, trust: TrustPolicy) -> dict[str, Any]:
    """One ``approvals.records[]`` entry for the approval bytes ``data`` (read by the caller)."""
    record = _record(name, data)
    checked = verify_signed_predicate(data, name, trust=trust, record=record, predicate_type=PREDICATE_TYPE, schema_file=SCHEMA_FILE)
    if checked is None:
        return record
    predicate, auth, signed_at, _ = checked
    authored = list(predicate.get("authored", []))
    record.update({
        "meaning": predicate["meaning"],
        "manifestation": manifestation(predicate["signer"]["printedName"], predicate["meaning"], predicate["role"], rfc3339(signed_at)),
        "evidence_digests": dict(predicate["evidenceDigests"]),
        "authored": authored,
        "comment": predicate["comment"],
        "release": predicate.get("release"),
    })
    unknown = [a for a in authored if a not in predicate["evidenceDigests"]]
    if unknown:
        return _fail(record, name, f"authored evidence {', '.join(unknown)} is not among the approved evidence digests", f"{_PREDICATE}.authored")
    if check_signer(record, name, predicate, auth):
        record["meaning_authorised"] = predicate["meaning"] in auth.signer.meanings
    return record
