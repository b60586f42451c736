"""JUnit XML: one test case per violation (failed) and one for the overall decision."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from mlgate.gate import Decision


def render(decision: Decision) -> str:
    rel = decision.release or {}
    suite_name = f"mlgate {rel.get('name', 'release')} {rel.get('version', '')} {decision.environment}".replace("  ", " ")
    failures = len(decision.violations) + (0 if decision.allowed else 1)
    suites = ET.Element("testsuites", name="mlgate", tests=str(len(decision.violations) + 1), failures=str(failures),
                        errors="1" if decision.result == "error" else "0")
    suite = ET.SubElement(suites, "testsuite", name=suite_name, tests=str(len(decision.violations) + 1),
                          failures=str(failures), errors="1" if decision.result == "error" else "0",
                          timestamp=decision.evaluated_at.strftime("%Y-%m-%dT%H:%M:%S"))
    props = ET.SubElement(suite, "properties")
    for key, value in (("decision_id", decision.decision_id), ("model_digest", decision.model_digest),
                       ("policy_revision", decision.policy_revision)):
        if value:
            ET.SubElement(props, "property", name=key, value=value)
    overall = ET.SubElement(suite, "testcase", classname="mlgate.decision", name=f"promote to {decision.environment}")
    if decision.result == "error":
        ET.SubElement(overall, "error", message=decision.error or "error", type="error").text = decision.error
    elif not decision.allowed:
        ET.SubElement(overall, "failure", message=f"denied: {len(decision.violations)} violation(s)", type="denied")
    for v in decision.violations:
        case = ET.SubElement(suite, "testcase", classname=f"mlgate.{v.id}", name=v.message[:200])
        failure = ET.SubElement(case, "failure", message=v.message, type=v.severity)
        failure.text = "\n".join(filter(None, [v.message, f"remediation: {v.remediation}" if v.remediation else None,
                                                 f"controls: {', '.join(v.controls)}" if v.controls else None]))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode")
