"""Contract tests: the same decision cases through every engine available here, same decisions.

Cases: every example release in staging and production (input documents built at the examples'
fixed instant), and every Rego unit test beside the policies. Engines: ``embedded`` (regorus,
the default), ``opa`` (the remote client against ``tests/opa_rest_server.py``, a server that
follows OPA's REST API and evaluates with real OPA in-process: the transport, the client and
OPA's own semantics change no decision), and ``rego-cpp`` when the ``rego-cpp`` extra is
installed. tests/test_opa_reference.py holds the engines to OPA on thousands of generated inputs.

rego-cpp runs the same cases. The Rego unit tests are a strict xfail, so that the day the
difference goes this file fails and the mark must go: they set their input with ``with input
as``, which regopy 1.5.2 does not compile. (The examples whose bias audit has a p-value below
0.001 differed until ``lib.p`` stopped using ``sprintf("%.2e")``, whose precision regorus
ignores; it now writes the number out, identically in every engine and as OPA prints ``%.2e``.)
A portable policy, written in the subset every engine agrees on, is run through all three
engines, and the two idioms rego-cpp evaluates differently are shown to differ, and to be what the
lint warns about. (A third difference found here: ``sprintf("%v", 0.9 - 0.7)`` prints
``0.2000000000000001`` in rego-cpp and ``0.20000000000000007`` in regorus; the portable policy
rounds before formatting.)
"""

from __future__ import annotations

import json

import pytest
from conftest import EXAMPLES, EXAMPLES_NOW
from opa_rest_server import FakeOpa

from mlgate.policy.engine import create_engine
from mlgate.policy.engine.opa import OpaSettings
from mlgate.policy.engine.regopy_engine import available as regopy_available
from mlgate.errors import PolicyError, UndefinedDecision
from mlgate.gate import decide
from mlgate.policy import bundled_policy_dir, load_policy

RELEASES = sorted(p.name for p in EXAMPLES.iterdir() if (p / "mlgate.yaml").is_file())
CASES = [(r, env) for r in RELEASES for env in ("staging", "production")]
NO_CPP = pytest.mark.skipif(not regopy_available(), reason="the rego-cpp extra is not installed")
CPP_UNIT_TESTS = ("every Rego unit test sets its input with `with input as ...`, which rego-cpp (regopy 1.5.2) does not compile: "
                  'after `as` a reference ("shape `rego-with` has no field `rego-ref`"), or any value once a rule it reaches '
                  'calls a builtin ("shape `rego-localref` has no field `rego-refhead`")')


def _example_params():
    for release, env in CASES:
        yield pytest.param("embedded", release, env, id=f"embedded-{release}-{env}")
        yield pytest.param("opa", release, env, id=f"opa-{release}-{env}")
        yield pytest.param("rego-cpp", release, env, marks=[NO_CPP], id=f"rego-cpp-{release}-{env}")


@pytest.fixture(scope="module")
def bundled():
    return load_policy(bundled_policy_dir())


@pytest.fixture(scope="module")
def inputs(bundled):
    from mlgate import evidence
    from mlgate.gate import GateOptions, prepare
    from mlgate.inputdoc import Request, build_input
    from mlgate.manifest import load_release

    docs = {}
    for release, env in CASES:
        prepared = prepare(GateOptions(environment=env))
        rel = load_release(EXAMPLES / release)
        facts = evidence.collect(rel, prepared.trust)
        docs[(release, env)] = build_input(release=rel, facts=facts, environment=env, now=EXAMPLES_NOW, request=Request(source="cli"))
    return docs


@pytest.fixture(scope="module")
def opa_server(bundled):
    with FakeOpa(bundled, include_tests=True, bundle_revision=bundled.revision) as server:
        yield server


def _engine(kind, policy, opa_server=None):
    if kind == "opa":
        return create_engine("opa", policy, opa=OpaSettings(url=opa_server.url))
    return create_engine(kind, policy)


@pytest.fixture(scope="module")
def engines(bundled, opa_server):
    """One engine of each kind on the bundled policy, made when a test first asks for it."""
    made = {}

    def get(kind):
        if kind not in made:
            made[kind] = _engine(kind, bundled, opa_server)
        return made[kind]

    return get


def _summary(raw):
    allowed, violations, warnings = decide(raw)
    return allowed, [(v.id, v.message) for v in violations], [(w.id, w.message) for w in warnings]


@pytest.mark.parametrize(("kind", "release", "env"), list(_example_params()))
def test_examples_decide_the_same_on_every_engine(kind, release, env, inputs, engines):
    doc = inputs[(release, env)]
    expected = engines("embedded").decide(doc)
    got = engines(kind).decide(doc)
    assert _summary(got) == _summary(expected)
    assert got == expected


def test_examples_exercise_both_outcomes(inputs, engines):
    assert {_summary(engines("embedded").decide(d))[0] for d in inputs.values()} == {True, False}


def _unit_tests(bundled):
    from mlgate.policy.rego_ast import parse
    from mlgate.policytools.testing import discover

    return discover(parse(bundled))


@pytest.mark.parametrize("kind", ["embedded", "opa", pytest.param("rego-cpp", marks=[
    NO_CPP, pytest.mark.xfail(raises=PolicyError, strict=True, reason=CPP_UNIT_TESTS)])])
