"""Red team, round 4: the webhook relying on signed verification summaries (acceptSummaries,
gatekeeper/summaries.py) and a second pass on the time split (mlgate/policy/timesplit.py after 10e5a49).

Each attack that works today is an expected failure (``xfail(strict=True)``): the test asserts what
mlgate should do, and fails until it does. The attacks that are refused are plain tests.

Attackers: whoever can write files in the evidence store but holds no key; whoever holds a summary
signing key (summarySigners); whoever writes an organisation's rule package (a policy layer) with rules
that look ordinary. The time split must decide exactly what the whole policy decides
(``RvmEngine(policy, timeout_s=0)`` against ``RvmEngine(policy, timeout_s=0, time_split=True)``), and a
webhook that takes an honest summary must decide exactly as one that takes none."""

from __future__ import annotations

import dataclasses
import base64
import copy
import datetime as dt
import gc
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import EXAMPLES, EXAMPLES_NOW
from opa_reference import example_inputs, first_difference, mutations, outcome
from test_redteam_round3 import BEFORE, HEADER, _at, _differences, _ids, _library_with, _meta, _org_layer
from test_vsa import _trust_with
from test_webhook_summaries import _admit, _decision, _gatekeeper, _records, _summary_path, ci  # noqa: F401 - ci is a fixture

from mlgate.errors import PolicyError
from mlgate.policy import bundled_policy_dir, load_policy
from mlgate.policy.engine.rvm_engine import RvmEngine

REPO = Path(__file__).resolve().parent.parent
RELEASE = "readmission-risk"


def _finding(fid: str, cond: str, kind: str = "violation", controls: str = '["X"]') -> str:
    return (_meta(fid) + f"{kind} contains v if {{\n\t{cond}\n\tv := {{\"id\": \"{fid}\", \"severity\": \"high\", "
            f"\"controls\": {controls}, \"remediation\": \"r\", \"message\": \"m\"}}\n}}\n\n")


class _Clock:
    def __init__(self, at: dt.datetime):
        self.at = at

    def now(self) -> dt.datetime:
        return self.at


# ==================================================================== 1. summaries: attacks that work


def test_a_symlinked_summary_is_not_read_past_the_size_limit(ci, monkeypatch):
    """Whoever writes the store points the summary's path at a huge file: the size limit is taken from the
    link (lstat), the read follows it (read_bytes), so the webhook reads the whole target per new file state."""
    import mlgate.signing.summary as summary_mod
    from mlgate.gatekeeper.summaries import MAX_SUMMARY_BYTES

    big = ci / "huge.bin"
    with open(big, "wb") as fh:
        fh.truncate(MAX_SUMMARY_BYTES * 4)  # sparse: 16 MiB of zeros
    path = _summary_path(ci)
    path.unlink()
    path.symlink_to(big)
    sizes: list[int] = []
    real = summary_mod.verify_summary

    def spy(data, *args, **kwargs):
        sizes.append(len(data))
        return real(data, *args, **kwargs)

    monkeypatch.setattr(summary_mod, "verify_summary", spy)
    gk = _gatekeeper(ci)
    try:
        _admit(gk)
    finally:
        gk.close()
    assert all(n <= MAX_SUMMARY_BYTES for n in sizes), sizes


def test_a_summary_behind_a_symlink_is_never_relied_on(ci):
    """The summary is read from the file itself, never through a link (opened with O_NOFOLLOW): a link's target
    can change or vanish behind the state the webhook remembers."""
    path = _summary_path(ci)
    target = ci / "elsewhere.sigstore.json"
    shutil.move(path, target)
    path.symlink_to(target)
    gk = _gatekeeper(ci)
    try:
        _admit(gk, uid="a")
        assert gk.summaries.used == 0
        target.unlink()
        _admit(gk, uid="b")
    finally:
        gk.close()
    assert all("summary" not in r for r in _records(ci))


