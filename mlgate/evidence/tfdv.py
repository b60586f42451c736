"""TensorFlow Data Validation anomalies as ``data_validation.records[]`` facts (the GX facts' shape).

Read: the JSON form of the ``tensorflow_metadata.proto.v0.Anomalies`` message that
``tfdv.validate_statistics`` returns (``google.protobuf.json_format.MessageToJson``, camelCase,
or with ``preserving_proto_field_name=True``, snake_case): ``anomalyInfo`` maps a feature to
``{description, severity, shortDescription, reason: [{type, shortDescription, description}]}``,
``datasetAnomalyInfo`` holds dataset-level anomalies, ``dataMissing`` says the statistics were
empty. An empty anomaly map is a pass. TFDV does not install on this platform (it needs
TensorFlow), so this reader follows the message's documented shape; see tests/test_adapters.py.
Each anomalous feature is one failed expectation (severity ``critical`` for ERROR, ``warning``
otherwise, both fail); the number of evaluated features is the baseline schema's feature count
when the document carries it, else the number of anomalies.
"""

from __future__ import annotations

from typing import Any

FORMAT = "tfdv"
KEYS = {"anomalyInfo", "anomaly_info", "datasetAnomalyInfo", "dataset_anomaly_info", "baselineSchema", "baseline_schema",
        "anomalyNameFormat", "anomaly_name_format", "dataMissing", "data_missing", "driftSkewInfo", "drift_skew_info"}
SEVERITIES = {"ERROR", "WARNING", "UNKNOWN"}


def looks_like(doc: Any) -> bool:
    return isinstance(doc, dict) and bool(doc) and bool(set(doc) & {"anomalyInfo", "anomaly_info", "datasetAnomalyInfo", "dataset_anomaly_info", "anomalyNameFormat", "anomaly_name_format", "baselineSchema", "baseline_schema"})


def _get(doc: dict, camel: str, snake: str) -> Any:
    return doc.get(camel, doc.get(snake))


def read(doc: dict, name: str, record: dict) -> bool | None:
    errors: list[str] = record["errors"]
    for key in doc:
        if key not in KEYS:
            errors.append(f"{name}: {str(key)[:40]}: unexpected field for a TFDV Anomalies message")
    failures = []
    for field, camel, snake in (("anomalyInfo", "anomalyInfo", "anomaly_info"), ("datasetAnomalyInfo", "datasetAnomalyInfo", "dataset_anomaly_info")):
        info = _get(doc, camel, snake)
        if info is None:
            continue
        if not isinstance(info, dict):
            errors.append(f"{name}: {field}: expected a map of anomalies")
            continue
        for feature, anomaly in sorted(info.items()):
            if not isinstance(anomaly, dict):
                errors.append(f"{name}: {field}.{feature}: expected an anomaly object")
                continue
            severity = anomaly.get("severity", "UNKNOWN")
            if severity not in SEVERITIES:
                errors.append(f"{name}: {field}.{feature}.severity: got {str(severity)[:30]!r}, expected ERROR, WARNING or UNKNOWN")
            reasons = anomaly.get("reason") if isinstance(anomaly.get("reason"), list) else []
            kinds = [r.get("type") for r in reasons if isinstance(r, dict) and isinstance(r.get("type"), str)]
            failures.append({
                "type": ", ".join(kinds) or (anomaly.get("shortDescription") if isinstance(anomaly.get("shortDescription"), str) else "anomaly"),
                "column": None if field == "datasetAnomalyInfo" else str(feature), "unexpected_count": None,
                "severity": "critical" if severity == "ERROR" else "warning",
            })
    missing = _get(doc, "dataMissing", "data_missing")
    if missing is True:
        failures.append({"type": "DATA_MISSING", "column": None, "unexpected_count": None, "severity": "critical"})
    baseline = _get(doc, "baselineSchema", "baseline_schema")
    features = baseline.get("feature") if isinstance(baseline, dict) else None
    record["evaluated"] = max(len(features), len(failures)) if isinstance(features, list) else len(failures)
    record["unsuccessful"] = len(failures)
    record["successful"] = record["evaluated"] - len(failures)
    record["failed_expectations"] = failures
    return not failures
