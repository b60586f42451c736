"""GitHub Actions workflow commands: one ``::error`` annotation per violation, one ``::warning``
per warning, located at the manifest (or the evidence file a finding names), and a ``::notice``
with the verdict and decision id.

The runner reads every line of a step's output as a possible command, so a value must never end
its line or close its command early. The escaping is the one ``@actions/core`` applies
(``escapeData`` and ``escapeProperty`` in ``packages/core/src/command.ts``): in the message ``%``,
CR and LF become ``%25``, ``%0D`` and ``%0A``; in a property (``file``, ``title``) ``:`` and ``,``
also become ``%3A`` and ``%2C``. Before that, every string from a manifest or evidence file goes
through :func:`~mlgate.safeio.printable`, so no control or bidi character reaches the log either:
a finding's own text can neither inject a second command nor repaint the page."""

from __future__ import annotations

from pathlib import PurePosixPath

from mlgate.gate import Decision, Finding
from mlgate.safeio import printable

_VERDICT = {"allow": "ALLOWED", "deny": "DENIED", "error": "ERROR (denied)"}


def escape_data(text: str) -> str:
    """A workflow command's message (after ``::``)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value (``file=``, ``title=``)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _command(kind: str, message: str, **properties: str | None) -> str:
    props = ",".join(f"{key}={escape_property(printable(value))}" for key, value in properties.items() if value)
    return f"::{kind}{' ' + props if props else ''}::{escape_data(message)}"


def _file(decision: Decision, subject: str | None) -> str:
    manifest = PurePosixPath((decision.manifest_path or "mlgate.yaml").replace("\\", "/"))
    if subject and "/" in subject and not subject.startswith("/") and "://" not in subject:
        return str(manifest.parent / subject)
    return str(manifest)


def _message(f: Finding, *extra: str | None) -> str:
    # printable() per line: mlgate's own line breaks survive (as %0A), a finding's cannot.
    lines = [f"[{f.severity}] {f.message}", *extra]
    return "\n".join(printable(line) for line in lines if line)


def render(decision: Decision) -> str:
    out = []
    for v in decision.violations:
        out.append(_command("error", _message(v, f"remediation: {v.remediation}" if v.remediation else None),
                            file=_file(decision, v.subject), title=v.id))
    for w in decision.warnings:
        waiver = w.waiver or {}
        note = None
        if waiver:
            note = (f"waived by {waiver.get('printed_name') or '?'} ({waiver.get('role') or '?'}) until "
                    f"{waiver.get('expires_at') or '?'}: {waiver.get('justification') or ''}")
        out.append(_command("warning", _message(w, note), file=_file(decision, w.subject), title=w.id))
    if decision.result == "error":
        out.append(_command("error", printable(decision.error or "error"), file=_file(decision, None), title="mlgate error"))
    rel = decision.release or {}
    target = f"{rel.get('name', '?')} {rel.get('version', '')}".strip() if rel else "release"
    summary = (f"{_VERDICT[decision.result]} {target} -> {decision.environment} (decision {decision.decision_id}; "
               f"{len(decision.violations)} violation(s), {len(decision.warnings)} warning(s))")
    out.append(_command("notice", printable(summary), title="mlgate"))
    return "\n".join(out)
