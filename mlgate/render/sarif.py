"""SARIF 2.1.0: one rule per violation id, one result per violation, located at the manifest.

Every string is passed through :func:`~mlgate.safeio.printable` (a code-scanning UI shows the
messages as text: no control or bidi character from a manifest reaches it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlgate import __version__
from mlgate.gate import Decision
from mlgate.safeio import dumps_json, printable

_LEVEL = {"low": "note", "medium": "warning", "high": "error", "critical": "error"}


def _uri(decision: Decision, subject: str | None) -> str:
    manifest = decision.manifest_path or "mlgate.yaml"
    if subject and "/" in subject and not subject.startswith("/"):
        return (Path(manifest).parent / subject).as_posix()
    return Path(manifest).as_posix()


def _neutral(value: Any) -> Any:
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(k): _neutral(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_neutral(v) for v in value]
    return value


def render(decision: Decision) -> str:
    rules: dict[str, dict] = {}
    results = []
    findings = [(v, _LEVEL.get(v.severity, "error")) for v in decision.violations]
    findings += [(w, "warning" if w.severity in ("high", "critical") else "note") for w in decision.warnings]
    for f, level in findings:
        rules.setdefault(f.id, {
            "id": f.id,
            "shortDescription": {"text": f.id},
            "help": {"text": f.remediation or ""},
            "properties": {"tags": list(f.controls), "severity": f.severity},
        })
        result = {
            "ruleId": f.id,
            "level": level,
            "message": {"text": f.message},
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": _uri(decision, f.subject)}}}],
        }
        if f.waiver is not None:  # a violation a signed waiver covers: SARIF's accepted external suppression
            result["suppressions"] = [{
                "kind": "external", "status": "accepted", "justification": f.waiver.get("justification") or "",
                "location": {"physicalLocation": {"artifactLocation": {"uri": _uri(decision, f.waiver.get("path"))}}},
                "properties": {k: f.waiver.get(k) for k in ("signer_id", "printed_name", "role", "signed_at", "expires_at")},
            }]
        results.append(result)
    if decision.result == "error":
        rules.setdefault("MLG-ERROR", {"id": "MLG-ERROR", "shortDescription": {"text": "mlgate could not evaluate the release"}})
        results.append({"ruleId": "MLG-ERROR", "level": "error", "message": {"text": decision.error or "error"},
                        "locations": [{"physicalLocation": {"artifactLocation": {"uri": _uri(decision, None)}}}]})
    doc = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "mlgate", "version": __version__, "informationUri": "https://mlgate.dev",
                                "rules": sorted(rules.values(), key=lambda r: r["id"])}},
            "invocations": [{"executionSuccessful": decision.result != "error",
                             "properties": {"decision_id": decision.decision_id, "result": decision.result,
                                            "environment": decision.environment}}],
            "results": results,
        }],
    }
    return dumps_json(_neutral(doc), indent=2)
