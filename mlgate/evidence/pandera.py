"""pandera error reports as ``data_validation.records[]`` facts (the GX facts' shape).

Read unchanged: ``SchemaErrors.message`` after ``schema.validate(df, lazy=True)``, a JSON object
``{"SCHEMA" | "DATA": {ERROR_TYPE: [{"schema", "column", "check", "error"}]}}``. Every entry is one
failed check. pandera's report has no counts of the checks that passed, no time and no dataset
identity: ``evaluated`` is the number of failures, the dataset comes from the manifest's
``dataset:`` and the time from its ``validatedAt:``.

pandera writes nothing when validation passes, and an *empty* report, ``{}``, cannot be told
apart from a validation that never ran (anyone can write ``{}``): it is refused like any result
in which no check ran (issue 14). A pandera report can show that data failed validation, never
that it passed; record passes with a format that lists the checks that ran (Great Expectations,
Evidently, TFDV with its baseline schema).
"""

from __future__ import annotations

from typing import Any

FORMAT = "pandera"
CATEGORIES = ("SCHEMA", "DATA")


def looks_like(doc: Any) -> bool:
    return isinstance(doc, dict) and bool(doc) and set(doc) <= set(CATEGORIES)


def read(doc: dict, name: str, record: dict) -> bool | None:
    errors: list[str] = record["errors"]
    failures = []
    schemas_seen: set[str] = set()
    for key, groups in doc.items():
        if key not in CATEGORIES:
            errors.append(f"{name}: {str(key)[:40]}: unexpected field; a pandera error report has SCHEMA and DATA only")
            continue
        if not isinstance(groups, dict):
            errors.append(f"{name}: {key}: expected an object of error types, got {type(groups).__name__}")
            continue
        for error_type, entries in groups.items():
            where = f"{name}: {key}.{error_type}"
            if not isinstance(entries, list) or not entries:
                errors.append(f"{where}: expected a non-empty list of errors")
                continue
            for i, entry in enumerate(entries):
                if not isinstance(entry, dict) or not isinstance(entry.get("error"), str):
                    errors.append(f"{where}[{i}]: expected an object with an error message")
                    continue
                if isinstance(entry.get("schema"), str):
                    schemas_seen.add(entry["schema"])
                check = entry.get("check") if isinstance(entry.get("check"), str) else error_type
                failures.append({
                    "type": f"{error_type}: {check}", "column": entry.get("column") if isinstance(entry.get("column"), str) else None,
                    "unexpected_count": None, "severity": "critical",
                })
    record["suite_name"] = ", ".join(sorted(schemas_seen)) or None
    record["evaluated"] = len(failures)
    record["successful"] = 0
    record["unsuccessful"] = len(failures)
    record["failed_expectations"] = failures
    return not failures
