"""``mlgate verify RELEASE``: every signature in a release, verified, one row each.

No policy is evaluated: this is the signature report an auditor reads (who signed what, with
which kind of identity, meaning what, when, and whether it verifies). For approvals it also
checks what binds a signature to *this* release (21 CFR 11.70): the model digest, the exact
evidence digests, and expiry at the evaluation time. Each row carries the 11.50 manifestation
(printed name, meaning, date and time).

Waivers (``spec.evidence.waivers``, :mod:`mlgate.evidence.waiver`) get a row each too: the
signer and role, the rules waived, and whether the waiver is for this model, authorised by the
trust policy and unexpired at the evaluation time (an expired waiver fails, as an expired
approval does). Whether an environment's policy *accepts* it (waivers.roles, max_days,
not_waivable) is the gate's call, not this command's.

Rows: ``artifact, kind, signer, source (key/certificate/keyless), meaning, signed_at, time_source,
status, reason, expires_at, rules`` where ``time_source`` says who vouches for ``signed_at``:
``claimed`` (the signer's own clock), ``TSA <name>`` (an RFC 3161 timestamp of an authority the
trust policy lists) or ``Rekor`` (a keyless bundle's transparency-log time). A claimed time
cannot keep a signature alive past its credential's notAfter or revocation (``key_valid_until``:
a row fails once the evaluation reaches it), and status is ``verified``, ``failed`` or ``warning`` (verified, but
with a note, e.g. signed with a key revoked later); ``expires_at`` is null for a signature that
does not expire and ``rules`` is empty except for a waiver. :func:`verify_release` never raises for a bad signature file; only
an unreadable release (manifest) is an :class:`~mlgate.errors.InputError`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlgate.canonical import sha256_hex
from mlgate.clock import epoch_ns, rfc3339
from mlgate.errors import InputError
from mlgate.signing.trust import TrustPolicy

STATUSES = ("verified", "warning", "failed")


@dataclass(frozen=True)
class Row:
    artifact: str
    kind: str  # approval | waiver | model-signature
    signer: str
    source: str
    meaning: str
    signed_at: str
    status: str
    reason: str
    expires_at: str | None = None
    rules: tuple[str, ...] = ()  # a waiver's rule ids
    time_source: str = "-"  # where signed_at comes from: "claimed" (the signer's), "TSA <name>", "Rekor"


@dataclass(frozen=True)
class Report:
    release: str
    model_digest: str | None
    trust_policy: str
    trust_digest: str
    evaluated_at: str
    rows: tuple[Row, ...]

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r.status != "failed" for r in self.rows)

    def as_dict(self) -> dict[str, Any]:
        return {
            "apiVersion": "mlgate.dev/verify/v1", "release": self.release, "model_digest": self.model_digest,
            "trust_policy": {"source": self.trust_policy, "digest": self.trust_digest}, "evaluated_at": self.evaluated_at,
            "ok": self.ok, "signatures": [{**asdict(r), "rules": list(r.rules)} for r in self.rows],
        }


def _signer(name: Any, ident: Any) -> str:
    if name and ident:
        return f"{name} <{ident}>"
    return str(name or ident or "-")


def _binding(record: dict[str, Any], binding: dict[str, Any] | None, status: str, notes: list[str], verb: str) -> str:
    """The release the statement signed against the release now (mlgate.manifest.binding_verdict):
    a changed field fails the row, a legacy statement (no release signed) is a warning."""
    from mlgate.manifest import binding_verdict

    verdict, changes = binding_verdict(record.get("release"), binding or {}, verb=verb)
    if verdict == "changed":
        notes.append("release changed since signing: " + "; ".join(changes))
        return "failed"
    if verdict == "legacy":
        notes.append("legacy: the signature does not bind the release identity or manifest")
        return "warning" if status == "verified" else status
    return status


def _approval_row(record: dict[str, Any], *, model_digest: str | None, evidence: dict[str, str], now: dt.datetime,
                  binding: dict[str, Any] | None = None) -> Row:
    notes: list[str] = []
    status = "verified" if record["verified"] else "failed"
    if record["verified"]:
        if model_digest is not None and record["subject_digest"] != model_digest:
            status = "failed"
            notes.append(f"signed for model digest {record['subject_digest'][:12]}, the release model is {model_digest[:12]}")
        status = _binding(record, binding, status, notes, "approved")
        signed = record["evidence_digests"]
        changed = sorted(p for p in signed.keys() & evidence.keys() if signed[p] != evidence[p])
        added = sorted(evidence.keys() - signed.keys())
        removed = sorted(signed.keys() - evidence.keys())
        for label, items in (("changed since signing", changed), ("added since signing", added), ("signed but gone", removed)):
            if items:
                status = "failed"
                notes.append(f"evidence {label}: {', '.join(items)}")
        if record["expires_at_ns"] is not None and record["expires_at_ns"] <= epoch_ns(now):
            status = "failed"
            notes.append(f"expired at {record['expires_at']}")
        if record["signed_at_ns"] is not None and record["signed_at_ns"] > epoch_ns(now):
            status = "failed"
            notes.append(f"signing time {record['signed_at']} is in the future")
        if not (record["role_authorised"] and record["meaning_authorised"] and record["environment_authorised"]):
            status = "failed"
            notes.append(f"not authorised by the trust policy for role {record['role']} / meaning {record['meaning']} / environment {record['environment']}")
        status = _revoked_later(record, status, notes)
        status = _credential_ended(record, status, notes, now)
    reason = record["reason"] if not record["verified"] else "; ".join(notes)
    meaning = f"{record['meaning']} ({record['role']}) for {record['environment']}" if record["meaning"] else "-"
    return Row(
        artifact=record["path"], kind="approval", signer=_signer(record["printed_name"], record["signer_id"]),
        source=record["identity_source"] or "-", meaning=meaning, signed_at=record["signed_at"] or "-",
        status=status, reason=reason or "", expires_at=record["expires_at"], time_source=_time_source(record),
    )


def _time_source(record: dict[str, Any]) -> str:
    source = record.get("signed_at_source")
    if source == "tsa":
        return f"TSA {record.get('time_authority')}"
    if source == "transparency_log":
        return "Rekor"
    return "claimed" if source == "signer" else "-"


def _credential_ended(record: dict[str, Any], status: str, notes: list[str], now: dt.datetime) -> str:
    """A credential whose validity ends (notAfter, certificate expiry, revocation not for a
    compromise) vouches for a signature with a claimed time only until then."""
    until = record.get("key_valid_until_ns")
    if until is None:
        return status
    if until <= epoch_ns(now):
        notes.append(f"credential valid only until {record['key_valid_until']} and the signing time is the signer's claim (no trusted timestamp)")
        return "failed"
    notes.append(f"counts until {record['key_valid_until']} (credential's end; the signing time is the signer's claim)")
    return status


def _span(ns: int) -> str:
    """A duration for a person: '19.0 days', '1.0 hours', '5 minutes'."""
    seconds = abs(ns) / 10**9
    if seconds >= 86_400:
        return f"{seconds / 86_400:.1f} days"
    if seconds >= 3_600:
        return f"{seconds / 3_600:.1f} hours"
    return f"{seconds / 60:.0f} minutes"


def _waiver_row(record: dict[str, Any], *, model_digest: str | None, now: dt.datetime, binding: dict[str, Any] | None = None) -> Row:
    """A waiver's row: verified against the trust policy, bound to this model, within its validity at ``now``."""
    if not record["verified"]:
        return Row(artifact=record["path"], kind="waiver", signer=_signer(record["printed_name"], record["signer_id"]),
                   source=record["identity_source"] or "-", meaning="waiver", signed_at=record["signed_at"] or "-",
                   status="failed", reason=record["reason"] or "not verified", expires_at=record["expires_at"], rules=tuple(record["rules"]),
                   time_source=_time_source(record))
    notes: list[str] = []
    status = "verified"
    now_ns = epoch_ns(now)
    if model_digest is not None and record["subject_digest"] != model_digest:
        status = "failed"
        notes.append(f"signed for model digest {record['subject_digest'][:12]}, the release model is {model_digest[:12]}")
    status = _binding(record, binding, status, notes, "waived")
    if record["signed_at_ns"] > now_ns:
        status = "failed"
        notes.append(f"signing time {record['signed_at']} is in the future")
    # expires_at is required by the waiver schema: a verified waiver always has one.
    if record["expires_at_ns"] <= now_ns:
        status = "failed"
        notes.append(f"expired at {record['expires_at']} ({_span(now_ns - record['expires_at_ns'])} ago)")
    else:
        notes.append(f"expires at {record['expires_at']} (in {_span(record['expires_at_ns'] - now_ns)})")
    if not (record["role_authorised"] and record["environment_authorised"]):
        status = "failed"
        notes.append(f"not authorised by the trust policy for role {record['role']} / environment {record['environment']}")
    status = _revoked_later(record, status, notes)
    status = _credential_ended(record, status, notes, now)
    return Row(
        artifact=record["path"], kind="waiver", signer=_signer(record["printed_name"], record["signer_id"]),
        source=record["identity_source"] or "-", meaning=f"waiver of {', '.join(record['rules'])} ({record['role']}) for {record['environment']}",
        signed_at=record["signed_at"] or "-", status=status, reason="; ".join(notes), expires_at=record["expires_at"], rules=tuple(record["rules"]),
        time_source=_time_source(record),
    )


