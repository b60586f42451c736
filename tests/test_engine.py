"""The embedded engine fails closed: no policy, undefined, errors, timeouts, missing builtins."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from mlgate.audit import open_sink
from mlgate.policy.engine import create_engine
from mlgate.gate import GateOptions, check, prepare
from mlgate.errors import EngineError, PolicyError, UndefinedDecision
from mlgate.policy import bundled_policy_dir, load_policy


def write_policy(tmp_path, text, data=None, name="p.rego"):
    (tmp_path / name).write_text(text)
    if data is not None:
        d = tmp_path / "mlgate" / "environments" / "production"
        d.mkdir(parents=True)
        (d / "data.json").write_text(json.dumps(data))
    return load_policy(tmp_path)


def test_no_policy_is_an_error(tmp_path):
    with pytest.raises(PolicyError, match="no Rego policy found"):
        load_policy(tmp_path)
    (tmp_path / "only_test.rego").write_text("package x_test\nimport rego.v1\ntest_a if true\n")
    with pytest.raises(PolicyError, match="no Rego policy found"):
        load_policy(tmp_path)


def test_missing_policy_dir(tmp_path):
    with pytest.raises(PolicyError, match="policy directory not found"):
        load_policy(tmp_path / "nope")


def test_undefined_decision_raises(tmp_path):
    policy = write_policy(tmp_path, "package mlgate\nimport rego.v1\ndecision := {\"allow\": true} if input.never\n")
    engine = create_engine("embedded", policy)
    with pytest.raises(UndefinedDecision):
        engine.decide({"x": 1})


def test_wrong_package_is_undefined(tmp_path):
    policy = write_policy(tmp_path, "package other\nimport rego.v1\ndecision := {\"allow\": true}\n")
    with pytest.raises(UndefinedDecision):
        create_engine("embedded", policy).decide({})


def test_data_is_wrapped_by_directory(tmp_path):
    policy = write_policy(
        tmp_path,
        "package mlgate\nimport rego.v1\ndecision := {\"allow\": data.mlgate.environments[input.environment].ok}\n",
        data={"ok": True},
    )
    assert create_engine("embedded", policy).decide({"environment": "production"}) == {"allow": True}


def test_runtime_error_is_engine_error(tmp_path):
    policy = write_policy(tmp_path, "package mlgate\nimport rego.v1\ndecision := {\"allow\": to_number(input.x)}\n")
    with pytest.raises(EngineError) as exc:
        create_engine("embedded", policy).decide({"x": "not a number"})
    assert "\n" not in str(exc.value)


def test_timeout_is_engine_error(tmp_path):
    slow = "package mlgate\nimport rego.v1\ndecision := {\"allow\": count([1 | some i in numbers.range(1, 4000); some j in numbers.range(1, 4000); i < j]) > 0}\n"
    engine = create_engine("embedded", write_policy(tmp_path, slow), timeout_s=0.2)
    with pytest.raises(EngineError, match="exceeded the 0.2 s deadline"):
        engine.decide({})


def test_syntax_error_names_file_and_line(tmp_path):
    with pytest.raises(PolicyError) as exc:
        create_engine("embedded", write_policy(tmp_path, "package mlgate\nimport rego.v1\ndecision := {\n"))
    assert "p.rego" in str(exc.value) and "\n" not in str(exc.value)


def test_missing_builtin_refused_at_load(tmp_path):
    text = "package mlgate\nimport rego.v1\nok if io.jwt.verify_rs256(input.t, input.k)\ndecision := {\"allow\": ok}\n"
    with pytest.raises(PolicyError) as exc:
        create_engine("embedded", write_policy(tmp_path, text))
    assert "p.rego:3" in str(exc.value) and "io.jwt.verify_rs256" in str(exc.value)


def test_user_functions_are_not_builtins(tmp_path):
    text = ("package mlgate\nimport rego.v1\nimport data.mlgate.lib\n"
            "double(x) := x * 2\ndecision := {\"allow\": double(lib.one(1)) == 2}\n")
    (tmp_path / "lib.rego").write_text("package mlgate.lib\nimport rego.v1\none(x) := x\n")
    engine = create_engine("embedded", write_policy(tmp_path, text))
    assert engine.decide({}) == {"allow": True}


def test_unknown_engine_kind(tmp_path):
    with pytest.raises(PolicyError, match="unknown policy engine"):
        create_engine("nope", write_policy(tmp_path, "package mlgate\ndecision := 1\n"))


def test_revision_changes_with_any_file(tmp_path):
    p1 = write_policy(tmp_path, "package mlgate\nimport rego.v1\ndecision := {\"allow\": false}\n", data={"a": 1})
    (tmp_path / "mlgate" / "environments" / "production" / "data.json").write_text('{"a": 2}')
    p2 = load_policy(tmp_path)
    assert p1.revision != p2.revision


def test_data_override_merges(tmp_path):
    write_policy(tmp_path, "package mlgate\nimport rego.v1\ndecision := {\"allow\": false}\n", data={"bias": {"delta": 0.05, "alpha": 0.05}})
    override = tmp_path / "o.json"
    override.write_text(json.dumps({"mlgate": {"environments": {"production": {"bias": {"delta": 0.1}}}}}))
    policy = load_policy(tmp_path, data_overrides=[override])
    assert policy.data["mlgate"]["environments"]["production"]["bias"] == {"delta": 0.1, "alpha": 0.05}


def test_bundled_policy_loads_without_missing_builtins():
    policy = load_policy(bundled_policy_dir())
    assert policy.trust_policy_path is None  # the bundled library trusts no one (examples/trust.yaml is the examples')
    create_engine("embedded", policy)


def test_import_aliases_are_not_builtins(tmp_path):
    (tmp_path / "lib.rego").write_text("package mlgate.helpers\nimport rego.v1\nf(x) := x + 1\n")
    text = "package mlgate\nimport rego.v1\nimport data.mlgate.helpers as h\ndecision := {\"allow\": h.f(1) == 2}\n"
    assert create_engine("embedded", write_policy(tmp_path, text)).decide({}) == {"allow": True}


def test_bundled_policy_with_its_tests_loads():
    from mlgate.policy.engine.regorus_engine import RegorusEngine

    RegorusEngine(load_policy(bundled_policy_dir()), include_tests=True)


def test_test_fixtures_are_not_loaded_for_decisions():
    policy = load_policy(bundled_policy_dir())
    paths = [m.path for m in policy.decision_modules()]
    assert paths and not any(p.endswith("_test.rego") or "/testdata/" in f"/{p}" for p in paths)
    assert any("testdata/" in m.path for m in policy.modules)  # still there for `mlgate policy test`


def test_deadline_helper_passes_engine_errors_and_reports_crashes():
    import os

    from mlgate.policy.engine.deadline import evaluate_with_deadline

    assert evaluate_with_deadline(lambda: "ok", 5) == "ok"

    def fails():
        raise EngineError("policy evaluation failed: boom")

    with pytest.raises(EngineError, match="^policy evaluation failed: boom$"):
        evaluate_with_deadline(fails, 5)
    with pytest.raises(EngineError, match=r"crashed \(x\) \(child status"):
        evaluate_with_deadline(lambda: os._exit(3), 5, engine="x")


@pytest.mark.parametrize("timeout_s", [0, 10])  # in this process, and in the forked deadline child
def test_undefined_and_missing_decision_rules_raise_undefined(tmp_path, timeout_s):
    """decide() reads the decision as a rule (eval_rule_as_json): its "<undefined>" and a
    missing rule are both UndefinedDecision, never a value."""
    policy = write_policy(tmp_path, "package mlgate\nimport rego.v1\ndecision := {\"allow\": true} if input.ok\n")
    engine = create_engine("embedded", policy, timeout_s=timeout_s)
    with pytest.raises(UndefinedDecision, match="undefined"):
        engine.decide({"ok": False})
    assert engine.decide({"ok": True}) == {"allow": True}
    (tmp_path / "other").mkdir()
    other = write_policy(tmp_path / "other", "package mlgate\nimport rego.v1\nnot_the_decision := true\n")
    with pytest.raises(UndefinedDecision):
        create_engine("embedded", other, timeout_s=timeout_s).decide({})


def test_decide_reads_the_serialisation_it_is_given(tmp_path):
    """The gate serialises the input once (for its digest) and the engine evaluates those very
    bytes: what was digested is what was judged."""
    policy = write_policy(tmp_path, "package mlgate\nimport rego.v1\ndecision := {\"allow\": input.ok == true}\n")
    engine = create_engine("embedded", policy, timeout_s=0)
    assert engine.takes_input_json
    assert engine.decide({"ok": False}, b'{"ok":true}') == {"allow": True}
    assert engine.decide({"ok": False}) == {"allow": False}


def test_gate_digest_is_of_the_bytes_the_engine_read(tmp_path):
    seen = []

    class Spy:
        name, version, takes_input_json = "spy", "1", True

        def decide(self, input_doc, input_json=None):
            seen.append(input_json)
            return {"allow": False, "violations": [{"id": "MLG-X-001", "message": "spy", "severity": "low"}], "warnings": []}

    options = GateOptions(environment="production", timeout_s=0)
    prepared = dataclasses.replace(prepare(options), engine=Spy())
    release = Path(__file__).resolve().parent.parent / "examples" / "readmission-risk"
    with open_sink(f"file:{tmp_path / 'audit.jsonl'}") as sink:
        decision = check(release, options, sink, prepared=prepared)
    assert seen and seen[0] is not None
    assert decision.input_digest == hashlib.sha256(seen[0]).hexdigest()
    assert json.loads(seen[0]) == decision.input_document
