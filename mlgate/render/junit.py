"""JUnit XML: one test case per violation (failed) and one for the overall decision.

Every value is passed through :func:`~mlgate.safeio.printable`: XML 1.0 cannot carry most
control characters at all, and a CI page shows the messages as text."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from mlgate.gate import Decision
from mlgate.safeio import printable as p


def render(decision: Decision) -> str:
    rel = decision.release or {}
    suite_name = f"mlgate {rel.get('name', 'release')} {rel.get('version', '')} {decision.environment}".replace("  ", " ")
    failures = len(decision.violations) + (0 if decision.allowed else 1)
    suites = ET.Element("testsuites", name="mlgate", tests=str(len(decision.violations) + 1), failures=str(failures),
                        errors="1" if decision.result == "error" else "0")
    suite = ET.SubElement(suites, "testsuite", name=p(suite_name), tests=str(len(decision.violations) + 1),
                          failures=str(failures), errors="1" if decision.result == "error" else "0",
                          timestamp=decision.evaluated_at.strftime("%Y-%m-%dT%H:%M:%S"))
    props = ET.SubElement(suite, "properties")
    for key, value in (("decision_id", decision.decision_id), ("model_digest", decision.model_digest),
                       ("policy_revision", decision.policy_revision)):
        if value:
            ET.SubElement(props, "property", name=key, value=p(value))
    overall = ET.SubElement(suite, "testcase", classname="mlgate.decision", name=p(f"promote to {decision.environment}"))
    if decision.result == "error":
        ET.SubElement(overall, "error", message=p(decision.error or "error"), type="error").text = p(decision.error) if decision.error else None
    elif not decision.allowed:
        ET.SubElement(overall, "failure", message=f"denied: {len(decision.violations)} violation(s)", type="denied")
    for v in decision.violations:
        case = ET.SubElement(suite, "testcase", classname=p(f"mlgate.{v.id}"), name=p(v.message[:200]))
        failure = ET.SubElement(case, "failure", message=p(v.message), type=p(v.severity))
        failure.text = "\n".join(p(line) for line in filter(None, [v.message, f"remediation: {v.remediation}" if v.remediation else None,
                                                                    f"controls: {', '.join(v.controls)}" if v.controls else None]))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode")
