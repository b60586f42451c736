"""Evidence readers, one module per format, and the collector that turns a release into facts.

Each file is read once: its bytes are hashed (for the input document, the audit record and the
approvals' evidence binding) and handed to its reader, which never touches the disk again.

May import: the manifest, :mod:`mlgate.signing` (signed evidence is verified here),
:mod:`mlgate.provenance`, :mod:`mlgate.schemas` and the basics; never the policy engines, the
gate, the audit trail, the stores or the doors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlgate.canonical import canonical_json, sha256_hex
from mlgate.manifest import Release
from mlgate.safeio import read_bytes, sha256_regular_file

ABSENT: dict[str, Any] = {"present": False, "valid": False, "authenticated": False, "errors": []}


@dataclass(frozen=True)
class Facts:
    model: dict[str, Any]
    datasets: list[dict[str, Any]]
    evidence: dict[str, Any]
    evidence_files: dict[str, str]  # evaluated evidence (approvals excluded) -> sha256
    all_digests: dict[str, str]  # every file read, approvals and signature included (audit record)
    _canonical: dict[str, bytes] = field(default_factory=dict, init=False, repr=False, compare=False)

    def canonical(self, name: str) -> bytes:
        """Canonical JSON of one of the facts (``model``, ``datasets``, ``evidence``,
        ``evidence_files``), serialised once per Facts: the webhook reuses cached facts for
        every decision, and they are never changed once collected."""
        text = self._canonical.get(name)
        if text is None:
            text = self._canonical[name] = canonical_json(getattr(self, name))
        return text

    def digest(self, name: str) -> str:
        """sha256 of :meth:`canonical` of ``name``, computed once per Facts."""
        key = "#" + name
        value = self._canonical.get(key)
        if value is None:
            value = self._canonical[key] = sha256_hex(self.canonical(name)).encode("ascii")
        return value.decode("ascii")


def _block(records: list[dict[str, Any]], *, authenticated: bool) -> dict[str, Any]:
    errors = [e for r in records for e in r.get("errors", [])]
    return {
        "present": bool(records),
        # A record is valid when its reader said so; approval records carry no `valid` of their
        # own (verification failures are facts with a reason), so for them it means "no errors".
        "valid": bool(records) and all(r.get("valid", not r.get("errors")) for r in records),
        "authenticated": authenticated and bool(records) and all(r.get("verified", False) for r in records),
        "errors": errors,
        "records": records,
    }


def _bind(record: dict[str, Any], release: Release, verb: str) -> dict[str, Any]:
    """The signed statement's release binding judged against the release as it is now:
    ``release_binding`` is ``bound`` (identity and every manifest field as signed), ``changed``
    (``release_changes`` names each field), ``legacy`` (a statement made before bindings
    existed: identity not bound), or None when the signature did not verify. The signed
    binding itself is not passed on (the policy needs only the verdict)."""
    from mlgate.manifest import binding_verdict

    signed = record.pop("release", None)
    out = {**record, "release_binding": None, "release_changes": []}
    if record.get("verified") is not True:
        return out
    out["release_binding"], out["release_changes"] = binding_verdict(signed, release.binding or {}, verb=verb)
    return out


def collect(release: Release, trust: Any) -> Facts:
    from mlgate.evidence import approval, bias, data_validation, model_card, model_digest, model_signature, waiver

    evidence_files: dict[str, str] = {}
    all_digests: dict[str, str] = {}

    def read(path: Path, rel: str, *, evaluated: bool = True) -> bytes:
        data = read_bytes(path)
        digest = sha256_hex(data)
        all_digests[rel] = digest
        if evaluated:
            evidence_files[rel] = digest
        return data

    digest = model_digest.compute_model_digest(release.model_path)
    model = {
        "digest": digest.root,
        "path": release.model_rel,
        "file_count": digest.file_count,
        "storage_uri": release.storage_uri,
    }

    datasets = []
    for ds in release.datasets:
        actual = sha256_regular_file(ds.local_path) if ds.local_path is not None else None
        datasets.append({
            "name": ds.name,
            "uri": ds.uri,
            "declared_digest": ds.declared_sha256,
            "actual_digest": actual,
            # A local file that is missing does not match (MLG-DATA-006); only a remote uri is uncheckable (MLG-DATA-009).
            "digest_matches": False if getattr(ds, "missing", False) else None if actual is None else actual == ds.declared_sha256,
        })
        if actual is not None:
            all_digests[ds.uri] = actual

    evidence: dict[str, Any] = {}

    if release.model_card is not None:
        path, rel = release.model_card
        block = model_card.read_model_card(read(path, rel), rel)
        evidence["model_card"] = {**block, "path": rel, "digest": evidence_files[rel]}
    else:
        evidence["model_card"] = dict(ABSENT)

    declared = {ds.name: ds.declared_sha256 for ds in release.datasets}
    records = []
    for ref in release.data_validation:
        record = data_validation.read_validation_result(
            read(ref.path, ref.rel), ref.rel, datasets=declared, dataset=ref.dataset,
            format=getattr(ref, "format", None), validated_at=getattr(ref, "validated_at", None),
        )
        records.append({**record, "path": ref.rel, "digest": evidence_files[ref.rel]})
    evidence["data_validation"] = _block(records, authenticated=False)

    if release.bias_audit is not None:
        path, rel = release.bias_audit
        block = bias.read_bias_audit(read(path, rel), rel)
        evidence["bias_audit"] = {**block, "path": rel, "digest": evidence_files[rel]}
    else:
        evidence["bias_audit"] = dict(ABSENT)

    approvals = []
    for path, rel in release.approvals:
        record = approval.verify_approval(read(path, rel, evaluated=False), rel, trust=trust)
        approvals.append({**_bind(record, release, "approved"), "path": rel, "digest": all_digests[rel]})
    evidence["approvals"] = _block(approvals, authenticated=True)

    waivers = []
    for path, rel in release.waivers:
        record = waiver.verify_waiver(read(path, rel, evaluated=False), rel, trust=trust)
        waivers.append({**_bind(record, release, "waived"), "path": rel, "digest": all_digests[rel]})
    evidence["waivers"] = _block(waivers, authenticated=True)

    if release.signature_path is not None:
        rel = release.signature_rel or ""
        block = model_signature.verify_model_signature(
            read(release.signature_path, rel, evaluated=False), rel, model_path=release.model_path, digest=digest, trust=trust
        )
        evidence["model_signature"] = {**block, "path": rel, "digest": all_digests[rel]}
    else:
        evidence["model_signature"] = dict(ABSENT)

    from mlgate.provenance import provenance_facts

    evidence["provenance"] = provenance_facts(release)

    return Facts(model=model, datasets=datasets, evidence=evidence, evidence_files=evidence_files, all_digests=all_digests)
