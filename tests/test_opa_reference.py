"""Real OPA is the reference (design.md section 10.6): the library means the same on OPA as on
every embedded engine.

OPA v1.20 runs in-process (:mod:`mlgate.policy.engine.opa_inprocess`, the
``opa-golib-python-bindings`` wheel that ``.ci/run`` installs). Without it these tests skip,
naming the package, outside CI; under ``CI`` they fail: the reference is never silently absent.

- every Rego unit test beside the policies passes on OPA, judged as ``mlgate policy test``
  judges them on regorus;
- every example input in staging and production, and 2,000 inputs generated from them
  (``tests/opa_reference.py``: fields dropped, values of the wrong type, more subgroups, more
  approvals, waivers, times and environments moved), decide identically on regorus (the
  compiled VM, the default, with and without the webhook's time split, and the tree-walker), OPA and
  (every twentieth: it is about 20x slower) rego-cpp: allow, violations, warnings and their
  messages, waivers; an engine error must be an error on the other engines too.
  ``python benchmarks/engine_conformance.py --library N`` runs the same comparison at any size.
"""

from __future__ import annotations

import json

import pytest
from opa_reference import example_inputs, first_difference, mutations, outcome, require_opa

from mlgate.policy import bundled_policy_dir, load_policy
from mlgate.policy.engine.regopy_engine import available as regopy_available

GENERATED = 2000
CPP_EVERY = 20


@pytest.fixture(scope="module")
def opa_available():
    require_opa()


@pytest.fixture(scope="module")
def bundled():
    return load_policy(bundled_policy_dir())


@pytest.fixture(scope="module")
def engines(bundled, opa_available):
    from mlgate.policy.engine.opa_inprocess import OpaInProcessEngine
    from mlgate.policy.engine.regorus_engine import RegorusEngine

    from mlgate.policy.engine.rvm_engine import RvmEngine

    # regorus twice: the compiled VM (the default engine, --engine embedded) and the tree-walker
    # and the VM with the time split (the webhook's: static findings cached, only the timed rules run)
    made = {"regorus": RegorusEngine(bundled, timeout_s=0), "regorus-rvm": RvmEngine(bundled, timeout_s=0),
            "regorus-rvm-split": RvmEngine(bundled, timeout_s=0, time_split=True), "opa": OpaInProcessEngine(bundled)}
    if regopy_available():
        from mlgate.policy.engine.regopy_engine import RegopyEngine

        made["rego-cpp"] = RegopyEngine(bundled, timeout_s=0)
    return made


@pytest.fixture(scope="module")
def examples():
    return example_inputs()


# --- the Rego unit tests ----------------------------------------------------------------------


def test_rego_unit_tests_pass_on_opa(bundled, opa_available):
    from mlgate.policytools.testing import run_tests_on_opa

    run = run_tests_on_opa(policy=bundled)
    assert len(run.results) > 200
    failing = {r.test.id: r.detail for r in run.results if r.status != "pass"}
    assert not failing, failing


def test_the_unit_test_runner_evaluates_on_opa_itself(tmp_path, opa_available):
    """The trap the library was fixed for: OPA reads `not f(x)` with x undefined as undefined,
    regorus as true. The same test passes on regorus and fails on OPA, so the runner is OPA."""
    from mlgate.policytools.testing import run_tests, run_tests_on_opa

    (tmp_path / "p.rego").write_text("package p\nimport rego.v1\nmissing if not is_object(input.absent)\n")
    (tmp_path / "p_test.rego").write_text(
        "package p_test\nimport rego.v1\nimport data.p\n"
        "test_missing if p.missing with input as {}\n"
        "test_missing_as_rule if not has_absent with input as {}\nhas_absent if is_object(input.absent)\n"
    )
    policy = load_policy(tmp_path)
    assert {r.test.name: r.status for r in run_tests(policy=policy).results} == {"test_missing": "pass", "test_missing_as_rule": "pass"}
    on_opa = {r.test.name: (r.status, r.detail) for r in run_tests_on_opa(policy=policy).results}
    assert on_opa == {"test_missing": ("fail", "test_missing is undefined, expected true"), "test_missing_as_rule": ("pass", "")}