def test_a_summary_signer_revoked_in_a_new_trust_policy_is_not_relied_on(ci):
    """The remembered check is keyed on id(trust): a new trust policy (a policy refresh re-reads it) that lands on the
    address of the one the summary was checked under reuses that check, so a key revoked for a compromise still counts.
    (Found here within a few dozen refreshes; skipped if the allocator never reuses the address.)"""
    from mlgate import evidence
    from mlgate.clock import FixedClock
    from mlgate.gatekeeper.summaries import SummarySource
    from mlgate.manifest import load_release
    from mlgate.signing.summary import default_path
    from mlgate.signing.trust import load_trust_policy

    import yaml

    pem = yaml.safe_load((ci / "trust.yaml").read_text())["summarySigners"][0]["keys"][0]["pem"].encode()
    _trust_with(ci / "revoked.yaml", pem, extra='        revoked: {at: "2026-11-01T00:00:00Z", reason: keyCompromise}\n')
    assert load_trust_policy(ci / "revoked.yaml").summary_signers[0].keys[0].validity.revoked_at is not None
    release_dir = ci / "store" / RELEASE
    release = load_release(release_dir)
    path = default_path(release_dir, "production")
    facts = evidence.collect(release, load_trust_policy(ci / "trust.yaml"))
    source = SummarySource(86_400, FixedClock(EXAMPLES_NOW))
    for _ in range(500):
        before = load_trust_policy(ci / "trust.yaml")
        assert source._check(path, before, facts, "production").ok
        address = id(before)
        during = load_trust_policy(ci / "revoked.yaml")  # built while the old one is still in use (a refresh)
        del before
        gc.collect()
        after = load_trust_policy(ci / "revoked.yaml")
        if id(after) == address:
            check = source._check(path, after, facts, "production")
            assert not check.ok, "a summary signed with a revoked (keyCompromise) key was relied on"
            return
        del during, after
        gc.collect()
    pytest.skip("the allocator never reused the trust policy's address")


def test_a_summary_read_a_moment_before_its_time_is_relied_on_once_that_time_has_passed(ci):
    """CI's clock a few seconds ahead of the webhook's: refused while its time is in the future, and relied on
    once it has passed (a refusal is not remembered)."""
    from mlgate import evidence
    from mlgate.gatekeeper.summaries import SummarySource
    from mlgate.manifest import load_release
    from mlgate.signing.trust import load_trust_policy

    release = load_release(ci / "store" / RELEASE)
    trust = load_trust_policy(ci / "trust.yaml")
    facts = evidence.collect(release, trust)
    clock = _Clock(EXAMPLES_NOW - dt.timedelta(seconds=5))
    source = SummarySource(86_400, clock)
    gk = _gatekeeper(ci)
    try:
        prepared = dataclasses.replace(gk.prepared, trust=trust)
        payload = json.loads(_summary_path(ci).read_bytes())["dsseEnvelope"]["payload"]
        key = json.loads(base64.b64decode(payload))["predicate"]["mlgate"]["static"]["key"]
        assert source(release, facts, "production", key, prepared) is None  # in the future: not relied on (right)
        clock.at = EXAMPLES_NOW + dt.timedelta(minutes=1)
        assert source(release, facts, "production", key, prepared) is not None
    finally:
        gk.close()


def test_a_decision_the_tree_walker_made_whole_does_not_name_the_summary(tmp_path, monkeypatch):
    """A release whose timed part passes the VM's instruction cap (a few more approvals) is decided whole by the
    tree-walker, over the policy as written: the summary's findings are not used, yet the record names the summary."""
    from mlgate import evidence, gate
    from mlgate.audit import open_sink
    from mlgate.clock import FixedClock
    from mlgate.gate import GateOptions, check_loaded, prepare
    from mlgate.manifest import load_release

    real = gate.build_input

    def more_approvals(**kw):
        doc = real(**kw)
        doc["evidence"] = copy.deepcopy(doc["evidence"])
        records = doc["evidence"]["approvals"]["records"]
        for i in range(10):
            extra = copy.deepcopy(records[0])
            extra.update(path=f"evidence/approvals/x{i}.json", signer_id=f"x{i}@hospital.example")
            records.append(extra)
        return doc

    monkeypatch.setattr(gate, "build_input", more_approvals)

    def options(**kw):
        return GateOptions(environment="production", trust_policy=EXAMPLES / "trust.yaml", timeout_s=0, time_split=True,
                           clock=FixedClock(EXAMPLES_NOW), **kw)

    release = load_release(EXAMPLES / RELEASE)
    ci_prepared = prepare(options())

    def load(p):
        return release, evidence.collect(release, p.trust)

    with open_sink(f"file:{tmp_path / 'ci.jsonl'}") as sink:
        made = check_loaded(load, options(), sink, prepared=ci_prepared)
    assert made.static and made.static["findings"]
    record = {"path": "verification-production.sigstore.json", "sha256": "0" * 64}

    def source(_release, _facts, _env, key, _prepared):
        return (json.loads(made.static["findings"]), record) if key == made.static["key"] else None

    hook = prepare(options())
    with open_sink(f"file:{tmp_path / 'hook.jsonl'}") as sink:
        decided = check_loaded(load, options(static_source=source), sink, prepared=hook)
    assert hook.engine.fallbacks == 1  # the tree-walker decided it, whole
    assert decided.static["summary"] is None


