"""The input document ``mlgate.dev/input/v1`` (docs/input-document.md): facts only."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from mlgate.canonical import canonical_json
from mlgate.clock import epoch_ns, rfc3339
from mlgate.evidence import Facts
from mlgate.manifest import Release

INPUT_VERSION = "mlgate.dev/input/v1"


@dataclass(frozen=True)
class Request:
    source: str = "cli"  # cli | admission
    user: str | None = None
    namespace: str | None = None
    operation: str = "promote"
    dry_run: bool = False
    # Admission only; recorded in the audit record, not part of the input document (the policy never sees them).
    mode: str | None = None  # the environment's webhook mode: enforce | warn | audit
    groups: tuple[str, ...] = ()  # the Kubernetes userInfo groups of the actor

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "user": self.user, "namespace": self.namespace, "operation": self.operation, "dry_run": self.dry_run}


def build_input(*, release: Release, facts: Facts, environment: str, now: dt.datetime, request: Request) -> dict[str, Any]:
    return {
        "apiVersion": INPUT_VERSION,
        "environment": environment,
        "evaluated_at": rfc3339(now),
        "evaluated_at_ns": epoch_ns(now),
        "request": request.as_dict(),
        "release": {
            "name": release.name,
            "version": release.version,
            "owner": release.owner,
            "manifest_digest": release.manifest_digest,
        },
        "model": facts.model,
        "datasets": facts.datasets,
        "evidence_files": facts.evidence_files,
        "evidence": facts.evidence,
        "lineage": lineage_facts(release.lineage),
        "privacy": privacy_facts(release.privacy),
    }


def lineage_facts(lineage: dict[str, Any] | None) -> dict[str, Any]:
    """spec.lineage as facts, with only the keys the manifest gives (a missing key stays missing)."""
    if not lineage:
        return {}
    out: dict[str, Any] = {"kind": lineage.get("kind")}
    if "predecessor" in lineage:
        pred = lineage["predecessor"]
        out["predecessor"] = {"version": pred.get("version"), "model_digest": pred.get("modelDigest")}
    if "pccpModification" in lineage:
        out["pccp_modification"] = lineage["pccpModification"]
    return out


def privacy_facts(privacy: dict[str, Any] | None) -> dict[str, Any]:
    """spec.privacy as facts: the de-identification declaration, when made."""
    deid = (privacy or {}).get("deidentification")
    if not deid:
        return {}
    return {"deidentification": {"method": deid.get("method"), "statement": deid.get("statement"), "source": "manifest"}}


#: The input document's keys whose values are the collected facts themselves (shared, cached).
FACT_KEYS = frozenset({"model", "datasets", "evidence_files", "evidence"})


def canonical_input(doc: dict[str, Any], facts: Facts, texts: dict[str, bytes] | None = None) -> bytes:
    """``canonical_json(doc)``, byte for byte, with the facts' parts (about 90% of the bytes)
    serialised once per Facts instead of once per decision. Any other value, and a fact the
    document does not hold as the very object the Facts hold, is serialised here (and put into
    ``texts``, key -> its canonical JSON, when given)."""
    parts = []
    for key in sorted(doc):
        value = doc[key]
        if key in FACT_KEYS and value is getattr(facts, key):
            text = facts.canonical(key)
        else:
            text = canonical_json(value)
            if texts is not None:
                texts[key] = text
        parts.append(canonical_json(key) + b":" + text)
    return b"{" + b",".join(parts) + b"}"