def _revoked_later(record: dict[str, Any], status: str, notes: list[str]) -> str:
    """A credential revoked after the signing time still verifies: a warning, with when and why."""
    if record["key_status"] != "revoked_after_signing":
        return status
    notes.append(f"credential revoked later, at {record['key_revoked_at']} ({record['key_revocation_reason'] or 'no reason given'})")
    return "warning" if status == "verified" else status


def _signature_row(block: dict[str, Any]) -> Row:
    status = "verified" if block["verified"] else "failed"
    notes = [] if block["verified"] else [block["reason"] or "; ".join(block["errors"]) or "not verified"]
    if block["verified"] and block["key_status"] == "revoked_after_signing":
        status = "warning"
        notes.append(f"credential revoked at {block['key_revoked_at']}")
    return Row(
        artifact=block["path"], kind="model-signature", signer=_signer(block["signer_name"], block["signer_id"]),
        source=block["identity_source"] or "-", meaning="model signature (OpenSSF model-signing)",
        signed_at=block["signed_at"] or "-", status=status, reason="; ".join(notes),
        # model-signing statements carry no signing time: only a trusted one is ever shown
        time_source=("Rekor" if block["identity_source"] == "keyless" else "TSA") if block["signed_at"] else "-",
    )


def _read(path: Path, rel: str) -> bytes | str:
    from mlgate.safeio import read_bytes

    try:
        return read_bytes(path)
    except InputError as exc:
        return InputError(exc.message, file=rel).diagnostics()


