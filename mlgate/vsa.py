"""A decision as a signed SLSA Verification Summary Attestation (``mlgate check --attest KEY``).

Maps a :class:`~mlgate.gate.Decision` onto :func:`mlgate.signing.summary.make_summary` and signs
it. It sits above the gate (it reads the decision); the core never imports it. The format and
its verification are :mod:`mlgate.signing.summary`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlgate.errors import InputError
from mlgate.signing.summary import DEFAULT_VERIFIER_ID, make_summary, sign_summary, write_summary


def _policy_uri(decision: Any) -> str:
    policy = (decision.revision_inputs or {}).get("policy") or {}
    oci = policy.get("oci")
    if isinstance(oci, dict) and oci.get("reference"):
        return str(oci["reference"])
    if isinstance(oci, str) and oci:
        return oci
    path = policy.get("path")
    if not path or path == "bundled":  # the library shipped with this mlgate
        from mlgate import __version__

        return f"https://mlgate.dev/policies/bundled@{__version__}"
    if "://" in str(path):
        return str(path)
    return Path(path).resolve().as_uri()


def _resource_uri(release_dir: Path) -> str:
    from mlgate.manifest import load_release

    release = load_release(release_dir)
    return release.storage_uri or Path(release_dir).resolve().as_uri()


def summary_statement(decision: Any, release_dir: Path, *, verifier_id: str = DEFAULT_VERIFIER_ID) -> dict[str, Any]:
    """The unsigned statement for ``decision`` about the release in ``release_dir``. Only an
    evaluated decision (allow or deny) has one: an error names no model to summarise."""
    if decision.result not in ("allow", "deny") or not decision.model_digest or not decision.release:
        raise InputError(f"no verification summary for a decision that is {decision.result} "
                         f"({decision.error or 'not evaluated'}): nothing was verified", field="--attest")
    return make_summary(
        release_name=decision.release["name"], release_version=decision.release["version"],
        model_digest=decision.model_digest, environment=decision.environment, time_verified=decision.evaluated_at,
        resource_uri=_resource_uri(release_dir), policy_uri=_policy_uri(decision),
        policy_revision=decision.policy_revision, inputs=dict(decision.evidence_digests),
        passed=decision.result == "allow", decision_id=decision.decision_id,
        violations=[f.id for f in decision.violations], warnings=[f.id for f in decision.warnings], verifier_id=verifier_id,
        static=_static(decision),
    )


def _static(decision: Any) -> dict[str, Any] | None:
    """The decision's time-independent findings with their key and policy (``check --attest`` evaluates with the time split)."""
    import json

    static = getattr(decision, "static", None) or {}
    if not static.get("key") or not static.get("findings") or not static.get("policy"):
        return None
    return {"key": static["key"], "policyRevision": static["policy"], "split": static.get("split"),
            "findings": json.loads(static["findings"])}


def attest(decision: Any, release_dir: Path, private_key: Any, out: Path, *, verifier_id: str = DEFAULT_VERIFIER_ID) -> Path:
    """Sign the decision's summary with ``private_key`` and write it to ``out``."""
    return write_summary(out, sign_summary(summary_statement(decision, release_dir, verifier_id=verifier_id), private_key))
