"""Evidently reports and test suites as ``data_validation.records[]`` facts (the GX facts' shape).

Two shapes are read unchanged:

* Evidently 0.7 (``Report(...).run(...)``: ``snapshot.dict()`` / ``snapshot.json()``):
  ``metrics[]`` (id, metric_name, config, value) and ``tests[]`` (name, description, status,
  ``metric_config.metric_id``, ``test_config.is_critical``);
* Evidently 0.4 ``TestSuite.json()``: ``tests[]`` (name, description, status, group, parameters)
  and ``summary`` (all_passed, total_tests, success_tests, failed_tests, by_status).

Each test is one expectation. Status SUCCESS succeeds; FAIL and ERROR fail; WARNING (a failed
non-critical test) fails too, with severity ``warning`` (as a GX expectation of severity warning
makes its suite fail). Any other status, a test whose metric id is not in ``metrics``, or a summary
that disagrees with the tests is an error: the record is not valid, so it cannot succeed.
Evidently records no dataset identity and, in these shapes, no time: the dataset comes from the
manifest's ``dataset:``, the time from its ``validatedAt:`` (otherwise it is null and the
freshness rule denies).
"""

from __future__ import annotations

from typing import Any

FORMAT = "evidently"
STATUSES = {"SUCCESS", "FAIL", "WARNING", "ERROR"}


def looks_like(doc: Any) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("tests"), list) and ("metrics" in doc or "summary" in doc)


def _obj(v: Any) -> dict:
    return v if isinstance(v, dict) else {}


def read(doc: dict, name: str, record: dict) -> bool | None:
    """Fill ``record`` from an Evidently document; returns the document's own overall verdict (or None)."""
    errors: list[str] = record["errors"]
    tests = doc["tests"]
    metric_ids = {m.get("id") for m in doc.get("metrics", []) if isinstance(m, dict)} if isinstance(doc.get("metrics"), list) else None
    if "metrics" in doc and metric_ids is None:
        errors.append(f"{name}: metrics: expected a list of metric results")
    expectations = []
    for i, test in enumerate(tests):
        where = f"{name}: tests[{i}]"
        if not isinstance(test, dict):
            errors.append(f"{where}: expected an object, got {type(test).__name__}")
            continue
        status = test.get("status")
        if status not in STATUSES:
            errors.append(f"{where}.status: got {str(status)[:40]!r}, expected one of {', '.join(sorted(STATUSES))}")
        title = test.get("name") if isinstance(test.get("name"), str) else None
        if title is None:
            errors.append(f"{where}.name: expected the test's name")
        metric_config = _obj(test.get("metric_config"))
        metric_id = metric_config.get("metric_id")
        if metric_ids is not None and "metric_config" in test and metric_id not in metric_ids:
            errors.append(f"{where}.metric_config.metric_id: {str(metric_id)[:40]!r} is not the id of any metric in the report")
        params = _obj(metric_config.get("params")) or _obj(test.get("parameters"))
        column = params.get("column") if isinstance(params.get("column"), str) else None
        critical = _obj(test.get("test_config")).get("is_critical")
        if critical is None:
            critical = _obj(_obj(test.get("bound_test")).get("test")).get("is_critical")
        expectations.append({
            "type": title, "column": column, "unexpected_count": None, "status": status,
            "severity": "warning" if status == "WARNING" or critical is False else "critical",
        })

    verdict = None
    summary = doc.get("summary")
    if isinstance(summary, dict):
        by_status: dict[str, int] = {}
        for e in expectations:
            by_status[e["status"]] = by_status.get(e["status"], 0) + 1
        for field, actual in (("total_tests", len(expectations)), ("success_tests", by_status.get("SUCCESS", 0)),
                              ("failed_tests", by_status.get("FAIL", 0))):
            declared = summary.get(field)
            if isinstance(declared, int) and declared != actual:
                errors.append(f"{name}: summary.{field}: says {declared}, but the tests list has {actual}")
        if isinstance(summary.get("all_passed"), bool):
            verdict = summary["all_passed"]
            if verdict != all(e["status"] == "SUCCESS" for e in expectations):
                errors.append(f"{name}: summary.all_passed: says {str(verdict).lower()}, but the test statuses disagree")
    elif "summary" in doc:
        errors.append(f"{name}: summary: expected an object")

    record["evaluated"] = len(expectations)
    record["successful"] = sum(1 for e in expectations if e["status"] == "SUCCESS")
    record["unsuccessful"] = record["evaluated"] - record["successful"]
    record["failed_expectations"] = [
        {"type": e["type"], "column": e["column"], "unexpected_count": None, "severity": e["severity"]}
        for e in expectations if e["status"] != "SUCCESS"
    ]
    if isinstance(doc.get("timestamp"), str):
        record["_document_time"] = doc["timestamp"]
    return verdict
