"""The compiled VM (regorus's RVM, ``--engine embedded``, the default) means what OPA means.

The decisions themselves (every example input, 2,000 generated inputs, VM against real OPA) are
compared in ``tests/test_opa_reference.py`` beside the tree-walker and rego-cpp, against one OPA
reference run. Here: what is particular to the VM.

- its known set bug (the value of an undefined function call lands in a set) is real in the
  pinned wheel, and the library guards every set or array element that is a user function call
  (found in the parse tree, not by a hand list);
- an input past the VM's fixed instruction cap is decided by the tree-walker, the same decision;
- a library that does not compile for the VM is refused at load, naming the reason;
- ``embedded`` is the VM, ``regorus-interp`` the tree-walker.
"""

from __future__ import annotations

import copy
import json

import pytest
from opa_reference import example_inputs, outcome, require_opa

from mlgate.errors import PolicyError
from mlgate.policy import bundled_policy_dir, load_policy
from mlgate.policy.engine import create_engine
from mlgate.policy.engine.regorus_engine import RegorusEngine
from mlgate.policy.engine.rvm_engine import RvmEngine
from mlgate.policy.rego_ast import engine_has_builtin, parse, ref_parts, walk


@pytest.fixture(scope="module")
def bundled():
    return load_policy(bundled_policy_dir())


def _vm_value(src: str, entry: str, input_doc: dict) -> object:
    from mlgate.policy.rego_ast import load_regorus

    regorus = load_regorus()
    program = regorus.Program.compile_from_modules("{}", [("t.rego", src)], [entry])
    vm = regorus.Rvm()
    vm.load_program(program)
    vm.set_data_json("{}")
    vm.set_input_json(json.dumps(input_doc))
    return json.loads(vm.execute_entry_point(entry))


def test_the_pinned_vm_has_the_set_bug_and_the_guard_avoids_it():
    """Why the guards exist: unguarded, an undefined call adds an element; guarded, it does not
    (the tree-walker and OPA give the empty set either way)."""
    src = ("package t\nimport rego.v1\nf(x) := 1 if x == true\n"
           "bare contains f(input.a) if true\n"
           "guarded contains n if {\n\tn := f(input.a)\n\tis_number(n)\n}\n")
    assert _vm_value(src, "data.t.bare", {}) == ["<undefined>"]
    assert _vm_value(src, "data.t.guarded", {}) == []
    assert _vm_value(src, "data.t.guarded", {"a": True}) == [1]


def _total_functions(parsed) -> set[tuple[str, str]]:
    """(package, name) of functions with a definition that cannot be undefined: an else chain
    ending in an unconditional ``else := value``, or no body at all."""
    total = set()
    for module in parsed.modules:
        for rule in module.rules:
            if rule.kind != "Func":
                continue
            bodies = rule.node["Spec"].get("bodies") or []
            if not bodies or (bodies[-1].get("is_else") and not (bodies[-1].get("query") or {}).get("stmts")):
                total.add((module.package, rule.name))
    return total


def _user_function(parsed, module, call: dict) -> tuple[str, str] | None:
    """(package, name) when ``call`` calls a function the policy defines, else None (a builtin)."""
    parts = ref_parts(call.get("fcn"))
    if not parts:
        return None
    if len(parts) == 1 and parts[0] in module.rule_names:
        return module.package, parts[0]
    resolved = parsed.resolve(module, parts)
    if resolved and resolved[:1] == ["data"]:
        return ".".join(resolved[1:-1]), resolved[-1]
    if engine_has_builtin(".".join(parts)):
        return None
    return ".".join(parts[:-1]), parts[-1]


def _unguarded_elements(parsed) -> list[str]:
    """Every set/array element (comprehension term, ``contains`` key) that is a call of a user
    function that may be undefined, or a variable bound only by `v := <such a call>` and never
    looked at again in its query."""
    total = _total_functions(parsed)
    found = []

    def risky(module, term: dict, stmts: list) -> str | None:
        if "Call" in term:
            fn = _user_function(parsed, module, term["Call"])
            return f"{fn[1]}(...)" if fn and fn not in total else None
        if "Var" not in term:
            return None
        name = term["Var"]["value"]
        for i, stmt in enumerate(stmts):
            expr = ((stmt.get("literal") or {}).get("Expr") or {}).get("expr") or {}
            assign = expr.get("AssignExpr")
            if not assign or assign.get("lhs", {}).get("Var", {}).get("value") != name or "Call" not in assign.get("rhs", {}):
                continue
            fn = _user_function(parsed, module, assign["rhs"]["Call"])
            if fn is None or fn in total:
                return None
            later = [s for s in stmts[i + 1:] if any(n.get("value") == name for n in walk(s) if isinstance(n.get("value"), str))]
            return None if later else f"{name} := {fn[1]}(...)"
        return None

    for module in parsed.modules:
        if module.is_test:
            continue
        for node in walk(module.ast):
            for kind in ("SetCompr", "ArrayCompr"):
                if kind in node:
                    why = risky(module, node[kind]["term"], (node[kind].get("query") or {}).get("stmts") or [])
                    if why:
                        found.append(f"{module.path}:{node[kind]['span']['line']}: {why}")
        for rule in module.rules:
            if rule.kind != "Set":
                continue
            key = rule.node["Spec"]["head"]["Set"].get("key") or {}
            for body in rule.node["Spec"].get("bodies") or [{}]:
                why = risky(module, key, (body.get("query") or {}).get("stmts") or [])
                if why:
                    found.append(f"{rule.where}: {why}")
    return sorted(set(found))