# ==================================================================== 1. summaries: refused or exact


def test_a_failed_summary_is_not_relied_on(ci):
    """CI ran again when the approvals had lapsed (FAILED), same digest and evidence."""
    from cli_helpers import run

    code, _, err = run(["check", ci / "store" / RELEASE, "--env", "production", "-o", "json", "--trust", ci / "trust.yaml",
                        "--audit-log", ci / "ci-audit.jsonl", "--attest", ci / "ci.key"], now=dt.datetime(2027, 12, 1, tzinfo=dt.timezone.utc))
    assert code == 1, err
    gk = _gatekeeper(ci)
    try:
        _admit(gk)
        assert gk.summaries.used == 0
    finally:
        gk.close()
    assert "summary" not in _records(ci)[0]


def test_another_environments_summary_put_in_this_environments_file_is_not_relied_on(ci):
    from cli_helpers import run

    staging = ci / "store" / RELEASE / ".mlgate" / "verification-staging.sigstore.json"
    code, _, err = run(["check", ci / "store" / RELEASE, "--env", "staging", "-o", "json", "--trust", ci / "trust.yaml",
                        "--audit-log", ci / "ci-audit.jsonl", "--attest", ci / "ci.key"])
    assert code == 0 and staging.is_file(), err
    shutil.copy(staging, _summary_path(ci))
    gk = _gatekeeper(ci)
    try:
        _admit(gk)
        assert gk.summaries.used == 0 and gk.prepared.engine.static_misses == 1
    finally:
        gk.close()


def test_a_deleted_summary_is_no_longer_relied_on(ci):
    gk = _gatekeeper(ci)
    try:
        _admit(gk, uid="a")
        _summary_path(ci).unlink()
        _admit(gk, uid="b")
        assert gk.summaries.used == 1 and gk.prepared.engine.static_misses == 1
    finally:
        gk.close()
    first, second = _records(ci)
    assert "summary" in first and "summary" not in second


def test_a_summary_past_max_age_between_two_admissions_is_dropped(ci):
    clock = _Clock(EXAMPLES_NOW)
    gk = _gatekeeper(ci)
    gk.summaries.clock = clock
    gk.clock = clock
    try:
        _admit(gk, uid="a")
        clock.at = EXAMPLES_NOW + dt.timedelta(days=2)
        _admit(gk, uid="b")
        assert gk.summaries.used == 1 and gk.summaries.refused == 1
    finally:
        gk.close()
    first, second = _records(ci)
    assert "summary" in first and "summary" not in second


def test_honest_summaries_decide_exactly_as_the_webhook_alone():
    """CI evaluates each generated input (the split, at the examples' time) and its static findings go through JSON
    as a summary carries them; the webhook seeded with them decides, at other times, as the whole policy."""
    from mlgate.policy.timesplit import static_key

    library = load_policy(bundled_policy_dir())
    ci_engine = RvmEngine(library, timeout_s=0, time_split=True)
    whole = RvmEngine(library, timeout_s=0)
    hook = RvmEngine(library, timeout_s=0, time_split=True)
    seeded = 0
    for i, (_, doc) in enumerate(mutations(list(example_inputs().values()), 120, seed=4242)):
        if not isinstance(doc, dict):
            continue
        key = static_key(doc)
        try:
            ci_engine.decide(doc, static_key=key)
        except Exception:  # noqa: BLE001 - an input CI refuses has no summary
            continue
        found = ci_engine.static_findings(key)
        if found is None:
            continue
        hook.seed_static(key, json.loads(json.dumps(json.loads(found))), {"path": f"s{i}"})
        seeded += 1
        for when in (BEFORE, dt.datetime(2027, 12, 1, tzinfo=dt.timezone.utc)):
            at = _at(doc, when) if isinstance(doc.get("evaluated_at_ns"), int) else doc
            want, got = outcome(whole.decide, at), outcome(lambda d: hook.decide(d, static_key=key), at)
            assert want == got, (i, first_difference(want, got))
    assert seeded > 60 and hook.static_misses == 0


# ==================================================================== 2. the time split: attacks that work


