"""OpenSSF model-signing signatures, read unchanged, as the ``model_signature`` facts.

The bundle is the one ``model_signing sign key|certificate|sigstore`` writes (Sigstore bundle
v0.3, DSSE, in-toto Statement v1 with predicate ``https://model_signing/signature/v1.0``). We
verify it the way model-signing's ``Verifier`` does (``model_signing/_signing/signing.py``,
``verifying.py``), in all three modes, offline:

1. the container parses (else ``valid: false``);
2. the signature verifies with a credential of a ``modelSigners`` entry of the trust policy
   (:mod:`mlgate.signing.signers`): a key selected by the key-id hint (the pre-1.0 PAE quirk accepted as
   model-signing accepts it); a certificate chained to a listed CA whose email is the one listed
   for the signer (model-signing checks the chain only; mlgate also pins who); or a Sigstore
   keyless bundle verified against the trust policy's TrustedRoot file for the listed OIDC
   issuer and subject (else ``authenticated: false``);
3. the statement is an in-toto Statement v1 with one subject, the predicate lists sha256
   ``resources`` whose digests hash (in order) to the subject digest, and the serialization is
   ``files``/``sha256`` (the only one mlgate recomputes);
4. the signed manifest equals the model's manifest (after the signature's ``ignore_paths``):
   differences are reported like model-signing's diff, as ``missing`` (signed, not in the
   model), ``extra`` (in the model, not signed) and ``changed`` (digest differs) file names.

``verified`` is true only when all four hold. Hostile bytes never raise: they become
``valid: false`` / ``verified: false`` with a one-line ``reason``.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from mlgate.signing.attestation import (
    AttestationError,
    BundleFormatError,
    StatementError,
    parse_bundle,
    parse_statement,
)
from mlgate.canonical import sha256_hex
from mlgate.errors import MlgateError
from mlgate.evidence.model_digest import ModelDigest, root_digest
from mlgate.safeio import display
from mlgate.signing.trust import TrustPolicy

PREDICATE_TYPE = "https://model_signing/signature/v1.0"
PREDICATE_TYPE_COMPAT = "https://model_signing/Digests/v0.1"
_PAYLOAD = "dsseEnvelope.payload"


def _block(name: str, data: bytes) -> dict[str, Any]:
    return {
        "present": True, "valid": False, "authenticated": False, "errors": [],
        "path": name, "digest": sha256_hex(data),
        "verified": False, "reason": None,
        "signer_id": None, "signer_name": None, "identity_source": None, "identity": None,
        "key_id": None, "certificate": None,
        "key_status": None, "key_revoked_at": None, "key_revoked_at_ns": None, "key_revocation_reason": None,
        "signed_at": None, "signed_at_ns": None,
        "subject_digest": None,
        "mismatches": {"missing": [], "extra": [], "changed": []},
    }


def _is_hex64(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _signed_manifest(statement: dict[str, Any], name: str) -> tuple[str, dict[str, str], tuple[PurePosixPath, ...]]:
    """(subject digest, {file name: sha256}, ignore paths) from a model-signing statement."""
    ptype = statement["predicateType"]
    if ptype == PREDICATE_TYPE_COMPAT:
        raise StatementError(f"predicate {PREDICATE_TYPE_COMPAT!r} (model-signing 0.2) is not supported; re-sign with model-signing 1.x", file=name, field=f"{_PAYLOAD}.predicateType")
    if ptype != PREDICATE_TYPE:
        raise StatementError(f"got predicateType {ptype!r}, expected {PREDICATE_TYPE!r}", file=name, field=f"{_PAYLOAD}.predicateType")
    subjects = statement["subject"]
    if len(subjects) != 1:
        raise StatementError(f"expected exactly one subject, got {len(subjects)}", file=name, field=f"{_PAYLOAD}.subject")
    subject_digest = subjects[0]["digest"].get("sha256")
    if subject_digest is None:
        raise StatementError("the subject has no sha256 digest", file=name, field=f"{_PAYLOAD}.subject[0].digest")
    predicate = statement.get("predicate")
    if not isinstance(predicate, dict):
        raise StatementError("missing predicate", file=name, field=f"{_PAYLOAD}.predicate")
    where = f"{_PAYLOAD}.predicate"

    serialization = predicate.get("serialization")
    if not isinstance(serialization, dict):
        raise StatementError("missing serialization object", file=name, field=f"{where}.serialization")
    method, hash_type = serialization.get("method"), serialization.get("hash_type")
    if method != "files" or hash_type != "sha256":
        raise StatementError(
            f"serialization method {method!r} with hash {hash_type!r} is not supported (mlgate recomputes 'files' with 'sha256')",
            file=name, field=f"{where}.serialization",
        )
    if not isinstance(serialization.get("allow_symlinks", False), bool):
        raise StatementError("expected a boolean", file=name, field=f"{where}.serialization.allow_symlinks")
    raw_ignore = serialization.get("ignore_paths", [])
    if not isinstance(raw_ignore, list):
        raise StatementError("expected a list of relative paths", file=name, field=f"{where}.serialization.ignore_paths")
    ignore = []
    for i, item in enumerate(raw_ignore):
        field = f"{where}.serialization.ignore_paths[{i}]"
        if not isinstance(item, str) or not item:
            raise StatementError("expected a non-empty relative path", file=name, field=field)
        p = PurePosixPath(item)
        if p.is_absolute() or ".." in p.parts or not p.parts:
            # model-signing drops paths that leave the model; "." would ignore the whole model.
            raise StatementError(f"ignore path {item!r} must name something inside the model", file=name, field=field)
        ignore.append(p)

    resources = predicate.get("resources")
    if not isinstance(resources, list):
        raise StatementError("expected a list of resources", file=name, field=f"{where}.resources")
    files: dict[str, str] = {}
    ordered = []
    for i, resource in enumerate(resources):
        field = f"{where}.resources[{i}]"
        if not isinstance(resource, dict):
            raise StatementError("expected an object", file=name, field=field)
        rname, alg, digest = resource.get("name"), resource.get("algorithm"), resource.get("digest")
        if not isinstance(rname, str) or not rname:
            raise StatementError("expected a non-empty file name", file=name, field=f"{field}.name")
        if alg != "sha256":
            raise StatementError(f"got algorithm {alg!r}, expected 'sha256'", file=name, field=f"{field}.algorithm")
        if not _is_hex64(digest):
            raise StatementError("expected 64 lowercase hex digits", file=name, field=f"{field}.digest")
        # model-signing keys its manifest by PurePosixPath, so normalise the same way.
        key = str(PurePosixPath(rname))
        if key in files:
            raise StatementError(f"file {rname!r} is listed twice", file=name, field=f"{field}.name")
        files[key] = digest
        ordered.append(digest)
    computed = root_digest(ordered)
    if computed != subject_digest:
        raise StatementError(
            f"manifest is inconsistent: the subject digest is {subject_digest} but the resources hash to {computed}",
            file=name, field=f"{_PAYLOAD}.subject[0].digest.sha256",
        )
    return subject_digest, files, tuple(ignore)


def _diff(signed: dict[str, str], actual: dict[str, str]) -> dict[str, list[str]]:
    return {
        "missing": sorted(set(signed) - set(actual)),
        "extra": sorted(set(actual) - set(signed)),
        "changed": sorted(n for n in set(signed) & set(actual) if signed[n] != actual[n]),
    }


def _names(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def verify_model_signature(data: bytes, name: str, *, model_path: Path, digest: ModelDigest, trust: TrustPolicy) -> dict[str, Any]:
    """The contract's ``model_signature`` block for the signature bytes ``data`` (read by the caller)."""
    block = _block(name, data)

    try:
        bundle = parse_bundle(data, name)
    except BundleFormatError as exc:
        block["errors"] = [exc.diagnostics()]
        block["reason"] = exc.diagnostics()
        return block

    # Format first (the unauthenticated payload only decides `valid`), then authenticity.
    format_error: MlgateError | None = None
    signed = None
    try:
        statement = parse_statement(bundle.payload, name, payload_type=bundle.payload_type)
        signed = _signed_manifest(statement, name)
    except StatementError as exc:
        format_error = exc
    block["valid"] = format_error is None
    if format_error is not None:
        block["errors"] = [format_error.diagnostics()]

    from mlgate.clock import epoch_ns, rfc3339
    from mlgate.signing.signers import authenticate

    try:
        # model-signing statements carry no signing time: key windows are judged without one
        # (fail closed when a window is set), certificates at the leaf's notBefore as
        # model-signing does, keyless bundles at the transparency-log time.
        auth = authenticate(bundle, trust, "model_signer", signed_at=None, legacy_pae=True)
    except AttestationError as exc:
        block["reason"] = exc.diagnostics()
        return block
    block["authenticated"] = True
    block.update({
        "signer_id": auth.signer.id, "signer_name": auth.signer.name,
        "identity_source": auth.source, "identity": auth.identity, "key_id": auth.key_id,
        "certificate": auth.certificate, "key_status": auth.status,
        **{f"key_{k}": v for k, v in auth.validity.as_facts().items()},
    })
    if auth.verified_time is not None:
        block["signed_at"], block["signed_at_ns"] = rfc3339(auth.verified_time), epoch_ns(auth.verified_time)
    if format_error is not None or signed is None:
        block["reason"] = format_error.diagnostics() if format_error else f"{name}: not a model-signing statement"
        return block

    subject_digest, signed_files, ignore = signed
    block["subject_digest"] = subject_digest
    actual = {n: d for n, d in digest.files if not any(PurePosixPath(n).is_relative_to(p) for p in ignore)}
    mismatches = _diff(signed_files, actual)
    block["mismatches"] = mismatches
    if any(mismatches.values()):
        parts = [f"{len(v)} {k} ({_names(v)})" for k, v in mismatches.items() if v]
        block["reason"] = f"{name}: model {display(model_path)} differs from the signed manifest: " + "; ".join(parts)
        return block
    block["verified"] = True
    return block
