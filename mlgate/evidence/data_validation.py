"""Great Expectations 1.x validation results, read unchanged, as ``data_validation.records[]`` facts.

Two export shapes of the same run are read:

* ``ExpectationSuiteValidationResult.to_json_dict()`` (``results[].expectation_config.type``,
  ``statistics``, ``suite_name``, ``meta`` with the validation time and the batch);
* ``CheckpointResult.describe_dict()`` (``validation_results[].expectations[].expectation_type``;
  no suite name, no time, no batch: those facts are ``null``).

Two error channels (style.md section 5): bytes that are not JSON raise :class:`InputError`
(via :func:`mlgate.safeio.parse_json`); JSON that parses but does not conform, or that
contradicts itself (a ``success: true`` over failed results, statistics that disagree with the
results list), is a fact: ``valid: false`` with one-line errors naming the file and JSON path.
Fail closed: ``success`` is ``true`` only when the document says so *and* it is valid and
consistent.

jsonschema is imported lazily: the CLI must start fast and most commands never read evidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlgate import schemas
from mlgate.canonical import sha256_hex
from mlgate.clock import epoch_ns, parse_time, rfc3339
from mlgate.safeio import parse_json

FORMAT = "great_expectations"
SCHEMA_FILE = "gx_validation_result.schema.json"
#: At most this many schema errors are reported per file (the first ones, in document order).
MAX_ERRORS = 20

def schema_errors(doc: Any, schema_file: str, name: str) -> list[str]:
    return schemas.messages(schema_file, doc, name, limit=MAX_ERRORS)


# --------------------------------------------------------------------------- small safe getters
def _obj(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    return None


# --------------------------------------------------------------------------- expectations
def _expectation(entry: Any, *, describe_shape: bool) -> dict:
    """Normalise one expectation result of either shape to {type, success, column, unexpected_count, severity}."""
    e = _obj(entry)
    if describe_shape:
        etype = _str(e.get("expectation_type"))
        kwargs = _obj(e.get("kwargs"))
        severity = None  # describe_dict() does not carry it
    else:
        config = _obj(e.get("expectation_config"))
        etype = _str(config.get("type"))
        kwargs = _obj(config.get("kwargs"))
        severity = _str(config.get("severity"))
    result = _obj(e.get("result"))
    success = e.get("success")
    return {
        "type": etype,
        "success": success if isinstance(success, bool) else None,
        "column": _str(kwargs.get("column")),
        "unexpected_count": _count(result.get("unexpected_count")),
        "severity": severity,
    }


def _check_suite(
    name: str, where: str, success: Any, stats: Any, expectations: list[dict], errors: list[str]
) -> None:
    """Statistics and the success flag must agree with the expectation results they summarise."""
    n = len(expectations)
    ok = sum(1 for e in expectations if e["success"] is True)
    bad = n - ok
    s = _obj(stats)
    prefix = f"{where}." if where else ""
    for field, actual in (
        ("evaluated_expectations", n),
        ("successful_expectations", ok),
        ("unsuccessful_expectations", bad),
    ):
        declared = _count(s.get(field))
        if declared is not None and declared != actual:
            errors.append(
                f"{name}: {prefix}statistics.{field}: says {declared}, but the results list has {actual}"
            )
    pct = s.get("success_percent")
    if isinstance(pct, (int, float)) and not isinstance(pct, bool) and n:
        if abs(pct - ok * 100.0 / n) > 1e-6:
            errors.append(
                f"{name}: {prefix}statistics.success_percent: says {pct}, but {ok} of {n} results succeeded"
            )
    if isinstance(success, bool) and success != (bad == 0):
        if success:
            errors.append(
                f"{name}: {prefix}success: says true, but {bad} of {n} expectation results failed"
                " (success flag contradicts the results)"
            )
        else:
            errors.append(
                f"{name}: {prefix}success: says false, but all {n} expectation results succeeded"
                " (success flag contradicts the results)"
            )


# --------------------------------------------------------------------------- the reader
def _record_skeleton(name: str, digest: str) -> dict:
    return {
        "path": name,
        "digest": digest,
        "format": FORMAT,
        "valid": False,
        "errors": [],
        "success": False,
        "suite_name": None,
        "evaluated": 0,
        "successful": 0,
        "unsuccessful": 0,
        "failed_expectations": [],
        "validated_at": None,
        "validated_at_ns": None,
        "gx_version": None,
        "dataset": None,
    }


def read_validation_result(
    data: bytes,
    name: str,
    *,
    datasets: Mapping[str, str],
    dataset: str | None = None,
    format: str | None = None,
    validated_at: str | None = None,
) -> dict:
    """Read one GX 1.x validation result (either export shape) into one ``data_validation.records[]`` entry.

    ``datasets`` maps the manifest's dataset names to their declared sha256. ``dataset`` is the
    manifest's own statement of which dataset this result validates; without it the record is
    linked by the GX data asset name when that equals a dataset name, else ``dataset`` is null.

    Raises :class:`mlgate.errors.InputError` only when ``data`` is not JSON text.
    """
    doc = parse_json(data, name)
    adapter = format if format is not None else detect_format(doc)
    if adapter is not None and adapter != FORMAT:
        return _read_adapter(adapter, doc, data, name, datasets, dataset, validated_at)
    record = _record_skeleton(name, sha256_hex(data))
    errors: list[str] = record["errors"]

    if not isinstance(doc, dict):
        errors.append(f"{name}: $: expected a Great Expectations validation result object, got {schemas.json_type(doc)}")
        _link_dataset(record, name, None, datasets, dataset)
        return record

    errors.extend(schema_errors(doc, SCHEMA_FILE, name))
    describe_shape = "validation_results" in doc

    expectations: list[dict] = []
    if describe_shape:
        runs = _list(doc.get("validation_results"))
        for i, run in enumerate(runs):
            run = _obj(run)
            run_exps = [_expectation(e, describe_shape=True) for e in _list(run.get("expectations"))]
            _check_suite(name, f"validation_results[{i}]", run.get("success"), run.get("statistics"), run_exps, errors)
            expectations.extend(run_exps)
        run_flags = [_obj(r).get("success") for r in runs]
        top = doc.get("success")
        if isinstance(top, bool) and all(isinstance(f, bool) for f in run_flags):
            if top != all(run_flags):
                errors.append(
                    f"{name}: success: says {str(top).lower()}, but "
                    f"{sum(1 for f in run_flags if f is False)} of {len(run_flags)} validation results failed"
                    " (success flag contradicts the results)"
                )
        cstats = _obj(doc.get("statistics"))
        ok_runs = sum(1 for f in run_flags if f is True)
        for field, actual in (
            ("evaluated_validations", len(runs)),
            ("successful_validations", ok_runs),
            ("unsuccessful_validations", len(runs) - ok_runs),
        ):
            declared = _count(cstats.get(field))
            if declared is not None and declared != actual:
                errors.append(f"{name}: statistics.{field}: says {declared}, but validation_results has {actual}")
        asset_name = None
    else:
        expectations = [_expectation(e, describe_shape=False) for e in _list(doc.get("results"))]
        _check_suite(name, "", doc.get("success"), doc.get("statistics"), expectations, errors)
        meta = _obj(doc.get("meta"))
        record["suite_name"] = _str(doc.get("suite_name"))
        version = _str(meta.get("great_expectations_version"))
        record["gx_version"] = version
        if version is not None and not version.startswith("1."):
            errors.append(
                f"{name}: meta.great_expectations_version: {version!r} is not supported; expected a Great Expectations 1.x result"
            )
        _read_time(record, name, meta, errors)
        asset_name = _str(_obj(meta.get("active_batch_definition")).get("data_asset_name"))

    record["evaluated"] = len(expectations)
    record["successful"] = sum(1 for e in expectations if e["success"] is True)
    record["unsuccessful"] = record["evaluated"] - record["successful"]
    record["failed_expectations"] = [
        {k: e[k] for k in ("type", "column", "unexpected_count", "severity")}
        for e in expectations
        if e["success"] is not True
    ]

    if record["validated_at"] is None and validated_at is not None:
        _read_given_time(record, name, validated_at, errors)
    _link_dataset(record, name, asset_name, datasets, dataset)
    _require_checks(record, name, errors)

    record["valid"] = not errors
    # Fail closed: a document that does not conform or contradicts itself never reports success.
    record["success"] = bool(record["valid"] and doc.get("success") is True and record["unsuccessful"] == 0)
    return record


# --------------------------------------------------------------------------- other formats (issue 7)
def detect_format(doc: Any) -> str | None:
    """The adapter for a parsed document: GX when it has GX's result lists, else the first
    adapter whose shape matches; None leaves the document to the GX reader (and its errors)."""
    from mlgate.evidence import evidently, pandera, tfdv

    if not isinstance(doc, dict) or "results" in doc or "validation_results" in doc:
        return None
    for module in (evidently, pandera, tfdv):
        if module.looks_like(doc):
            return module.FORMAT
    return None


def _read_adapter(
    fmt: str, doc: Any, data: bytes, name: str, datasets: Mapping[str, str], dataset: str | None, validated_at: str | None
) -> dict:
    """Evidently, pandera and TFDV results, normalised to the same record as a GX result."""
    from mlgate.evidence import evidently, pandera, tfdv

    module = {m.FORMAT: m for m in (evidently, pandera, tfdv)}[fmt]
    record = _record_skeleton(name, sha256_hex(data))
    record["format"] = fmt
    errors: list[str] = record["errors"]
    verdict = None
    # An empty object is a pandera or TFDV report without errors: a pass, when the manifest says which.
    empty_pass = doc == {} and fmt in (pandera.FORMAT, tfdv.FORMAT)
    if not isinstance(doc, dict):
        errors.append(f"{name}: $: expected a {fmt} result object, got {schemas.json_type(doc)}")
    elif not empty_pass and not module.looks_like(doc):
        errors.append(f"{name}: $: the manifest names format {fmt}, but the document does not have its shape")
    else:
        verdict = module.read(doc, name, record)
    own_time = record.pop("_document_time", None)
    if own_time is not None:
        _read_given_time(record, name, own_time, errors, field="timestamp")
    elif validated_at is not None:
        _read_given_time(record, name, validated_at, errors)
    _link_dataset(record, name, None, datasets, dataset)
    _require_checks(record, name, errors)
    record["valid"] = not errors
    record["success"] = bool(record["valid"] and verdict is not False and record["unsuccessful"] == 0)
    return record


def _require_checks(record: dict, name: str, errors: list[str]) -> None:
    """A result in which no check ran proves nothing about the data: refused (fail closed). This
    covers an empty GX suite and the empty pandera or TFDV report (``{}``), which those tools
    cannot tell apart from a validation that never happened."""
    if not errors and record["evaluated"] == 0:
        errors.append(f"{name}: $: no expectation was evaluated; a result with no checks cannot show that the data was validated")


def _read_given_time(record: dict, name: str, raw: str, errors: list[str], *, field: str = "validatedAt (manifest)") -> None:
    try:
        ts = parse_time(raw)
    except (ValueError, OverflowError) as exc:
        errors.append(f"{name}: {field}: not an RFC 3339 timestamp with a timezone ({' '.join(str(exc).split())[:120]})")
        return
    record["validated_at"] = rfc3339(ts)
    record["validated_at_ns"] = epoch_ns(ts)


def _read_time(record: dict, name: str, meta: dict, errors: list[str]) -> None:
    field, raw = "meta.validation_time", meta.get("validation_time")
    if not isinstance(raw, str):
        field, raw = "meta.run_id.run_time", _obj(meta.get("run_id")).get("run_time")
    if not isinstance(raw, str):
        return  # unknown time: null in both forms
    try:
        ts = parse_time(raw)
    except (ValueError, OverflowError) as exc:
        errors.append(f"{name}: {field}: not an RFC 3339 timestamp with a timezone ({' '.join(str(exc).split())[:120]})")
        return
    record["validated_at"] = rfc3339(ts)
    record["validated_at_ns"] = epoch_ns(ts)


def _link_dataset(
    record: dict, name: str, asset_name: str | None, datasets: Mapping[str, str], dataset: str | None
) -> None:
    if dataset is not None:
        if dataset in datasets:
            record["dataset"] = {"name": dataset, "digest": datasets[dataset]}
        else:
            known = ", ".join(sorted(datasets)) or "none"
            record["errors"].append(
                f"{name}: dataset: {dataset!r} is not a dataset of the manifest (declared: {known})"
            )
        return
    if asset_name is not None and asset_name in datasets:
        record["dataset"] = {"name": asset_name, "digest": datasets[asset_name]}