def test_no_set_element_is_an_unguarded_user_function_call(bundled):
    assert _unguarded_elements(parse(bundled)) == []


def test_the_element_check_finds_the_forms_the_vm_gets_wrong(tmp_path):
    (tmp_path / "p.rego").write_text(
        "package p\nimport rego.v1\nf(x) := 1 if x == true\ng(x) := 1 if x == true\ng(x) := 2 if x == false\n"
        "total(x) := 1 if x else := 0\n"
        "a contains f(input.a) if true\n"
        "b := {n | n := f(input.a)}\n"
        "c := [n | n := f(input.a); is_number(n)]\n"
        "d := {total(input.a) | true}\n"
        "e contains n if {\n\tn := g(input.a)\n}\n"
    )
    found = _unguarded_elements(parse(load_policy(tmp_path)))
    assert [line.rsplit("/", 1)[-1] for line in found] == ["p.rego:11: n := g(...)", "p.rego:7: f(...)", "p.rego:8: n := f(...)"], found


# --- the engine --------------------------------------------------------------------------------


def test_embedded_is_the_vm_and_regorus_interp_the_tree_walker(bundled):
    assert isinstance(create_engine("embedded", bundled, timeout_s=0), RvmEngine)
    assert isinstance(create_engine("regorus-interp", bundled, timeout_s=0), RegorusEngine)
    assert create_engine("embedded", bundled, timeout_s=0).name == "regorus-rvm"


def test_a_library_that_does_not_compile_for_the_vm_is_refused_at_load(tmp_path):
    (tmp_path / "d.rego").write_text(
        "package mlgate\nimport rego.v1\n"
        'decision := {"allow": false, "violations": [], "warnings": [], "more": data.mlgate[input.k]}\n'
    )
    policy = load_policy(tmp_path)
    RegorusEngine(policy, timeout_s=0)  # the tree-walker loads it
    with pytest.raises(PolicyError) as err:
        RvmEngine(policy, timeout_s=0)
    text = err.value.diagnostics()
    # refused at load, before the VM's compiler (which also finds it): recursion, which Rego forbids and which crashes the VM
    assert "recursion" in text and ("depend on themselves" in text or "does not compile for the compiled engine" in text)


def test_an_input_past_the_vm_cap_is_decided_by_the_tree_walker_identically(bundled):
    require_opa()
    from mlgate.policy.engine.opa_inprocess import OpaInProcessEngine

    doc = copy.deepcopy(example_inputs()[("readmission-risk", "production")])
    audit = doc["evidence"]["bias_audit"]
    for i in range(60):  # 60 more subgroups: far past 25,000 VM instructions
        comparison = dict(audit["comparisons"][0], group=f"g{i}", gap=0.01 * (i % 30), p_holm=[1.0, 0.01, 2e-05][i % 3])
        audit["comparisons"].append(comparison)
    vm = RvmEngine(bundled, timeout_s=0)
    got = outcome(vm.decide, doc)
    assert vm.fallbacks == 1
    assert got == outcome(OpaInProcessEngine(bundled).decide, doc)
    assert outcome(vm.decide, example_inputs()[("chest-xray", "production")]) and vm.fallbacks == 1  # a small input runs on the VM


def test_the_vm_decides_under_a_deadline_as_without(bundled):
    doc = example_inputs()[("triage-acuity", "staging")]
    assert RvmEngine(bundled, timeout_s=10).decide(doc) == RvmEngine(bundled, timeout_s=0).decide(doc)


def test_undefined_decision_is_undefined_on_the_vm(tmp_path):
    from mlgate.errors import UndefinedDecision

    (tmp_path / "d.rego").write_text("package mlgate\nimport rego.v1\ndecision := {\"allow\": true} if input.never\n")
    with pytest.raises(UndefinedDecision):
        RvmEngine(load_policy(tmp_path), timeout_s=0).decide({"x": 1})