def verify_release(release_dir: Path, trust: TrustPolicy, now: dt.datetime, *, summary_max_age: dt.timedelta | None = None) -> Report:
    from mlgate.evidence.approval import verify_approval
    from mlgate.evidence.model_digest import compute_model_digest
    from mlgate.evidence.model_signature import verify_model_signature
    from mlgate.evidence.waiver import verify_waiver
    from mlgate.manifest import load_release

    release = load_release(Path(release_dir))
    rows: list[Row] = []
    digest = None
    digest_error = None
    try:
        digest = compute_model_digest(release.model_path)
    except InputError as exc:
        digest_error = exc.diagnostics()

    evidence: dict[str, str] = {}
    for path, rel in release.evaluated_evidence():
        data = _read(path, rel)
        evidence[rel] = sha256_hex(data) if isinstance(data, bytes) else "<unreadable>"

    for path, rel in release.approvals:
        data = _read(path, rel)
        if isinstance(data, str):
            rows.append(Row(rel, "approval", "-", "-", "-", "-", "failed", data))
            continue
        record = verify_approval(data, rel, trust=trust)
        rows.append(_approval_row(record, model_digest=digest.root if digest else None, evidence=evidence, now=now,
                                  binding=release.binding))

    for path, rel in release.waivers:
        data = _read(path, rel)
        if isinstance(data, str):
            rows.append(Row(rel, "waiver", "-", "-", "waiver", "-", "failed", data))
            continue
        record = verify_waiver(data, rel, trust=trust)
        rows.append(_waiver_row(record, model_digest=digest.root if digest else None, now=now, binding=release.binding))

    if release.signature_path is not None:
        rel = release.signature_rel or "model signature"
        data = _read(release.signature_path, rel)
        if isinstance(data, str):
            rows.append(Row(rel, "model-signature", "-", "-", "model signature (OpenSSF model-signing)", "-", "failed", data))
        elif digest is None:
            rows.append(Row(rel, "model-signature", "-", "-", "model signature (OpenSSF model-signing)", "-", "failed", digest_error or "model not hashed"))
        else:
            block = verify_model_signature(data, rel, model_path=release.model_path, digest=digest, trust=trust)
            rows.append(_signature_row(block))
    rows.extend(_summary_rows(release, trust, now, model_digest=digest.root if digest else None, max_age=summary_max_age))
    return Report(
        release=f"{release.name}@{release.version}", model_digest=digest.root if digest else None,
        trust_policy=trust.source, trust_digest=trust.digest, evaluated_at=rfc3339(now), rows=tuple(rows),
    )