def test_an_erroring_test_is_reported_against_that_test(tmp_path, opa_available):
    from mlgate.policytools.testing import run_tests_on_opa

    (tmp_path / "p.rego").write_text("package p\nimport rego.v1\nok := true\n")
    (tmp_path / "p_test.rego").write_text(
        'package p_test\nimport rego.v1\nimport data.p\ntest_ok if p.ok\ntest_raises if to_number("x") == 1\n'
    )
    results = {r.test.name: r for r in run_tests_on_opa(policy=load_policy(tmp_path)).results}
    assert results["test_ok"].status == "pass"
    assert results["test_raises"].status == "error" and "to_number" in results["test_raises"].detail


# --- decisions --------------------------------------------------------------------------------


def _compare(engines, cases):
    """[(case, engine, difference)] against OPA."""
    opa = engines["opa"]
    out = []
    for i, (name, doc) in enumerate(cases):
        reference = outcome(opa.decide, doc)
        for kind, engine in engines.items():
            if kind == "opa" or (kind == "rego-cpp" and i % CPP_EVERY):
                continue
            got = outcome(engine.decide, doc)
            if got != reference:
                out.append((name, kind, first_difference(reference, got)))
    return out


def test_examples_decide_identically_on_every_engine(engines, examples):
    assert {(r, e) for r, e in examples} >= {("readmission-risk", "staging"), ("readmission-risk", "production")}
    cases = [(f"{release} {env}", doc) for (release, env), doc in sorted(examples.items())]
    every = dict(engines)
    diffs = []
    for name, doc in cases:  # every example on every engine, rego-cpp included
        reference = outcome(every["opa"].decide, doc)
        assert not isinstance(reference, tuple), (name, reference)
        for kind, engine in every.items():
            got = outcome(engine.decide, doc)
            if got != reference:
                diffs.append((name, kind, first_difference(reference, got)))
    assert not diffs, diffs
    allows = {outcome(engines["opa"].decide, doc)["allow"] for _, doc in cases}
    assert allows == {True, False}


def test_generated_inputs_decide_identically_on_every_engine(engines, examples):
    cases = list(mutations(list(examples.values()), GENERATED, seed=17))
    assert len(cases) >= 2000
    diffs = _compare(engines, cases)
    assert not diffs, f"{len(diffs)} of {len(cases)} differ from OPA; first: " + json.dumps(diffs[:5], indent=1)


def test_the_generated_inputs_reach_both_outcomes_and_many_rules(engines, examples):
    """The generator is only worth as much as what it reaches: allows, denies, engine errors, waivers."""
    opa = engines["opa"]
    seen_allow, ids, waivers = set(), set(), 0
    for _, doc in mutations(list(examples.values()), 300, seed=17):
        o = outcome(opa.decide, doc)
        if isinstance(o, tuple):
            seen_allow.add(o[0])
            continue
        seen_allow.add(o["allow"])
        ids |= {f["id"] for f in o["violations"] + o["warnings"]}
        waivers += len(o.get("waivers") or [])
    assert {True, False} <= seen_allow
    assert waivers > 0
    assert len(ids) > 40, sorted(ids)
    assert {"MLG-CFG-001", "MLG-CFG-003", "MLG-BIAS-002", "MLG-APPR-004"} <= ids, sorted(ids)


def test_a_library_relying_on_regorus_is_caught(tmp_path, engines):
    """The differential test fails on a library that uses the idiom OPA reads otherwise."""
    from mlgate.policy.engine.opa_inprocess import OpaInProcessEngine
    from mlgate.policy.engine.regorus_engine import RegorusEngine

    (tmp_path / "d.rego").write_text(
        'package mlgate\nimport rego.v1\n'
        'violations contains {"id": "MLG-T-003", "message": "no evaluation time"} if not is_number(input.evaluated_at_ns)\n'
        'decision := {"allow": count(violations) == 0, "violations": [v | some v in violations], "warnings": []}\n'
    )
    policy = load_policy(tmp_path)
    pair = {"opa": OpaInProcessEngine(policy), "regorus": RegorusEngine(policy, timeout_s=0)}
    diffs = _compare(pair, [("no time", {"environment": "production"})])
    assert [(name, kind) for name, kind, _ in diffs] == [("no time", "regorus")]


def test_no_input_at_all_denies_with_mlg_cfg_000_on_opa(engines):
    decision = engines["opa"].eval_document("data.mlgate.decision", None)
    assert decision["allow"] is False
    assert "MLG-CFG-000" in {v["id"] for v in decision["violations"]}
