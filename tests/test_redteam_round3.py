"""Red team, round 3: the time split (mlgate/policy/timesplit.py, RvmEngine(time_split=True), the
webhook's engines), layered policies (mlgate/policy/layers.py) and the webhook's policy from OCI.

Each attack that works today is an expected failure (``xfail(strict=True)``): the test asserts what
mlgate should do, and fails until it does. The attacks that are refused are plain tests. The model:
whoever writes an organisation's rule package (a policy layer) or pushes a bundle to the registry,
writing rules that look ordinary; the split must decide exactly what the whole policy decides
(``RvmEngine(policy, timeout_s=0)`` against ``RvmEngine(policy, timeout_s=0, time_split=True)``), at
any time, in any order of admissions of the same release."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from opa_reference import example_inputs, first_difference, outcome

from mlgate.clock import epoch_ns, rfc3339
from mlgate.errors import PolicyError
from mlgate.policy import bundled_policy_dir, load_policy
from mlgate.policy.engine.rvm_engine import RvmEngine

REPO = Path(__file__).resolve().parent.parent

FREEZE_NS = 1801440000000000000  # 2027-02-01T00:00:00Z: an organisation's "no deployments after" date
BEFORE = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)  # the example's approvals hold (until 2027-11-01)
AFTER = dt.datetime(2027, 3, 1, tzinfo=dt.timezone.utc)  # past the freeze, the approvals still hold

HEADER = "package mlgate.rules.org_t\n\nimport rego.v1\n\nimport data.mlgate.lib\n\n"


def _meta(fid: str) -> str:
    return f"# METADATA\n# title: t\n# custom:\n#   id: {fid}\n#   severity: high\n#   controls: [X]\n#   remediation: r\n"


def _finding(fid: str, cond: str, kind: str = "violation") -> str:
    return (_meta(fid) + f"{kind} contains v if {{\n\t{cond}\n\tv := {{\"id\": \"{fid}\", \"severity\": \"high\", "
            f"\"controls\": [\"X\"], \"remediation\": \"r\", \"message\": \"m\"}}\n}}\n\n")


def _at(doc: dict, when: dt.datetime) -> dict:
    return {**doc, "evaluated_at_ns": epoch_ns(when), "evaluated_at": rfc3339(when)}


@pytest.fixture(scope="module")
def release_doc():
    """readmission-risk in production: allowed by the library between 2026-11 and 2027-11."""
    return example_inputs()[("readmission-risk", "production")]


def _library_with(tmp_path: Path, text: str, name: str = "org_t.rego", extra: dict[str, str] | None = None) -> Path:
    pol = tmp_path / "policies"
    shutil.copytree(REPO / "policies", pol, ignore=shutil.ignore_patterns("__pycache__"))
    (pol / "mlgate" / "rules" / name).write_text(text)
    for rel, body in (extra or {}).items():
        (pol / rel).write_text(body)
    return pol


def _org_layer(tmp_path: Path, files: dict[str, str]) -> Path:
    """An organisation's layer alone (the library goes beneath it)."""
    org = tmp_path / "org"
    for rel, body in files.items():
        (org / rel).parent.mkdir(parents=True, exist_ok=True)
        (org / rel).write_text(body)
    return org


def _differences(policy, doc: dict, times) -> list[tuple[str, str]]:
    """Admit ``doc`` at each time in order on a whole and a split engine: where they differ."""
    whole, split = RvmEngine(policy, timeout_s=0), RvmEngine(policy, timeout_s=0, time_split=True)
    out = []
    for when in times:
        at = _at(doc, when)
        want, got = outcome(whole.decide, at), outcome(split.decide, at)
        if want != got:
            out.append((rfc3339(when), first_difference(want, got)))
    return out


def _ids(decision: dict) -> set[str]:
    return {v["id"] for v in decision["violations"]}


# ==================================================================== 1. the time split: attacks that work


def test_an_accessor_whose_key_is_shadowed_does_not_hide_a_time_read(tmp_path, release_doc):
    text = HEADER + ("get(p, q) := v if {\n\tv := [x | q := \"evaluated_at_ns\"; x := object.get(p, q, 0)][0]\n}\n\n"
                     + _finding("ORG-FREEZE-1", f'get(input, "model") > {FREEZE_NS}'))
    policy = load_policy(_library_with(tmp_path, text))
    whole = RvmEngine(policy, timeout_s=0).decide(_at(release_doc, AFTER))
    assert "ORG-FREEZE-1" in _ids(whole) and whole["allow"] is False  # the organisation's freeze denies it
    # The webhook (split) allows it at every admission, cached or not: it never sees the time there.
    assert _differences(policy, release_doc, (AFTER,)) == []
    assert _differences(policy, release_doc, (BEFORE, AFTER)) == []