def test_a_rule_reading_a_set_valued_field_of_a_static_finding_decides_as_the_whole_policy(tmp_path):
    """The cached static findings came back from JSON, where a set is an array: a rule over the composition that
    treats a finding's controls as the set the rule wrote (&, ==, is_set) sees an array and stops firing. The webhook
    allows what mlgate check denies, at the first admission already (the decision run reads the cache)."""
    doc = example_inputs()[(RELEASE, "production")]
    text = HEADER + (_finding("ORG-W", "true", "warning", '{"X", "Y"}')
                     + _finding("ORG-V", 'some w in data.mlgate.findings.warnings\n\tw.id == "ORG-W"\n\tcount(w.controls & {"X"}) > 0'))
    policy = load_policy(_library_with(tmp_path, text))
    # Fixed by reading every finding as JSON has it in the composition, split or whole: a rule over
    # data.mlgate.findings sees the controls as an array either way (the set-only `&` is then undefined in both).
    whole = RvmEngine(policy, timeout_s=0).decide(_at(doc, BEFORE))
    assert "ORG-W" in {w["id"] for w in whole["warnings"]}
    assert _differences(policy, doc, (BEFORE, BEFORE)) == []


def test_an_undefined_complete_finding_rule_in_a_layer_does_not_blank_the_librarys_findings(tmp_path):
    """CRITICAL (every engine, with or without the split; OPA too): the generated composition reads every package's
    findings in one array literal, `{v | some vs in [data.mlgate.rules["bias"].violation, ...]; some v in vs}`. An
    organisation's layer whose `violation` is a complete rule that is undefined for this release makes that array
    undefined, so the composition is empty: every violation of the library disappears, and a release the library
    denies is allowed. The layer is loaded and linted without complaint."""
    from mlgate.policy.layers import load_layers

    org = _org_layer(tmp_path, {"mlgate/rules/org_t.rego": (
        "package mlgate.rules.org_t\n\nimport rego.v1\n\n" + _meta("ORG-FREEZE")
        + 'violation := {{"id": "ORG-FREEZE", "severity": "high", "controls": ["X"], "remediation": "r", "message": "frozen"}} if {\n'
        '\tinput.release.name == "no-such-release"\n}\n')})
    doc = _at(example_inputs()[("chest-xray", "production")], BEFORE)
    library = RvmEngine(load_policy(bundled_policy_dir()), timeout_s=0).decide(doc)
    assert library["allow"] is False and "MLG-BIAS-006" in _ids(library)
    try:
        policy = load_layers([org])
    except PolicyError:
        return  # refused at load: a finding rule must be a partial set (`violation contains ...`)
    for engine in (RvmEngine(policy, timeout_s=0), RvmEngine(policy, timeout_s=0, time_split=True)):
        got = engine.decide(doc)
        assert got["allow"] is False and _ids(library) <= _ids(got), _ids(got)


@pytest.mark.xfail(strict=True, reason="whole passes the VM cap (tree-walker: builtin error raises) while each split part stays under it (VM: undefined, allow)")
def test_the_split_decides_as_the_whole_policy_across_the_instruction_cap(tmp_path):
    """Whole, the VM's cap is reached and the tree-walker decides (a builtin error in an organisation's rule raises:
    a deny); split, each part stays under the cap and the VM decides (the same error read as undefined: allow)."""
    doc = example_inputs()[(RELEASE, "production")]
    heavy = ("package mlgate.rules.org_h\n\nimport rego.v1\n\nmany := count([x | some x in numbers.range(1, 2500); x % 7 == 0])\n\n"
             + _finding("ORG-H", "many < 0"))
    text = HEADER + _finding("ORG-NUM", "to_number(input.release.owner) < 0")
    policy = load_policy(_library_with(tmp_path, text, extra={"mlgate/rules/org_h.rego": heavy}))
    assert _differences(policy, doc, (BEFORE,)) == []


@pytest.mark.xfail(strict=True, reason="the VM reads a builtin error in an unguarded organisation rule as undefined; OPA and the tree-walker raise")
def test_the_compiled_engine_decides_as_the_tree_walker_on_a_builtin_error_in_an_organisations_rule(tmp_path):
    """The VM reads a builtin error as undefined where OPA and the tree-walker raise; the library guards its calls,
    an organisation's rule (to_number of a text field) does not: the default engine allows what OPA refuses."""
    from mlgate.policy.engine.regorus_engine import RegorusEngine

    doc = _at(example_inputs()[(RELEASE, "production")], BEFORE)
    policy = load_policy(_library_with(tmp_path, HEADER + _finding("ORG-NUM", "to_number(input.release.owner) < 0")))
    reference = outcome(RegorusEngine(policy, timeout_s=0).decide, doc)
    assert reference == ("error",)
    assert outcome(RvmEngine(policy, timeout_s=0).decide, doc) == reference


