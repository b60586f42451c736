"""Data-validation adapters (issue 7 part 4): Evidently, pandera and TFDV, normalised to the GX facts.

Real tool outputs (tests/assets/adapters, written by Evidently 0.7.23 and pandera 0.35.0) are
read unchanged. Shapes built here from the documentation, and said so: Evidently passing and
WARNING variants (statuses of the real report changed), the Evidently 0.4 TestSuite JSON, and
TFDV Anomalies JSON (``MessageToJson`` of tensorflow_metadata's Anomalies; TFDV does not install
on Python 3.11 without TensorFlow).
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

from cli_helpers import check_json
from conftest import EXAMPLES
from mlgate.evidence.data_validation import read_validation_result

ASSETS = Path(__file__).parent / "assets" / "adapters"
EVIDENTLY = "evidently-0.7.23-snapshot.json"
EVIDENTLY_DICT = "evidently-0.7.23-snapshot.dict.json"
PANDERA = "pandera-0.35.0-schema-errors.message.json"
TRAIN = "a" * 64
KEYS = ("format", "valid", "errors", "success", "suite_name", "evaluated", "successful", "unsuccessful",
        "failed_expectations", "validated_at", "validated_at_ns", "gx_version", "dataset")


def load(name: str) -> dict:
    return json.loads((ASSETS / name).read_bytes())


def read(doc, name="evidence/validation_train.json", **kw):
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    kw.setdefault("datasets", {"train": TRAIN})
    kw.setdefault("dataset", "train")
    return read_validation_result(data, name, **kw)


def test_every_adapter_gives_the_gx_record_shape():
    gx = read((Path(__file__).parent / "assets" / "formats" / "gx-1.24.1-validation-result.passing.json").read_bytes())
    for record in (read((ASSETS / EVIDENTLY).read_bytes()), read((ASSETS / PANDERA).read_bytes()), read({"anomalyInfo": {}}, format="tfdv")):
        assert set(record) == set(gx)


# --------------------------------------------------------------------------- Evidently


def test_evidently_real_report_unchanged():
    r = read((ASSETS / EVIDENTLY).read_bytes(), validated_at="2026-11-20T09:00:00Z")
    assert r["format"] == "evidently" and r["valid"] is True and r["errors"] == []
    assert r["success"] is False
    assert (r["evaluated"], r["successful"], r["unsuccessful"]) == (5, 2, 3)
    assert r["failed_expectations"] == [
        {"type": "Share of Drifted Columns: Less 0.500", "column": None, "unexpected_count": None, "severity": "critical"},
        {"type": "Value Drift for column age", "column": "age", "unexpected_count": None, "severity": "critical"},
        {"type": "Column 'age' missing values: Less or Equal 3.000", "column": "age", "unexpected_count": None, "severity": "critical"},
    ]
    assert r["validated_at"] == "2026-11-20T09:00:00Z" and r["validated_at_ns"] == 1795165200000000000
    assert r["dataset"] == {"name": "train", "digest": TRAIN}
    # the two exports of the same run give the same facts
    d = read((ASSETS / EVIDENTLY_DICT).read_bytes(), validated_at="2026-11-20T09:00:00Z")
    assert {k: d[k] for k in KEYS} == {k: r[k] for k in KEYS}


def test_evidently_without_time_has_none():
    r = read((ASSETS / EVIDENTLY).read_bytes())
    assert r["validated_at"] is None and r["validated_at_ns"] is None and r["valid"] is True


def test_evidently_all_success_passes():
    doc = load(EVIDENTLY)
    for t in doc["tests"]:
        t["status"] = "SUCCESS"
    r = read(doc)
    assert r["success"] is True and r["valid"] is True and (r["evaluated"], r["successful"]) == (5, 5)


def test_evidently_warning_fails_with_warning_severity():
    doc = load(EVIDENTLY)
    for t in doc["tests"]:
        t["status"] = "SUCCESS"
    doc["tests"][3]["status"] = "WARNING"
    r = read(doc)
    assert r["success"] is False and r["valid"] is True
    assert r["failed_expectations"] == [{"type": "Column 'age' missing values: Less or Equal 3.000", "column": "age", "unexpected_count": None, "severity": "warning"}]


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda d: d["tests"][0].update(status="PASSED"), "tests[0].status: got 'PASSED'"),
        (lambda d: d["tests"][1]["metric_config"].update(metric_id="nope"), "is not the id of any metric"),
        (lambda d: d["tests"].append("x"), "tests[5]: expected an object"),
        (lambda d: d["tests"][0].pop("name"), "tests[0].name: expected the test's name"),
    ],
)
def test_evidently_malformed_is_invalid_and_never_succeeds(mutate, error):
    doc = load(EVIDENTLY)
    for t in doc["tests"]:
        t["status"] = "SUCCESS"
    mutate(doc)
    r = read(doc)
    assert r["valid"] is False and r["success"] is False
    assert any(error in e for e in r["errors"]), r["errors"]


def test_evidently_04_test_suite_shape():
    doc = {"tests": [
        {"name": "Number of Rows", "description": "...", "status": "SUCCESS", "group": "data_integrity", "parameters": {}},
        {"name": "Share of Missing Values", "description": "...", "status": "FAIL", "group": "data_integrity", "parameters": {"column": "age"}},
    ], "summary": {"all_passed": False, "total_tests": 2, "success_tests": 1, "failed_tests": 1,
                   "by_status": {"SUCCESS": 1, "FAIL": 1}}, "timestamp": "2026-11-20T08:00:00+00:00"}
    r = read(doc)
    assert r["valid"] is True and r["success"] is False and r["validated_at"] == "2026-11-20T08:00:00Z"
    assert r["failed_expectations"][0]["column"] == "age"
    liar = copy.deepcopy(doc)
    liar["summary"]["all_passed"] = True
    r = read(liar)
    assert r["valid"] is False and r["success"] is False
    assert any("summary.all_passed: says true" in e for e in r["errors"])


# --------------------------------------------------------------------------- pandera


def test_pandera_real_error_report_unchanged():
    r = read((ASSETS / PANDERA).read_bytes(), validated_at="2026-11-20T09:00:00Z")
    assert r["format"] == "pandera" and r["valid"] is True and r["success"] is False
    assert r["suite_name"] == "readmission_schema"
    assert (r["evaluated"], r["successful"], r["unsuccessful"]) == (3, 0, 3)
    assert [(f["type"], f["column"]) for f in r["failed_expectations"]] == [
        ("SERIES_CONTAINS_NULLS: not_nullable", "age"),
        ("DATAFRAME_CHECK: in_range(0, 120)", "age"),
        ("DATAFRAME_CHECK: isin(['NO', '<30', '>30'])", "readmitted"),
    ]


@pytest.mark.parametrize("fmt", ["pandera", "tfdv"])
def test_an_empty_report_is_refused_even_when_named(fmt):
    """Issue 14: `{}` declared `format: pandera` passed production; no check ran, so it proves nothing."""
    r = read(b"{}", format=fmt, validated_at="2026-11-20T09:00:00Z")
    assert r["format"] == fmt and r["valid"] is False and r["success"] is False
    assert "no expectation was evaluated" in r["errors"][0]
    r = read(b"{}")
    assert r["success"] is False and r["valid"] is False


def test_pandera_malformed_is_invalid():
    r = read({"DATA": {"DATAFRAME_CHECK": [{"column": "age"}]}})
    assert r["valid"] is False and r["success"] is False
    assert any("expected an object with an error message" in e for e in r["errors"])


def test_declared_format_must_match_the_document():
    r = read((ASSETS / PANDERA).read_bytes(), format="evidently")
    assert r["valid"] is False and r["success"] is False
    assert "the manifest names format evidently, but the document does not have its shape" in r["errors"][0]
    r = read(b"[]", format="tfdv")
    assert r["valid"] is False and "expected a tfdv result object, got list" in r["errors"][0]


# --------------------------------------------------------------------------- TFDV (documented shape)

TFDV_ANOMALIES = {
    "anomalyInfo": {
        "payment_type": {
            "description": "Examples contain values missing from the schema: Prcard (<1%).",
            "severity": "ERROR",
            "shortDescription": "Unexpected string values",
            "reason": [{"type": "ENUM_TYPE_UNEXPECTED_STRING_VALUES", "shortDescription": "Unexpected string values",
                        "description": "Examples contain values missing from the schema: Prcard (<1%)."}],
            "path": {"step": ["payment_type"]},
        },
        "company": {
            "description": "The feature was present in fewer examples than expected.",
            "severity": "WARNING",
            "shortDescription": "Column dropped",
            "reason": [{"type": "FEATURE_TYPE_LOW_FRACTION_PRESENT", "shortDescription": "Column dropped"}],
            "path": {"step": ["company"]},
        },
    },
    "anomalyNameFormat": "SERIALIZED_PATH",
    "baselineSchema": {"feature": [{"name": n} for n in ("payment_type", "company", "fare", "trip_miles")]},
}


def test_tfdv_anomalies():
    r = read(TFDV_ANOMALIES, validated_at="2026-11-20T09:00:00Z")
    assert r["format"] == "tfdv" and r["valid"] is True and r["success"] is False
    assert (r["evaluated"], r["successful"], r["unsuccessful"]) == (4, 2, 2)
    assert r["failed_expectations"] == [
        {"type": "FEATURE_TYPE_LOW_FRACTION_PRESENT", "column": "company", "unexpected_count": None, "severity": "warning"},
        {"type": "ENUM_TYPE_UNEXPECTED_STRING_VALUES", "column": "payment_type", "unexpected_count": None, "severity": "critical"},
    ]


def test_tfdv_empty_anomaly_map_passes_and_snake_case_reads_the_same():
    doc = {"anomalyNameFormat": "SERIALIZED_PATH", "baselineSchema": TFDV_ANOMALIES["baselineSchema"]}
    r = read(doc)
    assert r["success"] is True and (r["evaluated"], r["unsuccessful"]) == (4, 0)
    snake = {"anomaly_info": TFDV_ANOMALIES["anomalyInfo"], "baseline_schema": TFDV_ANOMALIES["baselineSchema"]}
    assert read(snake)["failed_expectations"] == read(TFDV_ANOMALIES)["failed_expectations"]


def test_tfdv_data_missing_and_bad_severity_fail():
    r = read({"anomalyInfo": {}, "dataMissing": True}, format="tfdv")
    assert r["success"] is False and r["failed_expectations"][0]["type"] == "DATA_MISSING"
    bad = copy.deepcopy(TFDV_ANOMALIES)
    bad["anomalyInfo"]["company"]["severity"] = "MEH"
    assert read(bad)["valid"] is False


def test_unparseable_given_time_is_an_error():
    r = read(b"{}", format="pandera", validated_at="yesterday")
    assert r["valid"] is False and "validatedAt (manifest): not an RFC 3339 timestamp" in r["errors"][0]


# --------------------------------------------------------------------------- through the gate


def test_evidently_report_in_a_release_is_judged_like_gx(tmp_path):
    release = tmp_path / "release"
    shutil.copytree(EXAMPLES / "readmission-risk", release)
    shutil.copyfile(ASSETS / EVIDENTLY, release / "evidence" / "evidently_eval.json")
    shutil.copyfile(ASSETS / PANDERA, release / "evidence" / "pandera_eval.json")
    manifest = release / "mlgate.yaml"
    manifest.write_text(manifest.read_text().replace(
        "      - {path: evidence/validation_eval.json, dataset: eval}\n",
        "      - {path: evidence/validation_eval.json, dataset: eval}\n"
        "      - {path: evidence/evidently_eval.json, dataset: eval, format: evidently, validatedAt: '2026-11-20T09:00:00Z'}\n"
        "      - {path: evidence/pandera_eval.json, dataset: eval}\n",
    ))
    code, decision, _ = check_json(release, "production", tmp_path / "a.jsonl")
    assert code == 1
    failed = {v["subject"]: v["message"] for v in decision["violations"] if v["id"] == "MLG-DATA-004"}
    assert set(failed) == {"evidence/evidently_eval.json", "evidence/pandera_eval.json"}
    assert "Value Drift for column age on age" in failed["evidence/evidently_eval.json"]
    assert "DATAFRAME_CHECK: in_range(0, 120) on age" in failed["evidence/pandera_eval.json"]
    stale = {v["subject"] for v in decision["violations"] if v["id"] == "MLG-DATA-007"}
    assert stale == {"evidence/pandera_eval.json"}  # no time in the report, none in the manifest
