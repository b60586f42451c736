"""Signed waivers: a time-limited risk acceptance of named violations for one model.

A waiver is signed with the same machinery as an approval (an in-toto Statement v1 in a DSSE
envelope in a Sigstore bundle, :mod:`mlgate.signing.attestation`), predicate type
``https://mlgate.dev/attestation/waiver/v1``::

    subject: [{name: <release name>, digest: {sha256: <model digest>}}]   # bound to the model
    predicate:
      rules: [MLG-BIAS-002]             # the violations it turns into warnings
      environment: production
      justification: "Clinician review of every ... while the model is retrained (CAPA-2026-114)."
      signer: {id: jane.roe@hospital.example, printedName: Dr. Jane Roe}
      role: clinical-safety-officer     # who accepts the risk
      signedAt: 2026-12-01T09:00:00Z
      expiresAt: 2026-12-31T09:00:00Z   # required
      ticket: CAPA-2026-114             # optional

validated by ``schemas/waiver_predicate.schema.json``.

Verification here establishes the facts only: who signed (an approver of the trust policy, with
the printed name it lists), when, for which model, environment and rules, and until when.
Whether the waiver *applies* is the policy's call (``policies/mlgate/waivers.rego``): the
environment must accept waivers (``waivers.max_days``), the signer's role must be one the
environment lets accept risk (``waivers.roles``) and authorised for the signer, the model digest
and environment must match, the evaluation time must lie in [signedAt, expiresAt), the validity
must not exceed ``waivers.max_days``, and a rule listed in ``waivers.not_waivable`` stays a
violation. A waiver that fails any of these changes nothing.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable, Mapping

from mlgate.signing.attestation import make_statement, sign_statement
from mlgate.clock import rfc3339
from mlgate.errors import InputError
from mlgate.evidence.approval import _is_hex64, _under, check_signer, signed_record, verify_signed_predicate
from mlgate.signing.keys import load_private_key_pem
from mlgate.signing.trust import TrustPolicy, schema_errors

PREDICATE_TYPE = "https://mlgate.dev/attestation/waiver/v1"
SCHEMA_FILE = "waiver_predicate.schema.json"


def create_waiver(
    private_key_pem: bytes,
    *,
    release_name: str,
    model_digest: str,
    rules: list[str],
    environment: str,
    justification: str,
    printed_name: str,
    signer_id: str,
    role: str,
    signed_at: dt.datetime,
    expires_at: dt.datetime,
    ticket: str | None = None,
    key_name: str = "<private key>",
    release: Mapping[str, Any] | None = None,
    timestamper: Callable[[bytes], bytes] | None = None,
) -> bytes:
    """Sign a waiver and return the bundle JSON bytes (deterministic for a fixed key and time).

    Raises :class:`InputError` for an unusable key or an argument the verifier would refuse."""
    key = load_private_key_pem(private_key_pem, key_name)
    if not isinstance(release_name, str) or not release_name.strip():
        raise InputError("the release name must be a non-empty string", field="subject[0].name")
    if not _is_hex64(model_digest):
        raise InputError("the model digest must be 64 lowercase hex digits (sha256)", field="subject[0].digest.sha256")
    if signed_at.tzinfo is None or expires_at.tzinfo is None:
        raise InputError("signed_at and expires_at must be timezone-aware", field="predicate.signedAt")
    if expires_at <= signed_at:
        raise InputError(f"expires_at {rfc3339(expires_at)} is not after signed_at {rfc3339(signed_at)}", field="predicate.expiresAt")
    predicate: dict[str, Any] = {
        "rules": sorted(set(rules)),
        "environment": environment,
        "justification": justification,
        "signer": {"id": signer_id, "printedName": printed_name},
        "role": role,
        "signedAt": rfc3339(signed_at),
        "expiresAt": rfc3339(expires_at),
        "ticket": ticket,
    }
    if release is not None:
        predicate["release"] = dict(release)
    errors = schema_errors(predicate, SCHEMA_FILE)
    if errors:
        where, message = errors[0]
        raise InputError(message, field=_under("predicate", where))
    statement = make_statement([{"name": release_name, "digest": {"sha256": model_digest}}], PREDICATE_TYPE, predicate)
    return sign_statement(statement, key, timestamper=timestamper)


def _record(name: str, data: bytes) -> dict[str, Any]:
    return signed_record(name, data, rules=[], justification=None, ticket=None)


def verify_waiver(data: bytes, name: str, *, trust: TrustPolicy) -> dict[str, Any]:
    """One ``waivers.records[]`` entry for the waiver bytes ``data`` (read by the caller)."""
    record = _record(name, data)
    checked = verify_signed_predicate(data, name, trust=trust, record=record, predicate_type=PREDICATE_TYPE, schema_file=SCHEMA_FILE)
    if checked is None:
        return record
    predicate, auth, signed_at, _ = checked
    record.update({
        "rules": list(predicate["rules"]),
        "justification": predicate["justification"],
        "ticket": predicate.get("ticket"),
        "release": predicate.get("release"),
        "manifestation": f"{predicate['signer']['printedName']}, risk acceptance of {', '.join(predicate['rules'])} "
                         f"as {predicate['role']}, signed {rfc3339(signed_at)}",
    })
    check_signer(record, name, predicate, auth, kind="waiver")
    return record
