"""What the auditor report shows, gathered from the audit trail, the retained evidence and the
release directory, checked, and nothing rendered yet (:mod:`mlgate.report.page` renders).

Which evidence: the decisions recorded for the release name their evidence by path and sha256.
The report shows the evidence of the latest of them (the *basis* decision) and says, for every
other decision, whether it read the same files. Bytes come from the retained copies (``check
--retain-evidence``: exactly what the decision read) and otherwise from ``--release-dir`` only
when the file there still has the digest the decision recorded; a file with another digest is
reported as changed, never shown as if it were the evidence. The release manifest (from
``--release-dir``) says which file is which (datasets, validation results, model card, bias
audit, approvals, model signature); without it, the files are told apart by their content.

Approvals are verified again here against the trust policy (``--trust``, default the bundled
one) with :func:`mlgate.evidence.approval.verify_approval`; the decision's own verdict is in its
violations. Waivers likewise, with :func:`mlgate.evidence.waiver.verify_waiver`; whether a
waiver *applied* is the policy's call, so that is read from each decision's record (its
``waivers[]`` entry: applied, the rules waived, or the reason it did not apply), never recomputed.
A waiver that a decision recorded but the basis decision did not read is listed too, from the
record alone. Bias thresholds come from the policy data of the basis decision's environment, and
the report says whether that policy is the revision the decision was made with.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlgate.canonical import sha256_file
from mlgate.errors import InputError, MlgateError

BIAS_KIND = "BiasAudit"


@dataclass
class EvidenceFile:
    rel: str
    digest: str
    role: str = "other"  # dataset | validation | model_card | bias | approval | waiver | model_signature | other
    data: bytes | None = None
    source: str | None = None  # "retained copy" | "release directory"
    problem: str | None = None
    dataset: str | None = None  # for a validation result: the dataset it validates (manifest)


@dataclass
class ReportData:
    release_name: str
    release_version: str | None
    generated_at: str
    mlgate_version: str
    trail_location: str
    records: list[dict[str, Any]]  # the release's decisions, in time order
    basis: dict[str, Any] | None
    model_digests: list[str]
    evidence: list[EvidenceFile]
    manifest: Any = None  # mlgate.manifest.Release when --release-dir was given
    datasets: list[dict[str, Any]] = field(default_factory=list)
    validations: list[dict[str, Any]] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)
    model_card: dict[str, Any] | None = None
    model_card_file: EvidenceFile | None = None
    bias: dict[str, Any] | None = None
    bias_file: EvidenceFile | None = None
    bias_rows: list[dict[str, Any]] = field(default_factory=list)
    thresholds: dict[str, Any] | None = None
    threshold_note: str = ""
    approvals: list[dict[str, Any]] = field(default_factory=list)
    waivers: list[dict[str, Any]] = field(default_factory=list)
    trust_source: str = ""
    verification: Any = None  # mlgate.audit.verify.VerifyResult
    notes: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.release_name} {self.release_version}" if self.release_version else f"{self.release_name} (all versions)"


def parse_release_spec(spec: str) -> tuple[str, str | None]:
    name, sep, version = (spec or "").strip().partition("@")
    if not name or (sep and not version):
        raise InputError(f"expected NAME or NAME@VERSION, got {spec!r}", field="--release")
    return name, version or None


def _release_of(rec: dict[str, Any]) -> dict[str, Any]:
    rel = rec.get("release")
    return rel if isinstance(rel, dict) else {}


def _time_key(rec: dict[str, Any]) -> tuple:
    return (str(rec.get("timestamp") or ""), rec.get("sequence") if isinstance(rec.get("sequence"), int) else 0)


def select_records(records: list[dict[str, Any]], name: str, version: str | None) -> list[dict[str, Any]]:
    """The decisions about the release, and every other decision about the same model digest
    (replays, ``mlgate audit replay --record``, are what-ifs: never counted as decisions)."""
    records = [r for r in records if r.get("action") != "replay" and r.get("kind") != "replay"]
    chosen = [r for r in records if _release_of(r).get("name") == name and (version is None or str(_release_of(r).get("version")) == version)]
    digests = {r.get("subject_digest") for r in chosen if r.get("subject_digest")}
    seqs = {r.get("sequence") for r in chosen}
    chosen += [r for r in records if r.get("subject_digest") in digests and r.get("sequence") not in seqs]
    return sorted(chosen, key=_time_key)


def _read_store(store: Any, digest: str) -> bytes | None:
    if store is None:
        return None
    if hasattr(store, "read"):
        return store.read(digest)
    try:
        with store.open(digest) as fh:
            return fh.read()
    except FileNotFoundError:
        return None
    except OSError:
        return None


def _classify(rel: str, data: bytes | None) -> str:
    """The role of an evidence file from its content, when no manifest says it."""
    import json

    lower = rel.lower()
    if data is not None and data.lstrip()[:1] == b"{":
        try:
            doc = json.loads(data)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            if doc.get("kind") == BIAS_KIND:
                return "bias"
            if "dsseEnvelope" in doc:
                from mlgate.evidence import approval, waiver

                signed = {approval.PREDICATE_TYPE: "approval", waiver.PREDICATE_TYPE: "waiver"}
                return signed.get(_predicate_type(doc), "model_signature")
            if "validation_results" in doc or ("results" in doc and ("meta" in doc or "suite_name" in doc)):
                return "validation"
            if "model_details" in doc:
                return "model_card"
    if lower.endswith((".md", ".markdown")):
        return "model_card"
    if lower.endswith((".csv", ".parquet", ".tsv", ".jsonl", ".npz", ".npy", ".arrow", ".feather")) or lower.startswith("data/"):
        return "dataset"
    return "other"


def _predicate_type(bundle: dict[str, Any]) -> str | None:
    import base64
    import json

    try:
        statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
        return statement.get("predicateType")
    except (KeyError, TypeError, ValueError):
        return None


def _roles_from_manifest(release: Any) -> tuple[dict[str, str], dict[str, str]]:
    """rel path -> role, and validation rel -> dataset name."""
    roles: dict[str, str] = {}
    validated: dict[str, str] = {}
    root = release.root.resolve()
    for ds in release.datasets:
        if ds.local_path is not None:
            roles[ds.local_path.relative_to(root).as_posix()] = "dataset"
    for ref in release.data_validation:
        roles[ref.rel] = "validation"
        if ref.dataset:
            validated[ref.rel] = ref.dataset
    if release.model_card:
        roles[release.model_card[1]] = "model_card"
    if release.bias_audit:
        roles[release.bias_audit[1]] = "bias"
    for _path, rel in release.approvals:
        roles[rel] = "approval"
    for _path, rel in release.waivers:
        roles[rel] = "waiver"
    if release.signature_rel:
        roles[release.signature_rel] = "model_signature"
    return roles, validated


def gather(trail: Any, spec: str, *, now: dt.datetime, release_dir: Path | None = None, policy_dir: Path | None = None,
           trust_path: Path | None = None, checkpoint_extra: tuple[Path, ...] = ()) -> ReportData:
    from mlgate import __version__
    from mlgate.audit.checkpoint import CheckpointPolicy
    from mlgate.audit.verify import iter_records, verify_trail
    from mlgate.clock import rfc3339

    name, version = parse_release_spec(spec)
    release = None
    if release_dir is not None:
        from mlgate.manifest import load_release

        release = load_release(release_dir)
        if release.name != name or (version is not None and str(release.version) != version):
            raise InputError(f"the manifest is for {release.name}@{release.version}, not {spec}", file=str(release.manifest_path), field="metadata")
        version = version or str(release.version)

    trust_file = trust_path  # None: no checkpoint signer is trusted (mlgate ships no trust policy)
    verification = verify_trail(trail, checkpoints=CheckpointPolicy(trust_path=trust_file, extra=tuple(checkpoint_extra)))
    if verification.status == "unreadable" and verification.field != "checkpoint":
        raise InputError(verification.problem or "cannot read the audit trail", file=trail.location)
    records = select_records([rec for _w, _raw, rec in iter_records(trail)], name, version)
    if not records and release is None:
        raise InputError(f"no decision about release {spec} in the audit trail (pass --release-dir to report on the release alone)",
                         file=trail.location, field="--release")

    with_evidence = [r for r in records if isinstance(r.get("evidence_digests"), dict) and r.get("evidence_digests")]
    basis = max(with_evidence, key=lambda r: r.get("sequence") or 0) if with_evidence else None
    data = ReportData(release_name=name, release_version=version, generated_at=rfc3339(now), mlgate_version=__version__,
                      trail_location=trail.location, records=records, basis=basis,
                      model_digests=sorted({r["subject_digest"] for r in records if isinstance(r.get("subject_digest"), str)}),
                      evidence=[], manifest=release, verification=verification)
    if basis is None:
        data.notes.append("no recorded decision read any evidence for this release: the evidence below is the release directory's, "
                          "which no decision attests" if release is not None else "no recorded decision read any evidence")

    # -- the evidence files and where their bytes come from
    roles, validated = _roles_from_manifest(release) if release is not None else ({}, {})
    if release is not None and basis is not None:
        read_digest = _release_of(basis).get("manifest_digest")
        if read_digest and read_digest != release.manifest_digest:
            data.notes.append(f"the release directory's manifest (sha256 {release.manifest_digest}) is not the one decision "
                              f"{basis.get('sequence')} read ({read_digest}): file roles are taken from it; contents only from files whose "
                              f"digests match the decision's")
    if basis is not None:
        wanted = sorted(basis["evidence_digests"].items())
    else:
        wanted = [(rel, sha256_file(release.root / rel)) for rel in sorted(roles) if (release.root / rel).is_file()]
    store = getattr(trail, "evidence", None)
    for rel, digest in wanted:
        ef = EvidenceFile(rel=str(rel), digest=str(digest))
        blob = _read_store(store, ef.digest) if basis is not None and basis.get("evidence_retained") else None
        if blob is not None and hashlib.sha256(blob).hexdigest() == ef.digest:
            ef.data, ef.source = blob, "retained copy"
        elif blob is not None:
            ef.problem = f"the retained copy was altered (sha256 {hashlib.sha256(blob).hexdigest()})"
        if ef.data is None and release is not None:
            path = (release.root / ef.rel)
            try:
                local = path.resolve()
                inside = local.is_relative_to(release.root.resolve())
                blob = local.read_bytes() if inside and local.is_file() else None
            except OSError:
                blob = None
            if blob is None:
                ef.problem = ef.problem or "not retained, and not in the release directory"
            elif hashlib.sha256(blob).hexdigest() == ef.digest:
                ef.data, ef.source, ef.problem = blob, "release directory", None
            else:
                ef.problem = (ef.problem or "not retained") + f"; the release directory's copy has changed (sha256 {hashlib.sha256(blob).hexdigest()})"
        elif ef.data is None and ef.problem is None:
            ef.problem = "not retained (check --retain-evidence) and no --release-dir given"
        ef.role = roles.get(ef.rel) or _classify(ef.rel, ef.data)
        ef.dataset = validated.get(ef.rel)
        data.evidence.append(ef)

    _datasets(data, release)
    _validations(data, release)
    trust = _load_trust(trust_file, data)
    _model(data, release, trust)
    _model_card(data)
    _bias(data, policy_dir)
    _approvals(data, trust)
    _waivers(data, trust, now)
    return data


def _datasets(data: ReportData, release: Any) -> None:
    read = {e.rel: e for e in data.evidence if e.role == "dataset"}
    if release is not None:
        root = release.root.resolve()
        for ds in release.datasets:
            rel = ds.local_path.relative_to(root).as_posix() if ds.local_path is not None else None
            ef = read.pop(rel, None) if rel else None
            status = ("matches the declared digest" if ef.digest == ds.declared_sha256 else "DIFFERS from the declared digest") if ef else \
                     "not read by the decision (not shipped with the release)"
            data.datasets.append({"name": ds.name, "uri": ds.uri, "declared": ds.declared_sha256, "read": ef.digest if ef else None,
                                  "ok": bool(ef and ef.digest == ds.declared_sha256), "status": status})
    for rel, ef in sorted(read.items()):
        data.datasets.append({"name": None, "uri": rel, "declared": None, "read": ef.digest, "ok": None, "status": "read by the decision"})


def _validations(data: ReportData, release: Any) -> None:
    from mlgate.evidence.data_validation import read_validation_result

    declared = {ds.name: ds.declared_sha256 for ds in release.datasets} if release is not None else {}
    for ef in data.evidence:
        if ef.role != "validation":
            continue
        if ef.data is None:
            data.validations.append({"path": ef.rel, "digest": ef.digest, "available": False, "problem": ef.problem, "source": None})
            continue
        try:
            rec = read_validation_result(ef.data, ef.rel, datasets=declared, dataset=ef.dataset)
        except MlgateError as exc:
            data.validations.append({"path": ef.rel, "digest": ef.digest, "available": False, "problem": exc.diagnostics(), "source": ef.source})
            continue
        rec.update(path=ef.rel, digest=ef.digest, available=True, problem=None, source=ef.source)
        data.validations.append(rec)


def _model(data: ReportData, release: Any, trust: Any) -> None:
    basis = data.basis or {}
    data.model = {"digest": basis.get("subject_digest") or (data.model_digests[-1] if data.model_digests else None),
                  "storage_uri": release.storage_uri if release is not None else None,
                  "path": release.model_rel if release is not None else None, "signature": None}
    sig = next((e for e in data.evidence if e.role == "model_signature"), None)
    if sig is None:
        return
    info: dict[str, Any] = {"path": sig.rel, "digest": sig.digest, "source": sig.source, "problem": sig.problem, "key_id": None, "signer": None}
    if sig.data is not None:
        from mlgate.signing.attestation import parse_bundle

        try:
            info["key_id"] = parse_bundle(sig.data, sig.rel).hint
        except MlgateError as exc:
            info["problem"] = exc.diagnostics()
        if trust is not None and info["key_id"]:
            signer = trust.model_signer_for_key(info["key_id"])
            info["signer"] = f"{signer.name} <{signer.id}>" if signer else None
    findings = [v for v in basis.get("violations") or [] if isinstance(v, dict) and str(v.get("id", "")).startswith("MLG-SIG-")]
    info["gate"] = "; ".join(f"{v.get('id')}: {v.get('message')}" for v in findings) if findings else None
    data.model["signature"] = info


def _load_trust(trust_file: Path, data: ReportData):
    """The trust policy (approvers, model signers) of the report, or None with a note."""
    from mlgate.audit.checkpoint import load_trust_with_checkpoints

    try:
        trust = load_trust_with_checkpoints(trust_file)[0]
    except MlgateError as exc:
        data.notes.append(f"cannot load the trust policy, so approvals are not verified: {exc.diagnostics()}")
        return None
    data.trust_source = f"{trust.source} (sha256 {trust.digest[:16]})"
    return trust


def _model_card(data: ReportData) -> None:
    from mlgate.evidence.model_card import read_model_card

    ef = next((e for e in data.evidence if e.role == "model_card"), None)
    data.model_card_file = ef
    if ef is None or ef.data is None:
        return
    try:
        card = read_model_card(ef.data, ef.rel)
    except MlgateError as exc:
        card = {"valid": False, "errors": [exc.diagnostics()]}
    card["title"] = _card_title(ef.data)
    data.model_card = card


def _card_title(blob: bytes) -> str | None:
    text = blob.decode("utf-8", "replace")
    m = re.search(r"^#\s+(.+?)\s*#*\s*$", text, re.MULTILINE)
    return m.group(1)[:200] if m else None


def _bias(data: ReportData, policy_dir: Path | None) -> None:
    from mlgate.evidence.bias import read_bias_audit

    ef = next((e for e in data.evidence if e.role == "bias"), None)
    data.bias_file = ef
    if ef is None or ef.data is None:
        return
    try:
        facts = read_bias_audit(ef.data, ef.rel, digest=ef.digest)
    except MlgateError as exc:
        facts = {"valid": False, "errors": [exc.diagnostics()], "groups": [], "comparisons": []}
    data.bias = facts
    env = (data.basis or {}).get("environment")
    try:
        from mlgate.policy import load_policy

        policy = load_policy(policy_dir)
        cfg = (((policy.data.get("mlgate") or {}).get("environments") or {}).get(env) or {}).get("bias") if env else None
        if isinstance(cfg, dict):
            data.thresholds = {k: cfg.get(k) for k in ("delta", "alpha", "n_min", "non_inferiority")}
            # The policy's own revision the decision used (revision_inputs.policy); records made before it: policy_revision.
            inputs = (data.basis or {}).get("revision_inputs")
            used_policy = inputs.get("policy") if isinstance(inputs, dict) else None
            used = used_policy.get("revision") if isinstance(used_policy, dict) else (data.basis or {}).get("policy_revision")
            same = used in (policy.bundle_revision, policy.revision) and not (isinstance(inputs, dict) and inputs.get("data_overrides"))
            data.threshold_note = (f"policy data for environment {env}, policy revision {policy.bundle_revision[:16]}"
                                   + (" (the revision the decision used)" if same else
                                      f"; the decision used revision {str(used)[:16]}: these are today's thresholds, not necessarily the decision's"))
        else:
            data.threshold_note = f"no bias thresholds for environment {env!r} in the policy data"
    except MlgateError as exc:
        data.threshold_note = f"cannot load the policy: {exc.diagnostics()}"
    violations = [v for v in (data.basis or {}).get("violations") or [] if isinstance(v, dict) and str(v.get("id", "")).startswith("MLG-BIAS-")]
    # A violation a signed waiver covered is recorded as a warning carrying its waiver: still a flagged group, shown as waived.
    waived = [w for w in (data.basis or {}).get("warnings") or []
              if isinstance(w, dict) and isinstance(w.get("waiver"), dict) and str(w.get("id", "")).startswith("MLG-BIAS-")]
    ci = {(g.get("attribute"), g.get("group")): g for g in facts.get("groups") or [] if isinstance(g, dict)}
    for c in facts.get("comparisons") or []:
        if not isinstance(c, dict):
            continue
        label = f"{c.get('attribute')}={c.get('group')}"
        pattern = re.compile(re.escape(label) + r"(?=[\s,;:)\]]|$)")
        hits = [str(v.get("id")) for v in violations if pattern.search(str(v.get("message", "")))]
        waived_hits = [str(w.get("id")) for w in waived if pattern.search(str(w.get("message", "")))]
        g = ci.get((c.get("attribute"), c.get("group")), {})
        data.bias_rows.append({**c, "label": label, "ci_low": g.get("ci_low"), "ci_high": g.get("ci_high"), "flagged": bool(hits or waived_hits),
                               "violations": hits, "waived": waived_hits})


def _approvals(data: ReportData, trust: Any) -> None:
    from mlgate.evidence.approval import verify_approval

    basis_digests = (data.basis or {}).get("evidence_digests") or {}
    model = data.model.get("digest")
    for ef in data.evidence:
        if ef.role != "approval":
            continue
        if ef.data is None:
            data.approvals.append({"path": ef.rel, "digest": ef.digest, "available": False, "problem": ef.problem})
            continue
        if trust is None:
            data.approvals.append({"path": ef.rel, "digest": ef.digest, "available": False, "problem": "no trust policy to verify it with"})
            continue
        rec = verify_approval(ef.data, ef.rel, trust=trust)
        changed = sorted(rel for rel, d in (rec.get("evidence_digests") or {}).items() if basis_digests.get(rel) != d)
        rec.update(available=True, problem=None, source=ef.source, bound_to_model=(rec.get("subject_digest") == model) if rec.get("subject_digest") else None,
                   evidence_changed=changed)
        data.approvals.append(rec)
    data.approvals.sort(key=lambda a: (str(a.get("signed_at") or ""), a["path"]))


# What a decision record's waivers[] entry says about one waiver, copied for the report.
_WAIVER_FIELDS = ("printed_name", "signer_id", "role", "expires_at", "justification")


def _applications(records: list[dict[str, Any]], rel: str, digest: str | None) -> list[dict[str, Any]]:
    """Per decision that read the waiver file ``rel`` with this digest: whether the policy applied it.

    The answer is the record's own ``waivers[]`` entry (applied, the rules waived, the reason it
    did not apply); a decision that read the file but recorded no entry says nothing either way."""
    out = []
    for r in records:
        read = (r.get("evidence_digests") or {}).get(rel) if isinstance(r.get("evidence_digests"), dict) else None
        entries = [e for e in r.get("waivers") or [] if isinstance(e, dict) and e.get("path") == rel]
        if read != digest or (read is None and not entries):
            continue
        entry = entries[0] if entries else None
        out.append({"sequence": r.get("sequence"), "timestamp": r.get("timestamp"), "environment": r.get("environment"),
                    "result": r.get("result"), "entry": entry,
                    "applied": entry.get("applied") if entry else None,
                    "waived": [str(x) for x in entry.get("waived") or []] if entry else [],
                    "reason": entry.get("reason") if entry else "the decision read the file but its record has no waivers entry for it"})
    return out


def _waivers(data: ReportData, trust: Any, now: dt.datetime) -> None:
    """The release's waivers: each verified again (like approvals), with what every decision did with it."""
    from mlgate.clock import epoch_ns
    from mlgate.evidence.waiver import verify_waiver

    model = data.model.get("digest")
    now_ns = epoch_ns(now)
    known: set[tuple[str, str]] = set()
    shown: list[dict[str, Any]] = []
    for ef in data.evidence:
        if ef.role != "waiver":
            continue
        known.add((ef.rel, ef.digest))
        if ef.data is None or trust is None:
            problem = ef.problem if ef.data is None else "no trust policy to verify it with"
            w: dict[str, Any] = {"path": ef.rel, "digest": ef.digest, "available": False, "problem": problem, "source": ef.source}
        else:
            w = verify_waiver(ef.data, ef.rel, trust=trust)
            w.update(path=ef.rel, digest=ef.digest, available=True, problem=None, source=ef.source,
                     bound_to_model=(w["subject_digest"] == model) if w.get("subject_digest") else None,
                     expired_now=(w["expires_at_ns"] <= now_ns) if isinstance(w.get("expires_at_ns"), int) else None)
        w["recorded_only"] = False
        w["decisions"] = _applications(data.records, ef.rel, ef.digest)
        shown.append(w)
    # Waivers a decision recorded that the basis decision did not read (removed since, or another file at that path).
    extra: dict[tuple[str, str], dict[str, Any]] = {}
    for r in data.records:
        digests = r.get("evidence_digests") if isinstance(r.get("evidence_digests"), dict) else {}
        for e in r.get("waivers") or []:
            if not isinstance(e, dict) or not isinstance(e.get("path"), str):
                continue
            key = (e["path"], digests.get(e["path"]))
            if key in known or key in extra:
                continue
            extra[key] = {"path": key[0], "digest": key[1], "available": False, "recorded_only": True, "source": None,
                          "problem": "not among the evidence of the basis decision: known only from the decision records below"}
    for (rel, digest), w in extra.items():
        w["decisions"] = _applications(data.records, rel, digest)
        shown.append(w)
    for w in shown:
        if not w.get("available"):  # what the latest record says about it stands in for the file
            entry = next((a["entry"] for a in reversed(w["decisions"]) if a["entry"]), None) or {}
            for key in _WAIVER_FIELDS:
                w[key] = entry.get(key)
            w["rules"] = [str(x) for x in entry.get("rules") or []]
    data.waivers = sorted(shown, key=lambda w: (w["recorded_only"], str(w.get("signed_at") or ""), w["path"]))
