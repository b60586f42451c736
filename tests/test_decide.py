"""decide() is the only place that allows; everything but a literal true denies."""

from __future__ import annotations

import pytest

from mlgate.errors import PolicyError
from mlgate.gate import decide

V = {"id": "MLG-X-001", "message": "bad", "severity": "high", "controls": ["GMLP-3"], "remediation": "fix"}


def test_literal_true_without_violations_allows():
    allowed, violations, warnings = decide({"allow": True, "violations": [], "warnings": []})
    assert allowed and not violations and not warnings


@pytest.mark.parametrize("value", ["true", 1, 1.0, "yes", None, [True], {"x": True}])
def test_truthy_non_literal_denies(value):
    allowed, violations, _ = decide({"allow": value, "violations": []})
    assert not allowed
    assert violations[0].id == "MLG-CORE-002"


def test_missing_allow_denies():
    allowed, violations, _ = decide({"violations": []})
    assert not allowed and violations


def test_allow_with_violations_is_contradictory_and_denies():
    allowed, violations, _ = decide({"allow": True, "violations": [V]})
    assert not allowed
    assert {v.id for v in violations} == {"MLG-X-001", "MLG-CORE-001"}


@pytest.mark.parametrize("raw", [True, None, [], "allow", 1])
def test_non_object_decision_is_policy_error(raw):
    with pytest.raises(PolicyError):
        decide(raw)


@pytest.mark.parametrize("violations", ["x", [1], [{"id": 1, "message": "m"}], [{"id": "a"}]])
def test_malformed_violations_are_policy_errors(violations):
    with pytest.raises(PolicyError):
        decide({"allow": False, "violations": violations})


def test_violations_sorted_and_messages_one_line():
    allowed, violations, _ = decide({"allow": False, "violations": [
        {"id": "MLG-B-002", "message": "two\nlines"}, {"id": "MLG-A-001", "message": "a"}]})
    assert [v.id for v in violations] == ["MLG-A-001", "MLG-B-002"]
    assert violations[1].message == "two lines"
    assert violations[1].severity == "high"  # unknown severities are treated as high, never dropped


def test_non_finite_fact_is_an_error_decision(tmp_path, monkeypatch):
    """A NaN that slipped into the facts cannot be hashed canonically: error (deny), recorded."""
    import shutil

    from mlgate import evidence
    from mlgate.audit import FileAuditSink
    from mlgate.gate import GateOptions, check

    from conftest import EXAMPLES

    shutil.copytree(EXAMPLES / "readmission-risk", tmp_path / "r")
    original = evidence.collect

    def with_nan(release, trust):
        facts = original(release, trust)
        facts.model["file_count"] = float("nan")
        return facts

    monkeypatch.setattr(evidence, "collect", with_nan)
    decision = check(tmp_path / "r", GateOptions(environment="production"), FileAuditSink(tmp_path / "a.jsonl"))
    assert decision.result == "error" and "not canonical JSON" in decision.error
    assert decision.audit is not None and decision.audit.sequence == 1