def _summary_rows(release, trust: TrustPolicy, now: dt.datetime, *, model_digest: str | None, max_age: dt.timedelta | None) -> list[Row]:
    """One row per verification summary in ``<release>/.mlgate/`` (:mod:`mlgate.signing.summary`):
    signed by a trusted summary signer, for this model, no older than ``max_age``, over the
    evidence as it is now, and PASSED (a FAILED summary is a failed row: it allows nothing)."""
    from mlgate.safeio import resolve_inside
    from dataclasses import replace

    from mlgate.signing.summary import SUMMARY_DIR, SUMMARY_GLOB, default_path, verify_summary

    folder = Path(release.root) / SUMMARY_DIR
    try:
        paths = sorted(p for p in folder.glob(SUMMARY_GLOB) if p.is_file())
    except OSError:
        paths = []
    rows = []
    for path in paths:
        rel = f"{SUMMARY_DIR}/{path.name}"
        data = _read(path, rel)
        if isinstance(data, str):
            rows.append(Row(rel, "verification-summary", "-", "-", "verification summary", "-", "failed", data))
            continue
        if model_digest is None:
            rows.append(Row(rel, "verification-summary", "-", "-", "verification summary", "-", "failed", "model not hashed"))
            continue
        check = verify_summary(data, rel, trust, now=now, model_digest=model_digest, max_age=max_age)
        if check.signed and check.inputs:
            # The evidence now, for every file the summary names and every file the release lists.
            current: dict[str, str] = {}
            for uri in check.inputs:
                try:
                    target = resolve_inside(Path(release.root), uri, file=rel, field="predicate.inputAttestations")
                except InputError:
                    continue
                got = _read(target, uri)
                if isinstance(got, bytes):
                    current[uri] = sha256_hex(got)
            listed = [*release.evaluated_evidence(), *release.approvals, *release.waivers,
                      *((ds.local_path, ds.uri) for ds in release.datasets if ds.local_path is not None)]
            if release.signature_path is not None:
                listed.append((release.signature_path, release.signature_rel or ""))
            for file_path, file_rel in listed:
                if file_rel and file_rel not in current:
                    got = _read(file_path, file_rel)
                    if isinstance(got, bytes):
                        current[file_rel] = sha256_hex(got)
            if check.ok or check.result == "FAILED":
                check = verify_summary(data, rel, trust, now=now, model_digest=model_digest, max_age=max_age, inputs=current)
        if check.ok and check.environment is not None and default_path(Path(release.root), check.environment).name != path.name:
            # verification-production.sigstore.json must not pass off a staging summary
            check = replace(check, ok=False, reason=f"the file is named for another environment than the summary's ({check.environment!r})")
        meaning = f"verification summary {check.result} for {check.environment}" if check.result else "verification summary"
        rows.append(Row(
            artifact=rel, kind="verification-summary", signer=_signer(check.signer_name, check.signer_id),
            source="key" if check.signed else "-", meaning=meaning, signed_at=check.time_verified or "-",
            status="verified" if check.ok else "failed", reason=check.reason, time_source="claimed" if check.time_verified else "-",
        ))
    return rows


# --------------------------------------------------------------------------- render
COLUMNS = ("artifact", "signer", "source", "meaning", "signed_at", "time_source", "status", "reason")


def render_text(report: Report) -> str:
    lines = [f"release {report.release}  model {report.model_digest or '<not hashed>'}",
             f"trust policy {report.trust_policy} (sha256 {report.trust_digest[:12]})  evaluated at {report.evaluated_at}"]
    if not report.rows:
        lines.append("no signatures in the release (nothing verified)")
        return "\n".join(lines)
    table = [COLUMNS] + [tuple(getattr(r, c) for c in COLUMNS) for r in report.rows]
    # The reason column is last and not padded; the others are aligned.
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS) - 1)]
    for row in table:
        cells = [row[i].ljust(widths[i]) for i in range(len(COLUMNS) - 1)] + [row[-1] or ("-" if row is not table[0] else row[-1])]
        lines.append("  ".join(cells).rstrip())
    failed = sum(r.status == "failed" for r in report.rows)
    lines.append(f"{len(report.rows)} signature(s): {len(report.rows) - failed} verified, {failed} failed")
    return "\n".join(lines)


def render_json(report: Report) -> str:
    import json

    return json.dumps(report.as_dict(), indent=2, sort_keys=True)
