"""What engine building derives from the policy is remembered per policy revision (issue 17
part 5): the builtin check parses the library's AST once per content, not on every start."""

from __future__ import annotations

import pytest

from mlgate import localcache
from mlgate.errors import EngineError, PolicyError
from mlgate.policy import bundled_policy_dir, load_policy
from mlgate.policy import rego_ast
from mlgate.policy.engine.regorus_engine import RegorusEngine

GOOD = 'package mlgate\nimport rego.v1\ndecision := {"allow": count(input.xs) == 2}\n'
MISSING = 'package mlgate\nimport rego.v1\nok if io.jwt.verify_rs256(input.t, input.k)\ndecision := {"allow": ok}\n'


@pytest.fixture
def parses(monkeypatch, tmp_path):
    """Count the AST parses; a private cache directory per test."""
    monkeypatch.setenv("MLGATE_CACHE_DIR", str(tmp_path / "cache"))
    seen = []
    real = rego_ast.parse

    def counting(policy, engine=None):
        seen.append(policy.root)
        return real(policy, engine)

    monkeypatch.setattr(rego_ast, "parse", counting)
    return seen


def _policy(root, text):
    (root / "mlgate").mkdir(parents=True, exist_ok=True)
    (root / "mlgate" / "p.rego").write_text(text)
    return load_policy(root)


def test_the_bundled_library_is_parsed_once_per_revision(parses):
    policy = load_policy(bundled_policy_dir())  # parses once for its rule paths
    before = len(parses)
    RegorusEngine(policy)
    assert len(parses) == before + 1
    engine = RegorusEngine(policy)
    assert len(parses) == before + 1  # the second start reads the remembered answer
    assert isinstance(engine.decide({}), dict)


def test_an_edited_module_is_checked_again(parses, tmp_path):
    policy = _policy(tmp_path / "p", GOOD)
    RegorusEngine(policy)
    RegorusEngine(_policy(tmp_path / "p", GOOD))
    count = len(parses)
    edited = _policy(tmp_path / "p", GOOD + "extra := 1\n")  # a new revision: its rule paths are parsed too
    assert len(parses) == count + 1
    RegorusEngine(edited)
    assert len(parses) == count + 2
    with pytest.raises(PolicyError, match=r"p.rego:3: builtin io.jwt.verify_rs256 is not available"):
        RegorusEngine(_policy(tmp_path / "p", MISSING))


def test_a_missing_builtin_is_named_on_every_start(parses, tmp_path):
    policy = _policy(tmp_path / "p", MISSING)
    before = len(parses)
    for attempt in (1, 2):
        with pytest.raises(PolicyError, match=r"p.rego:3: builtin io.jwt.verify_rs256 is not available"):
            RegorusEngine(policy)
        assert len(parses) == before + attempt  # a failure is never remembered


def test_a_forged_clean_entry_still_fails_closed(parses, tmp_path, monkeypatch):
    """The check is a courtesy at load time: a forged "clean" answer lets the policy load, and the
    call the engine cannot make is an engine error at evaluation (a deny), never an allow."""
    policy = _policy(tmp_path / "p", MISSING)
    forged = {}
    real_put = localcache.put
    monkeypatch.setattr(rego_ast, "missing_builtins", lambda parsed: [])  # as if the entry were forged
    monkeypatch.setattr(localcache, "put", lambda ns, key, data: forged.setdefault(key, data) and real_put(ns, key, data))
    RegorusEngine(policy)
    monkeypatch.undo()
    monkeypatch.setenv("MLGATE_CACHE_DIR", str(tmp_path / "cache"))
    engine = RegorusEngine(policy)  # loads: the forged entry is read
    with pytest.raises(EngineError):
        engine.decide({"t": "x", "k": "y"})


def test_the_rule_paths_are_parsed_once_per_revision(parses, tmp_path):
    first = rego_ast.rule_paths(load_policy(bundled_policy_dir()))
    assert len(parses) == 1  # load_policy itself found them (its data may not shadow a rule); then remembered
    again = load_policy(bundled_policy_dir())
    assert len(parses) == 1
    assert rego_ast.rule_paths(again) == first and ("mlgate", "decision") in first


def test_a_data_document_shadowing_a_rule_is_refused_with_the_paths_cached(parses, tmp_path):
    root = tmp_path / "p"
    _policy(root, GOOD)  # remembered
    (root / "mlgate" / "data.json").write_text('{"decision": {"allow": true}}')
    for _ in range(2):
        with pytest.raises(PolicyError, match=r"a data document may not set a path a rule defines \(data.mlgate.decision"):
            load_policy(root)
    assert len(parses) == 1


@pytest.mark.parametrize("where,doc", [("mlgate/data.json", '{"decision": {"allow": true}}'), ("data.json", '{"mlgate": 5}'),
                                       ("mlgate/data.json", '{"decision": 1}')])
def test_a_data_document_above_or_below_a_rule_is_refused(parses, tmp_path, where, doc):
    root = tmp_path / "p"
    _policy(root, GOOD)
    (root / where).write_text(doc)
    with pytest.raises(PolicyError, match=r"a data document may not set a path a rule defines \(data.mlgate.decision, rule 'decision'"):
        load_policy(root)


def test_data_beside_the_rules_is_accepted(parses, tmp_path):
    root = tmp_path / "p"
    _policy(root, GOOD)
    (root / "mlgate" / "data.json").write_text('{"decisions": {"allow": true}, "other": {"decision": 1}}')
    assert load_policy(root).data["mlgate"]["other"] == {"decision": 1}