def test_policy_unit_tests_pass_on_every_engine(kind, bundled, opa_server):
    from mlgate.policy.engine.regorus_engine import RegorusEngine

    tests = _unit_tests(bundled)
    assert len(tests) > 50
    if kind == "embedded":
        engine = RegorusEngine(bundled, include_tests=True)
        results = {t.id: _safe(lambda q: engine.eval_json(q, {}), t.query) for t in tests}
    elif kind == "opa":
        import requests

        def via_opa(path):
            r = requests.post(f"{opa_server.url}/v1/data/{path.replace('.', '/')}", json={"input": {}}, timeout=60)
            doc = r.json()
            if r.status_code != 200:
                return f"error {doc['code']}"
            return doc["result"] if "result" in doc else "undefined"

        # OPA prepares each distinct query once (about 0.3 s for the library): one request per
        # test package, each test read from the package's document (a test package whose
        # document raises is asked test by test, so the error lands on the test).
        results = {}
        for package in sorted({t.package for t in tests}):
            document = via_opa(package)
            for t in (t for t in tests if t.package == package):
                results[t.id] = document.get(t.name, "undefined") if isinstance(document, dict) else via_opa(t.id)
    else:
        from mlgate.policy.engine.regopy_engine import RegopyEngine

        engine = RegopyEngine(bundled, include_tests=True)
        results = {t.id: _safe(lambda q: engine.eval_json(q, {}), t.query) for t in tests}
    failing = {k: v for k, v in results.items() if v is not True}
    assert not failing, failing


def _safe(fn, query):
    try:
        return fn(query)
    except UndefinedDecision:
        return "undefined"


# --- a portable policy: every engine agrees -------------------------------------------------------

PORTABLE = r'''package mlgate
import rego.v1

default threshold := 0.05

threshold := data.mlgate.environments[input.environment].delta if data.mlgate.environments[input.environment].delta

gaps contains {"group": g, "gap": gap} if {
	some g in object.keys(input.groups)
	gap := input.reference - input.groups[g]
	gap > threshold
}

names := sort([g.group | some g in gaps])

violations contains {"id": "MLG-T-001", "message": sprintf("group %v gap %v%% over %v%%", [g.group, round(g.gap * 100), round(threshold * 100)]), "severity": "high"} if {
	some g in gaps
}

violations contains {"id": "MLG-T-002", "message": "no approver"} if count(input.approvers) == 0

decision := {"allow": count(violations) == 0, "violations": [v | some v in violations], "warnings": [], "names": names, "n": count(input.approvers)}
'''
PORTABLE_INPUTS = [
    {"environment": "production", "reference": 0.9, "groups": {"a": 0.88, "b": 0.7}, "approvers": ["x"]},
    {"environment": "staging", "reference": 0.9, "groups": {"a": 0.88, "b": 0.84}, "approvers": []},
    {"environment": "production", "reference": 0.5, "groups": {}, "approvers": ["x", "y"]},
]


def _portable(tmp_path, text=PORTABLE):
    (tmp_path / "p.rego").write_text(text)
    d = tmp_path / "mlgate" / "environments" / "staging"
    d.mkdir(parents=True)
    (d / "data.json").write_text(json.dumps({"delta": 0.01}))
    return load_policy(tmp_path)


def _available():
    return ["embedded", "opa"] + (["rego-cpp"] if regopy_available() else [])


def test_portable_policy_identical_on_every_engine(tmp_path):
    policy = _portable(tmp_path)
    with FakeOpa(policy) as server:
        answers = {kind: [_engine(kind, policy, server).decide(doc) for doc in PORTABLE_INPUTS] for kind in _available()}
    reference = answers["embedded"]
    assert [decide(r)[0] for r in reference] == [False, False, True]
    for kind, got in answers.items():
        norm = [{**r, "violations": sorted(r["violations"], key=json.dumps)} for r in got]
        ref = [{**r, "violations": sorted(r["violations"], key=json.dumps)} for r in reference]
        assert norm == ref, kind


DIVERGENT = '''package mlgate
import rego.v1

decision := {"allow": true, "t": time.parse_rfc3339_ns("2026-11-29T12:00:00Z"), "q": sprintf("%q", ["x"])}
'''


@pytest.mark.skipif(not regopy_available(), reason="the rego-cpp extra is not installed")
def test_known_rego_cpp_divergences_are_what_lint_warns_about(tmp_path):
    from mlgate.policytools.lint import lint

    (tmp_path / "a").mkdir()
    policy = _portable(tmp_path / "a", DIVERGENT)
    assert create_engine("embedded", policy).decide({}) == {"allow": True, "t": 1795953600000000000, "q": '"x"'}
    with pytest.raises(PolicyError):  # time.parse_rfc3339_ns(...Z) fails in rego-cpp (undefined; an error under strict builtin errors)
        create_engine("rego-cpp", policy).decide({})
    (tmp_path / "b").mkdir()
    only_q = _portable(tmp_path / "b", DIVERGENT.replace('time.parse_rfc3339_ns("2026-11-29T12:00:00Z")', '1795953600000000000'))
    assert create_engine("rego-cpp", only_q).decide({})["q"] == "%q"  # printed literally
    report = lint(policy=policy, engine="rego-cpp")
    assert [(w.line, w.check) for w in report.warnings] == [(4, "rego-cpp"), (4, "rego-cpp")]
    assert {w.message.split(" ")[0] for w in report.warnings} == {"time.parse_rfc3339_ns", "sprintf:"}
    assert not lint(policy=policy).warnings  # the embedded engine has no such trap
