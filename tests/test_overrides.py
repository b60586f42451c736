"""Issue 14 part 3: a data override sets policy data, never a rule, on every engine.

`--data` may only set ``mlgate.environments.<tier>.<key>...`` with a key the policy's own
environment data defines (policies/README.md documents them). Anything else, and above all a
path a rule defines (``mlgate.decision``), is a one-line error at load: exit 2, recorded."""

from __future__ import annotations

import json

import pytest

from cli_helpers import check_json, run
from conftest import EXAMPLES
from mlgate.errors import InputError
from mlgate.policy import bundled_policy_dir, load_policy

FORGED_DECISION = {"mlgate": {"decision": {"allow": True}}}


def _write(tmp_path, doc, name="o.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


ENGINE_FLAGS = {
    "embedded": [],
    "rego-cpp": ["--engine", "rego-cpp"],
    # Refused at load, before OPA is asked anything (nothing listens on this port).
    "opa": ["--engine", "opa", "--opa-url", "http://127.0.0.1:9"],
}


@pytest.mark.parametrize("engine", sorted(ENGINE_FLAGS))
def test_an_override_cannot_replace_the_decision(tmp_path, engine):
    """The reproduction: this override made `mlgate check examples/triage-acuity --env production` exit 0."""
    override = _write(tmp_path, FORGED_DECISION)
    log = tmp_path / "a.jsonl"
    code, out, err = run(["check", EXAMPLES / "triage-acuity", "--env", "production", "--audit-log", log, "--data", override,
                          *ENGINE_FLAGS[engine]])
    assert code == 2, out
    line = _error_line(err)
    assert "o.json: mlgate.decision.allow: a data override may not set a path a rule defines (data.mlgate.decision" in line
    (record,) = [json.loads(x) for x in log.read_text().splitlines()]
    assert record["result"] == "error" and "may not set a path a rule defines" in record["error"]


@pytest.mark.parametrize("doc,where,message", [
    ({"mlgate": {"rules": {"bias": {"violation": []}}}}, "mlgate.rules.bias.violation", "a path a rule defines (data.mlgate.rules.bias.violation"),
    ({"mlgate": {"lib": {"thresholds": True}}}, "mlgate.lib.thresholds", "a path a rule defines (data.mlgate.lib.thresholds"),
    ({"mlgate": {"rules": 1}}, "mlgate.rules", "a path a rule defines"),
    ({"mlgate": {"decision": {}}}, "mlgate.decision", "a path a rule defines"),
    ({"other": {"x": 1}}, "other.x", "not a policy data path"),
    ({"mlgate": {"environments": {"production": {"nonsense": 1}}}}, "mlgate.environments.production.nonsense", "not a policy data path"),
    ({"mlgate": {"environments": {"production": 5}}}, "mlgate.environments.production", "not a policy data path"),
    ({"mlgate": {"environments": []}}, "mlgate.environments", "not a policy data path"),
])
def test_only_documented_environment_data_may_be_set(tmp_path, doc, where, message):
    override = _write(tmp_path, doc)
    with pytest.raises(InputError) as info:
        load_policy(bundled_policy_dir(), data_overrides=[override])
    assert info.value.field == where and message in info.value.message
    assert "\n" not in info.value.diagnostics()


def test_yaml_override_is_checked_too(tmp_path):
    override = tmp_path / "o.yaml"
    override.write_text("mlgate:\n  decision:\n    allow: true\n")
    code, _, err = run(["check", EXAMPLES / "triage-acuity", "--env", "production", "--audit-log", tmp_path / "a.jsonl", "--data", override])
    assert code == 2 and "o.yaml: mlgate.decision.allow:" in _error_line(err)


def test_a_documented_threshold_can_still_be_overridden(tmp_path):
    override = _write(tmp_path, {"mlgate": {"environments": {"staging": {"approvals": {"min_disciplines": 2}},
                                                             "qa": {"bias": {"delta": 0.2}}}}})
    base = load_policy(bundled_policy_dir())
    policy = load_policy(bundled_policy_dir(), data_overrides=[override])
    assert policy.data["mlgate"]["environments"]["staging"]["approvals"]["min_disciplines"] == 2
    assert policy.data["mlgate"]["environments"]["staging"]["approvals"]["required"] == base.data["mlgate"]["environments"]["staging"]["approvals"]["required"]
    assert policy.bundle_revision == base.bundle_revision and policy.revision != base.revision
    assert len(policy.overrides) == 1 and policy.overrides[0][0].endswith("o.json")
    code, decision, _ = check_json(EXAMPLES / "readmission-risk", "staging", tmp_path / "a.jsonl", "--data", override)
    assert code in (0, 1) and decision["error"] is None
