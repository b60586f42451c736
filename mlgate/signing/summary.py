"""Signed verification summaries: a decision that leaves CI as a SLSA Verification Summary Attestation.

``mlgate check --attest KEY`` writes one per release and environment (by default
``<release>/.mlgate/verification-<env>.sigstore.json``): an in-toto Statement v1 in a DSSE
envelope in a Sigstore bundle (:mod:`mlgate.signing.attestation`, as approvals are), whose
predicate is a VSA v1 (https://slsa.dev/spec/v1.0/verification_summary)::

    subject:       [{name: "<release>@<version>", digest: {sha256: <model digest>}}]
    predicateType: https://slsa.dev/verification_summary/v1
    predicate:
      verifier:           {id: https://mlgate.dev/verifier, version: {mlgate: "0.1.0"}}
      timeVerified:       the decision's evaluation time
      resourceUri:        the release's spec.model.storageUri (else the release directory as a file URI)
      policy:             {uri: the policy (directory, bundle or oci:// reference), digest: {sha256: the decision's policy revision}}
      inputAttestations:  [{uri: <file relative to the release>, digest: {sha256: ...}}]  every evidence file, approval, waiver, model signature read
      verificationResult: PASSED (the decision allowed) | FAILED
      verifiedLevels:     ["MLGATE_ENV_<env>"] when PASSED, ["FAILED"] when FAILED (custom values; the spec reserves SLSA_*)
      slsaVersion:        "1.0"
      mlgate:             {environment, decisionId, violations: [ids], warnings: [ids],   (extension field)
                           static: {key, policyRevision, findings}}  the time-independent findings (below)

Who may sign one is the trust policy's ``summarySigners`` (keys only). :func:`verify_summary`
checks the signature against those keys and the key's validity at ``timeVerified`` (a claimed
time: a key revoked for a compromise voids every summary, one past its end counts until then),
then what makes a summary apply: the model digest, the environment, the age (``max_age``), the
evidence (when given, every file must still have the digest it had) and the result. It never
raises for a bad summary: the answer is a :class:`SummaryCheck` with ``ok`` and a one-line reason.
This module does not import the gate: the decision's fields are handed to :func:`make_summary`
by :mod:`mlgate.vsa`.

``mlgate.static`` carries the decision's time-independent findings (:mod:`mlgate.policy.timesplit`)
with the input's static key and the policy's revision. A webhook configured to accept summaries
(``acceptSummaries``) takes them, for exactly that input under exactly that policy, instead of
evaluating those rules, and evaluates the time-dependent ones itself (expiry, revocation, waivers);
its audit record names the summary (:meth:`SummaryCheck.as_record`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlgate.clock import epoch_ns, parse_time, rfc3339
from mlgate.errors import InputError, MlgateError

PREDICATE_TYPE = "https://slsa.dev/verification_summary/v1"
DEFAULT_VERIFIER_ID = "https://mlgate.dev/verifier"
SLSA_VERSION = "1.0"
#: Where ``mlgate check --attest`` writes by default, relative to the release directory.
SUMMARY_DIR = ".mlgate"
SUMMARY_GLOB = "verification-*.sigstore.json"


def env_level(environment: str) -> str:
    """The ``verifiedLevels`` value a PASSED summary for ``environment`` carries."""
    return f"MLGATE_ENV_{environment}"


def default_path(release_dir: Path, environment: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", environment)
    return Path(release_dir) / SUMMARY_DIR / f"verification-{safe}.sigstore.json"


_AGE = re.compile(r"^\s*(\d{1,9})\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_max_age(text: Any, *, file: str | None = None, field: str = "maxAge") -> dt.timedelta:
    """``30s``, ``15m``, ``24h``, ``7d``: how old a summary may be; anything else is an :class:`InputError`."""
    match = _AGE.match(text) if isinstance(text, str) else None
    if match is None or int(match.group(1)) == 0:
        raise InputError(f"expected a positive duration such as 30m, 24h or 7d, got {text!r}", file=file, field=field)
    return dt.timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def make_summary(*, release_name: str, release_version: str, model_digest: str, environment: str, time_verified: dt.datetime,
                 resource_uri: str, policy_uri: str, policy_revision: str, inputs: Mapping[str, str], passed: bool,
                 decision_id: str, violations: list[str], warnings: list[str], verifier_id: str = DEFAULT_VERIFIER_ID,
                 verifier_version: str | None = None, static: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The in-toto Statement (unsigned) of one decision."""
    from mlgate import __version__
    from mlgate.signing.attestation import make_statement

    predicate = {
        "verifier": {"id": verifier_id, "version": {"mlgate": verifier_version or __version__}},
        "timeVerified": rfc3339(time_verified),
        "resourceUri": resource_uri,
        "policy": {"uri": policy_uri, "digest": {"sha256": policy_revision}},
        "inputAttestations": [{"uri": uri, "digest": {"sha256": digest}} for uri, digest in sorted(inputs.items())],
        "verificationResult": "PASSED" if passed else "FAILED",
        "verifiedLevels": [env_level(environment)] if passed else ["FAILED"],
        "slsaVersion": SLSA_VERSION,
        "mlgate": {"environment": environment, "decisionId": decision_id, "violations": sorted(set(violations)),
                   "warnings": sorted(set(warnings)), **({"static": dict(static)} if static else {})},
    }
    subject = [{"name": f"{release_name}@{release_version}", "digest": {"sha256": model_digest}}]
    return make_statement(subject, PREDICATE_TYPE, predicate)