def test_a_violation_reading_the_timed_warnings_is_not_cached(tmp_path, release_doc):
    # An ordinary organisation rule: "in production, the freeze warning blocks" (the warning reads the time).
    text = HEADER + (_finding("ORG-W-FREEZE", f"input.evaluated_at_ns > {FREEZE_NS}", "warning")
                     + _finding("ORG-NO-FREEZE", 'some w in data.mlgate.findings.warnings\n\tw.id == "ORG-W-FREEZE"'))
    policy = load_policy(_library_with(tmp_path, text))
    whole = RvmEngine(policy, timeout_s=0)
    assert whole.decide(_at(release_doc, BEFORE))["allow"] is True
    assert "ORG-NO-FREEZE" in _ids(whole.decide(_at(release_doc, AFTER)))
    # admitted before the freeze, then after: the split allows after (the violation cached absent) ...
    assert _differences(policy, release_doc, (BEFORE, AFTER)) == []
    # ... and, admitted after first, denies before (cached present)
    assert _differences(policy, release_doc, (AFTER, BEFORE)) == []


def test_a_partial_object_rule_that_reads_the_time_is_timed(tmp_path, release_doc):
    text = HEADER + (f'frozen[k] := true if {{\n\tinput.evaluated_at_ns > {FREEZE_NS}\n\tk := "production"\n}}\n\n'
                     + _finding("ORG-FREEZE-2", "frozen[input.environment]"))
    policy = load_policy(_library_with(tmp_path, text))
    assert "ORG-FREEZE-2" in _ids(RvmEngine(policy, timeout_s=0).decide(_at(release_doc, AFTER)))
    assert _differences(policy, release_doc, (BEFORE, AFTER)) == []


def test_a_rule_may_not_read_mlgates_reserved_data(tmp_path, release_doc):
    text = HEADER + _finding("ORG-HIDDEN", 'not data["mlgate:input"]')  # fires in CI (whole), never in the webhook
    policy = load_policy(_library_with(tmp_path, text))
    assert "ORG-HIDDEN" in _ids(RvmEngine(policy, timeout_s=0).decide(_at(release_doc, BEFORE)))
    try:
        diffs = _differences(policy, release_doc, (BEFORE,))
    except PolicyError:
        return  # refused at load: what should happen
    assert diffs == []


def test_equal_static_and_timed_findings_are_one_finding(tmp_path, release_doc):
    finding = '{"id": "ORG-SET", "severity": "high", "controls": {"X"}, "remediation": "r", "message": "m"}'
    text = HEADER + (_meta("ORG-SET") + f"violation contains {finding} if true\n\n"
                     + _meta("ORG-SET") + f"violation contains {finding} if input.evaluated_at_ns > 0\n\n")
    policy = load_policy(_library_with(tmp_path, text))
    assert _differences(policy, release_doc, (BEFORE,)) == []