@pytest.mark.xfail(strict=True, reason="rule_cycles resolves a body-local variable to the package rule of that name (no scopes): a false recursion refusal")
def test_a_local_variable_named_like_a_rule_is_not_recursion(tmp_path):
    """False refusal: the dependency analysis resolves a body-local `summary := ...` to the package's rule `summary`
    (rego_ast.resolve has no scopes), finds violation -> summary -> violation and refuses at load a policy OPA accepts."""
    doc = _at(example_inputs()[(RELEASE, "production")], BEFORE)
    text = HEADER + 'summary := sprintf("%d findings", [count(violation)])\n\n' + _meta("ORG-S") + (
        'violation contains v if {\n\tsummary := "the release names no owner"\n\tnot input.release.owner\n'
        '\tv := {"id": "ORG-S", "severity": "high", "controls": ["X"], "remediation": "r", "message": summary}\n}\n')
    policy = load_policy(_library_with(tmp_path, text))
    assert RvmEngine(policy, timeout_s=0).decide(doc)["allow"] is True
    assert _differences(policy, example_inputs()[(RELEASE, "production")], (BEFORE,)) == []


def test_a_policy_with_nested_literals_is_loaded_or_refused_in_time(tmp_path):
    """The engine's parser takes exponential time in the nesting of array literals (depth 15: 1 s, 20: 40 s, each level
    doubling): a 70-byte rule in an organisation's layer hangs mlgate check, lint and the webhook's policy thread.
    Run in a subprocess, killed after 30 s."""
    org = _org_layer(tmp_path, {"mlgate/rules/org_t.rego": HEADER + "deep := " + "[" * 26 + "1" + "]" * 26 + "\n\n"
                                + _finding("ORG-1", "false")})
    script = textwrap.dedent(f"""
        from mlgate.errors import MlgateError
        from mlgate.policy.layers import load_layers
        try:
            load_layers([{str(org)!r}])
            print("loaded")
        except MlgateError as exc:
            print("refused:", exc)
        """)
    try:
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, cwd=REPO)
    except subprocess.TimeoutExpired:
        pytest.fail("loading the policy did not finish in 30 s")
    assert proc.returncode == 0, proc.stderr[-400:]


# ==================================================================== 2. the time split: refused or exact


def test_crash_attempts_on_the_split_engine_end_in_a_decision(tmp_path):
    """A huge comprehension, walk over the input, a long string, a backtracking-prone regex: each a
    decision or a refusal, never a dead process (run in a subprocess)."""
    bodies = {
        "comprehension": "count([x | some x in numbers.range(1, 200000)]) < 0",
        "walk": 'some path, value in walk(input)\n\tvalue == "never-there"',
        "long-string": 'count(concat("", [s | some _ in numbers.range(1, 20000); s := "aaaaaaaaaaaaaaaaaaaa"])) < 0',
        "regex": 'regex.match("^(a+)+$", concat("", ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "!"]))',
        "sprintf-deep": 'contains(sprintf("%v", [input]), "never-there")',
    }
    for name, cond in bodies.items():
        pol = _library_with(tmp_path / name, HEADER + _finding("ORG-" + name.upper(), cond))
        script = textwrap.dedent(f"""
            import sys
            sys.path.insert(0, {str(REPO / 'tests')!r})
            from opa_reference import example_inputs
            from mlgate.errors import MlgateError
            from mlgate.policy import load_policy
            from mlgate.policy.engine.rvm_engine import RvmEngine
            doc = example_inputs()[("readmission-risk", "production")]
            try:
                engine = RvmEngine(load_policy({str(pol)!r}), timeout_s=0, time_split=True)
                print("decided", engine.decide(doc)["allow"])
            except MlgateError as exc:
                print("refused:", exc)
            """)
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO)
        assert proc.returncode == 0, (name, proc.returncode, proc.stderr[-400:])
        assert "decided" in proc.stdout or "refused:" in proc.stdout, (name, proc.stdout)


def test_reading_environment_data_and_another_packages_helper_is_not_refused(tmp_path):
    """No false refusal for the ordinary reads: data.mlgate.environments[input.environment] and data.mlgate.rules[pk].x."""
    doc = example_inputs()[(RELEASE, "production")]
    extra = {"mlgate/rules/org_u.rego": "package mlgate.rules.org_u\n\nimport rego.v1\n\nlimit := 3\n"}
    text = HEADER + 'pk := "org_u"\n\n' + _finding(
        "ORG-ENV", 'tier := data.mlgate.environments[input.environment]\n\tis_object(tier)\n\tdata.mlgate.rules[pk].limit < 0')
    policy = load_policy(_library_with(tmp_path, text, extra=extra))
    assert _differences(policy, doc, (BEFORE, dt.datetime(2027, 12, 1, tzinfo=dt.timezone.utc))) == []
