"""Renderers for ``mlgate policy test`` and ``mlgate policy lint``: one function per format."""

from __future__ import annotations

import json
from typing import Any, Callable
from xml.etree import ElementTree as ET

from mlgate.policytools.testing import ERROR, FAIL, PASS, TestRun, ranges

TEST_FORMATS = ("text", "json", "junit")
LINT_FORMATS = ("text", "json")


# --- policy test ----------------------------------------------------------------------------


def test_text(run: TestRun, *, verbose: bool = True) -> str:
    lines = []
    for r in run.results:
        if r.status == PASS and not verbose:
            continue
        label = {PASS: "PASS", FAIL: "FAIL", ERROR: "ERROR"}[r.status]
        tail = f": {r.detail}" if r.detail else ""
        lines.append(f"{label} {r.test.file}:{r.test.line}: {r.test.id}{tail}")
    c = run.counts
    lines.append(
        f"{len(run.results)} tests: {c.get(PASS, 0)} passed, {c.get(FAIL, 0)} failed, {c.get(ERROR, 0)} errors "
        f"({run.duration_s:.2f} s)"
    )
    if run.coverage is not None:
        lines.append("coverage (lines of rule bodies evaluated by the tests):")
        for f in run.coverage.files:
            marker = " (test)" if f.is_test else ""
            total = len(f.covered) + len(f.not_covered)
            line = f"  {f.file}{marker}: {f.percent:.1f}% ({len(f.covered)}/{total})"
            if f.not_covered:
                line += f"; not covered: {ranges(f.not_covered)}"
            lines.append(line)
        cov = run.coverage
        lines.append(f"coverage of the policy modules: {cov.percent:.2f}% ({cov.covered_lines}/{cov.total_lines} lines)")
        if run.threshold is not None:
            verdict = "below" if run.below_threshold else "meets"
            lines.append(f"coverage {cov.percent:.2f}% {verdict} the threshold {run.threshold:g}%")
    return "\n".join(lines)


def _test_dict(run: TestRun) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "root": run.root,
        "passed": run.passed,
        "summary": {"tests": len(run.results), **{k: run.counts.get(k, 0) for k in (PASS, FAIL, ERROR)}},
        "tests": [
            {
                "id": r.test.id,
                "package": r.test.package,
                "name": r.test.name,
                "file": r.test.file,
                "line": r.test.line,
                "status": r.status,
                "detail": r.detail,
                "duration_s": round(r.duration_s, 6),
            }
            for r in run.results
        ],
    }
    if run.coverage is not None:
        doc["coverage"] = {
            "percent": round(run.coverage.percent, 2),
            "covered_lines": run.coverage.covered_lines,
            "total_lines": run.coverage.total_lines,
            "scope": "policy modules (*_test.rego excluded)",
            "files": [
                {
                    "file": f.file,
                    "is_test": f.is_test,
                    "percent": round(f.percent, 2),
                    "covered": list(f.covered),
                    "not_covered": list(f.not_covered),
                }
                for f in run.coverage.files
            ],
        }
    if run.threshold is not None:
        doc["threshold"] = run.threshold
        doc["below_threshold"] = run.below_threshold
    return doc


def test_json(run: TestRun) -> str:
    return json.dumps(_test_dict(run), indent=2, sort_keys=True)


def test_junit(run: TestRun) -> str:
    suites = ET.Element("testsuites", name="mlgate policy test", tests=str(len(run.results)))
    by_file: dict[str, list] = {}
    for r in run.results:
        by_file.setdefault(r.test.file, []).append(r)
    failures = errors = 0
    for file, results in by_file.items():
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=file,
            tests=str(len(results)),
            failures=str(sum(r.status == FAIL for r in results)),
            errors=str(sum(r.status == ERROR for r in results)),
            time=f"{sum(r.duration_s for r in results):.6f}",
        )
        for r in results:
            case = ET.SubElement(
                suite, "testcase", classname=r.test.package, name=r.test.name, file=r.test.file, line=str(r.test.line),
                time=f"{r.duration_s:.6f}",
            )
            if r.status == FAIL:
                failures += 1
                ET.SubElement(case, "failure", message=f"{r.test.file}:{r.test.line}: {r.detail}")
            elif r.status == ERROR:
                errors += 1
                ET.SubElement(case, "error", message=f"{r.test.file}:{r.test.line}: {r.detail}")
    if run.coverage is not None:
        # Coverage has no JUnit element: a test case that fails below the threshold.
        suite = ET.SubElement(suites, "testsuite", name="coverage", tests="1", failures=str(int(run.below_threshold)), errors="0")
        case = ET.SubElement(suite, "testcase", classname="coverage", name="line coverage of the policy modules")
        text = f"{run.coverage.percent:.2f}% ({run.coverage.covered_lines}/{run.coverage.total_lines} lines)"
        if run.below_threshold:
            failures += 1
            ET.SubElement(case, "failure", message=f"coverage {text} is below the threshold {run.threshold:g}%")
        else:
            ET.SubElement(case, "system-out").text = text
    suites.set("failures", str(failures))
    suites.set("errors", str(errors))
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)


def test_renderer(fmt: str) -> Callable[[TestRun], str]:
    return {"text": test_text, "json": test_json, "junit": test_junit}[fmt]