def test_mutually_recursive_rules_are_refused_not_a_crash(tmp_path):
    pol = _library_with(tmp_path, HEADER + "a if b\n\nb if a\n\n" + _finding("ORG-REC", "a"))
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
            engine.decide(doc)
        except MlgateError as exc:
            print("refused:", exc)
        """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-400:]}"
    assert "refused:" in proc.stdout


# ==================================================================== 1. the time split: refused or exact


EXACT = {
    "import-alias": ("import input.evaluated_at_ns as t\n\n", "t > {F}"),
    "else-chain": ("late := true if input.evaluated_at_ns > {F} else := false\n\n", "late"),
    "marshal": ("", 'contains(json.marshal(input), "2027-03")'),
    "object-keys": ("", 'some k in object.keys(input)\n\tk == "evaluated_at_ns"\n\tinput[k] > {F}'),
    "every": ("", "every x in [1] {{ x == 1; input.evaluated_at_ns > {F} }}"),
    "comprehension": ("", "count([x | x := input.evaluated_at_ns; x > {F}]) > 0"),
    "three-functions": ("f1(x) := f2(x)\n\nf2(y) := f3(y)\n\nf3(z) := z.evaluated_at_ns\n\n", "f1(input) > {F}"),
    "accessor-of-accessor": ("g(p, q) := object.get(p, q, 0)\n\nh(a, b) := g(a, b)\n\n", 'h(input, "evaluated_at_ns") > {F}'),
    "default": ("default late := false\n\nlate := true if input.evaluated_at_ns > {F}\n\n", "late"),
    "library-helper": ("", "lib.now_ns > {F}"),
    "computed-package": ('pk := "org_u"\n\n', "data.mlgate.rules[pk].late"),
    "object-get-path": ("", 'object.get(input, ["evaluated_at_ns"], 0) > {F}'),
}


@pytest.mark.parametrize("case", sorted(EXACT))
def test_each_odd_way_of_reading_the_time_decides_as_the_whole_policy(tmp_path, release_doc, case):
    prelude, cond = EXACT[case]
    text = HEADER + prelude.replace("{F}", str(FREEZE_NS)) + _finding("ORG-ODD", cond.replace("{F}", str(FREEZE_NS)).replace("{{", "{").replace("}}", "}"))
    extra = {"mlgate/rules/org_u.rego": f"package mlgate.rules.org_u\n\nimport rego.v1\n\nlate if input.evaluated_at_ns > {FREEZE_NS}\n"}
    policy = load_policy(_library_with(tmp_path, text, extra=extra))
    assert "ORG-ODD" in _ids(RvmEngine(policy, timeout_s=0).decide(_at(release_doc, AFTER)))
    assert _differences(policy, release_doc, (BEFORE, AFTER, BEFORE)) == []
    assert _differences(policy, release_doc, (AFTER, BEFORE, AFTER)) == []


def test_with_is_refused_by_the_compiled_engine_at_load(tmp_path):
    text = HEADER + f"late if input.evaluated_at_ns > {FREEZE_NS}\n\n" + _finding("ORG-WITH", "not late with input.request as {}")
    policy = load_policy(_library_with(tmp_path, text))
    with pytest.raises(PolicyError, match="with"):
        RvmEngine(policy, timeout_s=0, time_split=True)


@pytest.mark.parametrize("key", ["mlgate:static", "mlgate:input"])
def test_a_layer_setting_the_reserved_data_keys_is_refused_by_the_webhooks_engine(tmp_path, key):
    from mlgate.policy.layers import load_layers

    org = _org_layer(tmp_path, {"mlgate/rules/org_t.rego": HEADER + _finding("ORG-1", "false"),
                                "data.json": json.dumps({key: {"violations": [], "warnings": []}})})
    with pytest.raises(PolicyError, match="may not set"):
        RvmEngine(load_layers([org]), timeout_s=0, time_split=True)


@pytest.mark.parametrize("name", ["static", "static_violations_now", "static_violations", "cached"])
def test_data_over_the_split_composition_is_refused_by_the_compiled_engine(tmp_path, name):
    """The split's generated rules (data.mlgate.findings.static...) are not the whole policy's, so the load
    check does not see them; the VM refuses the rule-data conflict instead (fail closed)."""
    from mlgate.policy.layers import load_layers

    org = _org_layer(tmp_path, {"mlgate/rules/org_t.rego": HEADER + _finding("ORG-1", "false"),
                                "data.json": json.dumps({"mlgate": {"findings": {name: []}}})})
    with pytest.raises(PolicyError, match="conflict|may not set mlgate.findings"):
        RvmEngine(load_layers([org]), timeout_s=0, time_split=True)


def test_an_approval_expiring_between_admissions_of_generated_inputs(release_doc):
    """The same release, admitted while its approvals hold and after they expired, interleaved with other releases."""
    from opa_reference import mutations

    library = load_policy(bundled_policy_dir())
    whole, split = RvmEngine(library, timeout_s=0), RvmEngine(library, timeout_s=0, time_split=True)
    others = [doc for _, doc in mutations(list(example_inputs().values()), 40, seed=311)]
    expired = dt.datetime(2027, 12, 1, tzinfo=dt.timezone.utc)  # its approvals' credentials ended 2027-11
    for i, other in enumerate(others):
        for doc, when in ((release_doc, BEFORE), (other, AFTER), (release_doc, expired), (other, BEFORE)):
            at = _at(doc, when)
            assert outcome(whole.decide, at) == outcome(split.decide, at), (i, rfc3339(when))
    late = split.decide(_at(release_doc, expired))
    assert late["allow"] is False and "MLG-APPR-008" in _ids(late)


# ==================================================================== 2. layered policies


@pytest.mark.parametrize("header", ["package\nmlgate.rules.bias", 'package mlgate.rules["bias"]'])
def test_a_later_layer_may_not_extend_a_library_package_however_written(tmp_path, header):
    from mlgate.policy.layers import load_layers

    org = _org_layer(tmp_path, {"mlgate/rules/org_t.rego": f"{header}\n\nimport rego.v1\n\nextra_helper := 1\n"})
    with pytest.raises(PolicyError, match="already defined by an earlier policy layer"):
        load_layers([org])


def test_a_later_layer_declaring_a_library_package_is_refused(tmp_path):
    from mlgate.policy.layers import load_layers

    org = _org_layer(tmp_path, {"mlgate/rules/org_t.rego": "package mlgate.rules.bias\n\nimport rego.v1\n\nextra_helper := 1\n"})
    with pytest.raises(PolicyError, match="already defined by an earlier policy layer"):
        load_layers([org])


@pytest.mark.parametrize("header", ["package\nmlgate.findings", 'package mlgate["findings"]'])
def test_a_layer_may_not_define_the_generated_package_however_written(tmp_path, header):
    from mlgate.policy.layers import load_layers

    org = _org_layer(tmp_path, {"mlgate/rules/org_t.rego": HEADER + _finding("ORG-1", "false"),
                                "mlgate/zz.rego": f"{header}\n\nimport rego.v1\n\nviolations := set()\n"})
    with pytest.raises(PolicyError, match="generated by mlgate"):
        load_layers([org])


def test_a_layer_defining_the_generated_package_plainly_is_refused(tmp_path):
    from mlgate.policy.layers import load_layers

    org = _org_layer(tmp_path, {"mlgate/rules/org_t.rego": HEADER + _finding("ORG-1", "false"),
                                "mlgate/zz.rego": "package mlgate.findings\n\nimport rego.v1\n\nviolations := set()\n"})
    with pytest.raises(PolicyError, match="generated by mlgate"):
        load_layers([org])


@pytest.mark.parametrize("key", ["required", "clean_tree", "training_commit", "dataset_digests", "independent_eval"])
def test_lint_reports_a_layer_turning_provenance_off(tmp_path, key):
    from mlgate.policy.layers import load_layers
    from mlgate.policytools.lint import check_layers

    org = _org_layer(tmp_path, {"mlgate/rules/org_t.rego": HEADER + _finding("ORG-1", "false"),
                                "data.json": json.dumps({"mlgate": {"environments": {"production": {"provenance": {key: False}}}}})})
    errors, _notes = check_layers(load_layers([org]))
    assert any(f"provenance.{key}" in e.message and "loosens" in e.message for e in errors), [e.message for e in errors]


def test_lint_reports_a_layer_loosening_a_documented_threshold(tmp_path):
    from mlgate.policy.layers import load_layers
    from mlgate.policytools.lint import check_layers

    org = _org_layer(tmp_path, {"mlgate/rules/org_t.rego": HEADER + _finding("ORG-1", "false"),
                                "data.json": json.dumps({"mlgate": {"environments": {"production": {"model_signature": {"required": False}}}}})})
    errors, _notes = check_layers(load_layers([org]))
    assert any("model_signature.required" in e.message and "loosens" in e.message for e in errors)


def test_a_crafted_composition_file_in_a_policy_is_ignored(tmp_path, release_doc):
    """mlgate/findings.generated.rego shipped in a policy (as `mlgate policy bundle` writes it) is generated again:
    one that leaves the approvals out changes nothing."""
    crafted = ("package mlgate.findings\n\nimport rego.v1\n\nviolations := {v | some v in data.mlgate.rules.bias.violation}\n\n"
               "warnings := set()\n")
    pol = _library_with(tmp_path, HEADER + _finding("ORG-1", "false"), extra={"mlgate/findings.generated.rego": crafted})
    policy = load_policy(pol)
    assert policy.bundle_revision == load_policy(_library_with(tmp_path / "b", HEADER + _finding("ORG-1", "false"))).bundle_revision
    late = RvmEngine(policy, timeout_s=0, time_split=True).decide(_at(release_doc, dt.datetime(2027, 12, 1, tzinfo=dt.timezone.utc)))
    assert late["allow"] is False and "MLG-APPR-008" in _ids(late)


# ==================================================================== 3. the webhook's policy from OCI


def _retag(registry, repo: str, digest: str, tag: str) -> None:
    """Move ``tag`` back to an older manifest the registry still holds (what anyone who may push can do)."""
    import urllib.request

    media = "application/vnd.oci.image.manifest.v1+json"
    base = f"http://{registry.host}/v2/{repo}/manifests"
    with urllib.request.urlopen(urllib.request.Request(f"{base}/{digest}", headers={"Accept": media})) as r:
        body, media = r.read(), r.headers.get("Content-Type", media)
    req = urllib.request.Request(f"{base}/{tag}", data=body, method="PUT", headers={"Content-Type": media})
    with urllib.request.urlopen(req) as r:
        assert r.status in (200, 201)


def test_a_replayed_older_signed_bundle_is_taken_and_recorded_as_a_change(tmp_path):
    """Downgrade: the tag moved back to an older bundle, validly signed. It is not refused (a signature says who
    published it, not that it is the newest), but the switch back is a recorded policy change naming both digests,
    and the decisions after it carry the old revision again."""
    import registry_local
    from conftest import require_service
    from test_serve_policy_oci import judged, push, records, refresh, serve

    from mlgate.policy import oci
    from mlgate.signing.keys import generate_keypair

    if not registry_local.available():
        require_service("docker-registry", "apt-get install docker-registry (the CNCF Distribution registry)")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLGATE_OCI_CACHE", str(tmp_path / "oci-cache"))
    mp.setattr(oci, "_RESOLVED", {})
    private, public = generate_keypair("ecdsa-p256")
    (tmp_path / "team.key").write_bytes(private)
    (tmp_path / "team.pub").write_bytes(public)
    strict = tmp_path / "strict-policy"
    shutil.copytree(bundled_policy_dir(), strict, ignore=shutil.ignore_patterns("__pycache__"))
    data = strict / "mlgate" / "environments" / "production" / "data.json"
    doc = json.loads(data.read_text())
    doc["bias"]["delta"] = 0.001
    data.write_text(json.dumps(doc, indent=1))
    reg = registry_local.start(tmp_path / "registry")
    try:
        ref = f"oci://{reg.host}/compliance/mlgate:stable"
        d1 = push(bundled_policy_dir(), ref, tmp_path / "team.key")
        hook = serve(tmp_path, ref, tmp_path / "team.pub")
        try:
            with hook.client() as client:
                allowed, first = judged(client, hook)
                assert allowed is True
                d2 = push(strict, ref, tmp_path / "team.key")
                assert refresh(hook) is True and judged(client, hook)[0] is False
                _retag(reg, "compliance/mlgate", d1, "stable")  # the replay
                assert refresh(hook) is True
                allowed, after = judged(client, hook)
                assert allowed is True and after["policy_revision"] == first["policy_revision"]
                changes = [x for x in records(tmp_path / "audit.jsonl") if x.get("kind") == "policy-change"]
                assert [(c["old"]["digest"], c["new"]["digest"]) for c in changes] == [(d1, d2), (d2, d1)]
                assert [c["new"]["rollback"] for c in changes] == [False, True]  # moved back to an older bundle: said so
        finally:
            hook.stop()
    finally:
        reg.stop()
        mp.undo()


def test_a_policy_switch_starts_the_split_with_an_empty_cache(tmp_path, release_doc):
    """The static findings are kept per engine, and a new policy is a new engine: nothing cached under one
    policy is used under the next (the same release, the same static key)."""
    from mlgate.policy.timesplit import static_key

    org = HEADER + _finding("ORG-ALWAYS", "true")
    first = RvmEngine(load_policy(bundled_policy_dir()), timeout_s=0, time_split=True)
    at = _at(release_doc, BEFORE)
    assert first.decide(at, static_key=static_key(at))["allow"] is True
    second = RvmEngine(load_policy(_library_with(tmp_path, org)), timeout_s=0, time_split=True)
    assert second.static_hits == second.static_misses == 0
    got = second.decide(at, static_key=static_key(at))
    assert got["allow"] is False and "ORG-ALWAYS" in _ids(got) and second.static_misses == 1
