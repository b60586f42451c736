"""The bias reader recomputes every interval and p-value from the record's counts (issue 14
part 6): editing the numbers of a failing subgroup (and re-signing) no longer passes."""

from __future__ import annotations

import json

import pytest

from conftest import EXAMPLES
from mlgate.evidence.bias import read_bias_audit

TRIAGE = EXAMPLES / "triage-acuity" / "evidence" / "bias_audit.json"


def _black(doc):
    return next(i for i, c in enumerate(doc["comparisons"]) if c["attribute"] == "ethnicity" and c["group"] == "Black")


@pytest.mark.parametrize("example", ["readmission-risk", "chest-xray", "triage-acuity", "triage-acuity-v2"])
def test_every_example_record_recomputes_to_itself(example):
    facts = read_bias_audit((EXAMPLES / example / "evidence" / "bias_audit.json").read_bytes(), "bias_audit.json")
    assert facts["valid"] is True, facts["errors"]


@pytest.mark.parametrize("field,value", [("p_value", 0.9), ("p_holm", 0.9), ("gap_ci_low", -0.01), ("gap_ci_high", 0.2)])
def test_an_edited_statistic_of_a_failing_subgroup_is_an_error_naming_it(field, value):
    doc = json.loads(TRIAGE.read_text())
    i = _black(doc)
    doc["comparisons"][i][field] = value
    if field == "p_value":  # keep the bookkeeping check p_holm >= p_value satisfied, as an attacker would
        doc["comparisons"][i]["p_holm"] = 0.95
    facts = read_bias_audit(json.dumps(doc).encode(), "bias_audit.json")
    assert facts["valid"] is False
    assert any(f"comparisons[{i}].{field}: ethnicity=Black: recorded {value!r}, the counts give" in e for e in facts["errors"]), facts["errors"]


def test_an_edited_group_interval_is_an_error():
    doc = json.loads(TRIAGE.read_text())
    g = doc["groups"][0]
    g["ci_low"] = round(g["value"] - 0.001, 6)
    facts = read_bias_audit(json.dumps(doc).encode(), "bias_audit.json")
    assert facts["valid"] is False
    assert any("groups[0].ci_low" in e for e in facts["errors"]), facts["errors"]