def sign_summary(statement: Mapping[str, Any], private_key: Any) -> bytes:
    from mlgate.signing.attestation import sign_statement

    return sign_statement(statement, private_key)


def write_summary(target: Path, bundle: bytes) -> Path:
    """Write (or replace: a summary is regenerated by every check) atomically."""
    import os

    from mlgate.safeio import display

    target = Path(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(bundle)
        os.replace(tmp, target)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise InputError(f"cannot write the verification summary: {exc.strerror or exc}", file=display(target)) from None
    return target


# --------------------------------------------------------------------------- verify
@dataclass(frozen=True)
class SummaryCheck:
    """What :func:`verify_summary` found. ``ok``: signed by a trusted summary signer and it applies
    (digest, environment, age, evidence) and says PASSED; ``reason``: why not, or notes."""

    path: str
    ok: bool
    reason: str
    signed: bool = False  # the signature verified with a summarySigners key
    signer_id: str | None = None
    signer_name: str | None = None
    key_id: str | None = None
    environment: str | None = None
    model_digest: str | None = None
    result: str | None = None  # PASSED | FAILED
    time_verified: str | None = None
    decision_id: str | None = None
    violations: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    bundle_digest: str | None = None  # sha256 of the bundle bytes: what the audit record names
    inputs: dict[str, str] = field(default_factory=dict, compare=False)
    #: mlgate.static: {key, policyRevision, findings} — the time-independent findings, for a webhook that accepts summaries
    static: dict[str, Any] | None = field(default=None, compare=False)
    #: when the signer's key stops counting (its end or revocation), RFC 3339; a check remembered past it no longer holds
    key_valid_until: str | None = None

    def as_record(self) -> dict[str, Any]:
        """What an audit record says of the summary it relied on."""
        return {"path": self.path, "sha256": self.bundle_digest, "signer": self.signer_id, "key_id": self.key_id,
                "decision_id": self.decision_id, "time_verified": self.time_verified, "result": self.result}


def _span(delta: dt.timedelta) -> str:
    seconds = abs(delta.total_seconds())
    if seconds >= 86_400:
        return f"{seconds / 86_400:.1f} days"
    if seconds >= 3_600:
        return f"{seconds / 3_600:.1f} hours"
    return f"{seconds / 60:.0f} minutes"


def verify_summary(data: bytes, name: str, trust: Any, *, now: dt.datetime, model_digest: str | None = None,
                   environment: str | None = None, max_age: dt.timedelta | None = None,
                   inputs: Mapping[str, str] | None = None) -> SummaryCheck:
    """Verify a summary bundle against ``trust`` (a :class:`~mlgate.signing.trust.TrustPolicy`)
    and check that it applies: to ``model_digest`` and ``environment`` when given, no older than
    ``max_age`` at ``now``, and, with ``inputs`` (file -> sha256 now), to unchanged evidence."""
    from mlgate import schemas
    from mlgate.canonical import sha256_hex
    from mlgate.signing.attestation import verify_bundle

    bundle_digest = sha256_hex(data)

    def refuse(reason: str, **facts: Any) -> SummaryCheck:
        return SummaryCheck(path=name, ok=False, reason=reason, bundle_digest=bundle_digest, **facts)

    keys = {k.key_id: (s, k) for s in getattr(trust, "summary_signers", ()) for k in s.keys}
    if not keys:
        return refuse(f"the trust policy {trust.source} lists no summarySigners: no summary is trusted")
    try:
        verified = verify_bundle(data, name, {kid: k.public_key for kid, (_s, k) in keys.items()})
    except MlgateError as exc:
        return refuse(exc.message)
    signer, key = keys[verified.key_id]
    who = {"signed": True, "signer_id": signer.id, "signer_name": signer.name, "key_id": verified.key_id}
    statement = verified.statement
    if statement.get("predicateType") != PREDICATE_TYPE:
        return refuse(f"predicateType is {statement.get('predicateType')!r}, expected {PREDICATE_TYPE!r}", **who)
    predicate = statement.get("predicate") or {}
    problems = schemas.errors("verification_summary.schema.json", predicate, limit=1)
    if problems:
        where, message = problems[0]
        return refuse(f"predicate.{where}: {message}" if where != "$" else f"predicate: {message}", **who)
    try:
        verified_at = parse_time(predicate["timeVerified"])
    except ValueError as exc:
        return refuse(f"predicate.timeVerified: {exc}", **who)
    ext = predicate["mlgate"]
    digest = statement["subject"][0]["digest"].get("sha256")
    facts = {
        **who, "environment": ext["environment"], "model_digest": digest, "result": predicate["verificationResult"],
        "time_verified": rfc3339(verified_at), "decision_id": ext["decisionId"], "violations": tuple(ext["violations"]),
        "warnings": tuple(ext["warnings"]), "inputs": {a["uri"]: a["digest"]["sha256"] for a in predicate["inputAttestations"]},
        "static": ext.get("static"),
    }
    if len(statement["subject"]) != 1 or digest is None:
        return refuse("expected exactly one subject with a sha256 digest (the model)", **facts)

    judgement = key.validity.judge_signature(verified_at, None)
    if judgement.problem is not None:
        return refuse(f"summary signer {signer.id!r}: {judgement.problem}", **facts)
    if judgement.valid_until is not None:
        facts["key_valid_until"] = rfc3339(judgement.valid_until)
    if judgement.valid_until is not None and epoch_ns(judgement.valid_until) <= epoch_ns(now):
        return refuse(f"summary signer {signer.id!r}: the key counts only until {rfc3339(judgement.valid_until)} "
                      "(its end or revocation; the summary's time is the signer's claim)", **facts)
    if verified_at > now:
        return refuse(f"timeVerified {facts['time_verified']} is in the future", **facts)
    age = now - verified_at
    if max_age is not None and age > max_age:
        return refuse(f"verified {_span(age)} ago, older than the maximum age {_span(max_age)}", **facts)
    if model_digest is not None and digest != model_digest:
        return refuse(f"for model digest {digest[:12]}, the model is {model_digest[:12]}", **facts)
    if environment is not None and ext["environment"] != environment:
        return refuse(f"for environment {ext['environment']!r}, not {environment!r}", **facts)
    expected_levels = env_level(ext["environment"]) if facts["result"] == "PASSED" else "FAILED"
    if expected_levels not in predicate["verifiedLevels"]:
        return refuse(f"verifiedLevels {predicate['verifiedLevels']} do not carry {expected_levels!r} for a "
                      f"{facts['result']} summary", **facts)
    if inputs is not None:
        signed = facts["inputs"]
        notes = []
        for label, items in (("changed since verification", sorted(p for p in signed.keys() & inputs.keys() if signed[p] != inputs[p])),
                             ("added since verification", sorted(inputs.keys() - signed.keys())),
                             ("verified but gone", sorted(signed.keys() - inputs.keys()))):
            if items:
                notes.append(f"evidence {label}: {', '.join(items)}")
        if notes:
            return refuse("; ".join(notes), **facts)
    if facts["result"] != "PASSED":
        found = ", ".join(facts["violations"]) or "no violation ids"
        return refuse(f"the verification result is FAILED ({found})", **facts)
    return SummaryCheck(path=name, ok=True, bundle_digest=bundle_digest,
                        reason=f"PASSED for {ext['environment']}, verified {_span(age)} ago (decision {ext['decisionId']})", **facts)
