"""Human output: the verdict first, then one line per violation with its remediation.

Every line is passed through :func:`~mlgate.safeio.printable`: a manifest or evidence value
cannot move the cursor, erase the verdict or recolour the report."""

from __future__ import annotations

from mlgate.gate import Decision
from mlgate.safeio import printable

_VERDICT = {"allow": "ALLOWED", "deny": "DENIED", "error": "ERROR (denied)"}


def render(decision: Decision) -> str:
    rel = decision.release or {}
    target = f"{rel.get('name', '?')} {rel.get('version', '')}".strip() if rel else "release"
    lines = [f"mlgate: {_VERDICT[decision.result]}  {target} -> {decision.environment}"]
    lines.append(f"  decision id: {decision.decision_id}")
    if decision.model_digest:
        lines.append(f"  model:       sha256:{decision.model_digest}")
    if decision.policy_revision:
        lines.append(f"  policy:      revision {decision.policy_revision[:16]} ({decision.engine} {decision.engine_version})")
    if decision.error:
        lines.append(f"  error: {decision.error}")
    if decision.violations:
        lines.append(f"violations ({len(decision.violations)}):")
        for v in decision.violations:
            lines.append(f"  x {v.id} [{v.severity}] {v.message}")
            if v.remediation:
                lines.append(f"      remediation: {v.remediation}")
    if decision.warnings:
        lines.append(f"warnings ({len(decision.warnings)}):")
        for w in decision.warnings:
            lines.append(f"  ! {w.id} [{w.severity}] {w.message}")
            if w.waiver and w.waiver.get("justification"):
                lines.append(f"      justification: {w.waiver['justification']}")
    if decision.waivers:
        lines.append("waivers:")
        for entry in decision.waivers:
            who = f"{entry.get('printed_name') or '?'} ({entry.get('role') or '?'})"
            if entry["applied"]:
                lines.append(f"  applied  {entry.get('path')}: {', '.join(entry['waived'])} waived by {who} until {entry.get('expires_at')}")
            else:
                lines.append(f"  ignored  {entry.get('path')}: {entry.get('reason')}")
    if decision.approvals:
        # 21 CFR 11.50: every shown signature carries printed name, date/time and meaning.
        lines.append("signatures:")
        for a in decision.approvals:
            status = "verified" if a.get("verified") else f"NOT verified ({a.get('reason')})"
            lines.append(f"  {a.get('printed_name') or '?'} <{a.get('signer_id') or '?'}>, {a.get('role') or '?'}: "
                         f"{a.get('meaning') or '?'} for {a.get('environment') or '?'}, signed {a.get('signed_at') or '?'} [{status}]")
    if decision.audit:
        lines.append(f"  audit: {decision.audit.location} #{decision.audit.sequence}")
    return "\n".join(printable(line) for line in lines)
