"""Layered policies (issue 21 part 2): an organisation's own rule package, with its own Rego tests,
layered on the bundled library without forking it: from a directory, a bundle and a signed OCI
artifact in a real registry (Debian's docker-registry on 127.0.0.1), enforced by `mlgate check`
with `policies/` untouched; what a layer may not do is refused at load, one line naming both files;
`mlgate policy lint` reports the data a layer changes (an error when it loosens a threshold).

The organisation's package is the one the README walks a compliance officer through:
examples/org-policy (mlgate.rules.org_governance, MLG-ORG-001: production needs a verified review
by the AI governance board, which no example ships)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import registry_local
from cli_helpers import check_json, run
from conftest import EXAMPLES, REPO, require_service

from mlgate.errors import InputError, PolicyError
from mlgate.policy import bundled_policy_dir, load_policy, oci
from mlgate.policy.layers import LayeredPolicySet, unit_test_stages
from mlgate.signing.keys import generate_keypair

RELEASE = EXAMPLES / "readmission-risk"
ORG = EXAMPLES / "org-policy"
POLICIES = REPO / "policies"
ORG_ID = "MLG-ORG-001"


@pytest.fixture
def registry(tmp_path):
    if not registry_local.available():
        require_service("docker-registry", "apt-get install docker-registry (the CNCF Distribution registry)")
    reg = registry_local.start(tmp_path / "registry")
    yield reg
    reg.stop()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLGATE_OCI_CACHE", str(tmp_path / "oci-cache"))
    monkeypatch.setattr(oci, "_RESOLVED", {})


@pytest.fixture
def keys(tmp_path):
    out = {}
    for name in ("org", "other"):
        private, public = generate_keypair("ecdsa-p256")
        (tmp_path / f"{name}.key").write_bytes(private)
        (tmp_path / f"{name}.pub").write_bytes(public)
        out[name] = (tmp_path / f"{name}.key", tmp_path / f"{name}.pub")
    return out


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def records(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def ids(decision: dict) -> set[str]:
    return {v["id"] for v in decision["violations"]}


def org_copy(tmp_path: Path, name: str = "org") -> Path:
    dest = tmp_path / name
    shutil.copytree(ORG, dest)
    return dest


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


# --- the organisation's package: its own tests, layered --------------------------------------------


def test_the_org_package_tests_pass_layered_on_the_library():
    code, out, err = run(["policy", "test", "--policy", ORG])
    assert code == 0, out + err
    assert "6 tests: 6 passed" in out and "org_governance_test" in out
    assert "decision_test" not in out  # the library beneath is tested with mlgate, not here
    # With the library given as the base, its tests run on the library alone (the org's rule denies its
    # "good production input" on purpose), the org's on both.
    code, out, err = run(["policy", "test", "--policy", POLICIES, "--policy", ORG, "-q"])
    assert code == 0, out + err
    library = run(["policy", "test", POLICIES, "-q"])[1].strip().splitlines()[-1].split()[0]
    assert out.strip().splitlines()[-1].startswith(f"{int(library) + 6} tests: {int(library) + 6} passed")
    policy = load_policy((POLICIES, ORG))
    assert [label for label, _ in unit_test_stages(policy)] == ["policies", "examples/org-policy"]


def test_lint_of_the_layered_org_package_is_clean():
    code, out, err = run(["policy", "lint", "--policy", ORG])
    assert code == 0, out + err
    assert out.strip().splitlines()[-1].startswith("bundled + examples/org-policy: 0 finding(s)")


def test_the_generated_composition_counts_the_org_package():
    policy = load_policy((ORG,))
    assert isinstance(policy, LayeredPolicySet)
    (generated,) = [m.text for m in policy.modules if m.path == "mlgate/findings.generated.rego"]
    assert 'data.mlgate.rules["org_governance"].violation' in generated and 'data.mlgate.rules["bias"].violation' in generated
    assert [(layer.label, layer.beneath) for layer in policy.layers] == [("bundled", True), ("examples/org-policy", False)]
    # The org's data joins the library's environments; nothing of the library's was changed.
    assert policy.data["mlgate"]["environments"]["production"]["org_governance"] == {"board_review": True}
    assert policy.data["mlgate"]["environments"]["production"]["bias"]["delta"] == 0.05 and policy.changes == ()
    # Each module is named where it really is.
    shown = {m.path: str(policy.root / m.path) for m in policy.modules}
    assert shown["mlgate/rules/org_governance.rego"].endswith("examples/org-policy/mlgate/rules/org_governance.rego")
    assert shown["mlgate/decision.rego"] == str(bundled_policy_dir() / "mlgate/decision.rego")


# --- enforced by mlgate check: directory, bundle, OCI ---------------------------------------------------


def test_check_with_the_org_directory_layered(tmp_path):
    before = tree_digest(POLICIES)
    log = tmp_path / "a.jsonl"
    code, library, _ = check_json(RELEASE, "production", log)
    assert code == 0 and library["allowed"] is True
    code, alone, _ = check_json(RELEASE, "production", log, "--policy", ORG)
    assert code == 1 and ids(alone) == {ORG_ID}
    code, explicit, _ = check_json(RELEASE, "production", log, "--policy", POLICIES, "--policy", ORG)
    assert code == 1 and ids(explicit) == {ORG_ID}
    code, staging, _ = check_json(RELEASE, "staging", log, "--policy", ORG)
    assert code == 0, staging  # the org asks for the board only in production
    recs = records(log)
    # Same layers, same revision (the library beneath or named: the same files); the library alone differs.
    assert alone["policy_revision"] == explicit["policy_revision"] != library["policy_revision"]
    assert recs[1]["revision_inputs"]["policy"]["path"] == "bundled + examples/org-policy"
    assert [layer["path"] for layer in recs[1]["revision_inputs"]["policy"]["layers"]] == ["bundled", "examples/org-policy"]
    assert recs[1]["revision_inputs"]["policy"]["layers"][0]["beneath"] is True
    assert "beneath" not in recs[2]["revision_inputs"]["policy"]["layers"][0]
    assert "layers" not in recs[0]["revision_inputs"]["policy"]
    assert tree_digest(POLICIES) == before


def test_org_bundle_pushed_to_a_registry_and_enforced(tmp_path, registry, keys):
    """The org package, bundled, signed and pushed to a real registry; `mlgate check --policy oci://...`
    puts the library beneath it; `--policy policies --policy oci://...` names the base; policies/ untouched."""
    before = tree_digest(POLICIES)
    private, public = keys["org"]
    code, out, err = run(["policy", "push", ORG, f"oci://{registry.host}/acme/mlgate-org:2026-12", "--signing-key", private])
    assert code == 0, err
    digest = out.strip()
    ref = f"oci://{registry.host}/acme/mlgate-org@{digest}"
    log = tmp_path / "a.jsonl"

    code, on_library, _ = check_json(RELEASE, "production", log, "--policy", ref, "--bundle-key", public)
    assert code == 1 and ids(on_library) == {ORG_ID}, on_library
    code, on_base, _ = check_json(RELEASE, "production", log, "--policy", POLICIES, "--policy", ref, "--bundle-key", public)
    assert code == 1 and ids(on_base) == {ORG_ID}
    code, again, _ = check_json(RELEASE, "production", log, "--policy", ref, "--bundle-key", public)
    code_lib, library, _ = check_json(RELEASE, "production", log)
    code_dir, from_dir, _ = check_json(RELEASE, "production", log, "--policy", ORG)
    assert code_lib == 0 and code_dir == 1
    # The revision covers every layer: the same layers give the same revision, from a registry or a directory.
    assert on_library["policy_revision"] == on_base["policy_revision"] == again["policy_revision"] == from_dir["policy_revision"]
    assert on_library["policy_revision"] != library["policy_revision"]
    rec = records(log)[0]["revision_inputs"]["policy"]
    assert rec["path"] == f"bundled + {ref}"
    assert rec["layers"][0] == {"path": "bundled", "revision": load_policy(None).bundle_revision, "beneath": True}
    assert rec["layers"][1]["oci"] == {"reference": ref, "digest": digest} and rec["layers"][1]["path"] == ref

    # A signed layer without the key, or with another key, is refused: an error decision, exit 2.
    code, decision, err = check_json(RELEASE, "production", log, "--policy", ref)
    assert code == 2 and "bundle is signed" in decision["error"]
    code, decision, err = check_json(RELEASE, "production", log, "--policy", POLICIES, "--policy", ref, "--bundle-key", keys["other"][1])
    assert code == 2 and "signed by key id" in decision["error"]
    assert [r["result"] for r in records(log)][-2:] == ["error", "error"]
    # The org's tests pass on the pulled artifact too, layered.
    code, out, err = run(["policy", "test", "--policy", ref, "--bundle-key", public])
    assert code == 0 and "6 passed" in out, out + err
    assert tree_digest(POLICIES) == before


def test_the_webhook_enforces_the_org_artifact_on_the_library(tmp_path, registry, keys):
    """`mlgate serve` with `policy: oci://...` naming the org's artifact alone: the library goes beneath it,
    as for mlgate check; the decision names the org's finding and records both layers."""
    pytest.importorskip("uvicorn")
    from test_gatekeeper_support import RunningWebhook, admit, deployment

    from mlgate.gatekeeper.config import Settings

    private, public = keys["org"]
    ref = f"oci://{registry.host}/acme/mlgate-org:stable"
    code, out, err = run(["policy", "push", ORG, ref, "--signing-key", private])
    assert code == 0, err
    digest = out.strip()
    audit = tmp_path / "audit.jsonl"
    (tmp_path / "hook").mkdir()
    settings = Settings(evidence_store=f"file://{EXAMPLES}", audit=str(audit), trust_policy=EXAMPLES / "trust.yaml", policy_dir=ref,
                        bundle_key=public, policy_refresh_s=3600.0, gate_threads=1)
    hook = RunningWebhook(tmp_path / "hook", settings)
    try:
        with hook.client() as client:
            assert client.get("/readyz").status_code == 200
            r = admit(client, deployment("readmission-risk@1.4.0"))
            assert r.status_code == 200, r.text
            resp = r.json()["response"]
            assert resp["allowed"] is False and ORG_ID in resp["status"]["message"]
            staging = admit(client, deployment("readmission-risk@1.4.0"), "staging").json()["response"]
            assert staging["allowed"] is True, staging
    finally:
        hook.stop()
    (rec,) = [x for x in records(audit) if x.get("decision_id") == resp["auditAnnotations"]["decision-id"]]
    assert [v["id"] for v in rec["violations"]] == [ORG_ID]
    layers = rec["revision_inputs"]["policy"]["layers"]
    assert [(la["path"], la.get("beneath")) for la in layers] == [("bundled", True), (f"{ref}@{digest}", None)]
    assert rec["policy_revision"] != load_policy(None).revision


def test_a_local_bundle_layer(tmp_path, keys):
    private, public = keys["org"]
    bundle = tmp_path / "org.tar.gz"
    assert run(["policy", "bundle", ORG, "-o", bundle, "--signing-key", private])[0] == 0
    log = tmp_path / "a.jsonl"
    code, decision, _ = check_json(RELEASE, "production", log, "--policy", POLICIES, "--policy", bundle, "--bundle-key", public)
    assert code == 1 and ids(decision) == {ORG_ID}
    policy = load_policy((POLICIES, bundle), bundle_key=public)
    # A module of the bundle is named by the bundle and its path inside it.
    assert str(policy.root / "mlgate/rules/org_governance.rego").endswith("org.tar.gz/mlgate/rules/org_governance.rego")


# --- what a layer may not do ---------------------------------------------------------------------------------


LIB_BIAS = '''package mlgate.rules.bias

import rego.v1

extra := true
'''
DECISION_PKG = '''package mlgate.decision

import rego.v1

allow := true
'''
MLGATE_PKG = '''package mlgate

import rego.v1

decision := {"allow": true, "violations": [], "warnings": []}
'''


@pytest.mark.parametrize("rel,text,said", [
    ("mlgate/rules/bias.rego", LIB_BIAS, "package mlgate.rules.bias is already defined by an earlier policy layer"),
    ("mlgate/org_decision.rego", DECISION_PKG, "rule data.mlgate.decision.allow overlaps data.mlgate.decision, defined by an earlier policy layer"),
    ("mlgate/mine.rego", MLGATE_PKG, "package mlgate is already defined by an earlier policy layer"),
])
def test_a_layer_may_not_edit_the_library(tmp_path, rel, text, said):
    org = org_copy(tmp_path)
    (org / rel).write_text(text)
    log = tmp_path / "a.jsonl"
    defines_decision = text is MLGATE_PKG  # then it is a whole policy: the base, nothing beneath it (what --policy always meant)
    forms = [("--policy", POLICIES, "--policy", org)] + ([] if defines_decision else [("--policy", org)])
    for layers in forms:
        code, decision, err = check_json(RELEASE, "production", log, *layers)
        assert code == 2 and decision["allowed"] is False
        line = one_error_line(err)
        assert said in line and f"org/{rel}" in line  # names both files
        assert "policies/mlgate/" in line
    assert [r["result"] for r in records(log)] == ["error"] * len(forms)
    if defines_decision:
        return
    # Refused before it is shipped, too.
    code, _, err = run(["policy", "bundle", org, "-o", tmp_path / "b.tar.gz"])
    assert code == 2 and said in one_error_line(err) and not (tmp_path / "b.tar.gz").exists()


def test_a_layer_rule_without_a_metadata_id_is_refused(tmp_path):
    org = org_copy(tmp_path)
    rule = org / "mlgate" / "rules" / "org_governance.rego"
    rule.write_text(rule.read_text().replace("#   id: MLG-ORG-001\n", ""))
    code, decision, err = check_json(RELEASE, "production", tmp_path / "a.jsonl", "--policy", org)
    assert code == 2
    assert "org_governance.rego:" in one_error_line(err) and "has no METADATA custom.id" in decision["error"]
    code, out, _ = run(["policy", "lint", "--policy", org])  # lint still loads it, to name it
    assert code == 1 and "[id]" in out


def test_a_layer_may_not_change_the_type_of_a_value(tmp_path):
    org = org_copy(tmp_path)
    data = org / "mlgate" / "environments" / "production" / "data.json"
    data.write_text(json.dumps({"org_governance": {"board_review": True}, "bias": {"delta": "0.01"}}))
    with pytest.raises(PolicyError) as exc:
        load_policy((org,))
    line = exc.value.diagnostics()
    assert "data mlgate.environments.production.bias.delta is a string in policy layer" in line
    assert "org/mlgate/environments/production/data.json" in line and "policies/mlgate/environments/production/data.json" in line
    data.write_text(json.dumps({"org_governance": {"board_review": True}, "bias": 5}))
    with pytest.raises(PolicyError, match="is a number in policy layer .*, an object in an earlier layer"):
        load_policy((org,))


def test_a_layer_may_not_set_data_on_a_rule_path_of_another(tmp_path):
    org = org_copy(tmp_path)
    (org / "mlgate" / "rules" / "bias").mkdir()
    (org / "mlgate" / "rules" / "bias" / "data.json").write_text('{"violation": []}')
    with pytest.raises(PolicyError, match=r"data mlgate\.rules\.bias\.violation of policy layer .* sits on the path of rule "
                                          r"data\.mlgate\.rules\.bias\.violation of another layer .*bias\.rego"):
        load_policy((org,))


def test_a_trust_policy_ships_only_with_the_base(tmp_path):
    org = org_copy(tmp_path)
    shutil.copy(EXAMPLES / "trust.yaml", org / "trust.yaml")
    with pytest.raises(PolicyError, match="a trust policy ships only with the base policy"):
        load_policy((POLICIES, org))
    # The first source given is the base, the library beneath it or not: its trust policy is the policy's.
    assert load_policy((org,)).trust_policy_path == org / "trust.yaml"


# --- data: set and tighten, and lint ------------------------------------------------------------------


def _with_production(tmp_path: Path, values: dict) -> Path:
    org = org_copy(tmp_path)
    (org / "mlgate" / "environments" / "production" / "data.json").write_text(
        json.dumps({"org_governance": {"board_review": True}, **values}, indent=2) + "\n")
    return org


def test_a_tightened_threshold_is_what_evaluates(tmp_path):
    org = _with_production(tmp_path, {"bias": {"delta": 0.001, "non_inferiority": True}})
    policy = load_policy((org,))
    assert policy.data["mlgate"]["environments"]["production"]["bias"]["delta"] == 0.001
    assert policy.data["mlgate"]["environments"]["production"]["bias"]["alpha"] == 0.05  # the rest is the library's
    (change,) = policy.changes
    assert (change.dotted, change.before, change.after) == ("mlgate.environments.production.bias.delta", 0.05, 0.001)
    code, decision, _ = check_json(RELEASE, "production", tmp_path / "a.jsonl", "--policy", org)
    assert code == 1 and {ORG_ID, "MLG-BIAS-006"} <= ids(decision)  # the library's bias rule, at the org's delta
    code, out, err = run(["policy", "lint", "--policy", org])
    assert code == 0, out + err
    assert "bias.delta: 0.05 -> 0.001 by policy layer" in out and "tightens bias.delta (note)" in out


def test_lint_reports_a_loosened_threshold_as_an_error(tmp_path):
    org = _with_production(tmp_path, {"bias": {"delta": 0.2, "alpha": 0.01}, "evidence": {"max_age_days": 400},
                                      "model_signature": {"required": False}, "model_card": {"required_sections": ["intended_use"]}})
    code, out, err = run(["policy", "lint", "--policy", POLICIES, "--policy", org])
    assert code == 1, out + err
    errors = [line for line in out.splitlines() if "[layer-data]" in line and not line.endswith("(note)")]
    assert len(errors) == 4, out
    assert any("data.mlgate.environments.production.bias.delta: 0.05 -> 0.2 by policy layer" in e and "loosens" in e
               and "org/mlgate/environments/production/data.json:" in e and "policies/mlgate/environments/production/data.json" in e
               for e in errors)
    assert any("max_age_days: 365 -> 400" in e for e in errors)
    assert any("model_signature.required: true -> false" in e for e in errors)
    assert any("required_sections" in e for e in errors)
    assert "bias.alpha: 0.05 -> 0.01" in out and "changed (no documented direction) (note)" in out
    report = json.loads(run(["policy", "lint", "--policy", POLICIES, "--policy", org, "-o", "json"])[1])
    assert report["passed"] is False and len(report["notes"]) == 1
    # The loosened result is still what evaluates (lint is the gate on it, as for any policy change).
    assert load_policy((org,)).data["mlgate"]["environments"]["production"]["bias"]["delta"] == 0.2


# --- revisions, overrides, settings ------------------------------------------------------------------------


def test_revision_covers_every_layer_and_override(tmp_path):
    library, layered = load_policy(None), load_policy((ORG,))
    assert layered.revision != library.revision and layered.bundle_revision != library.bundle_revision
    assert load_policy((ORG,)).revision == layered.revision  # same layers, same revision
    assert load_policy((POLICIES, ORG)).revision == layered.revision
    org = org_copy(tmp_path)
    (org / "mlgate" / "rules" / "org_governance.rego").write_text(
        (org / "mlgate" / "rules" / "org_governance.rego").read_text() + "\n# reviewed\n")
    assert load_policy((org,)).revision != layered.revision
    # One source that defines the decision is loaded as it always was: the same policy, the same revision.
    assert type(load_policy((POLICIES,))) is type(library) and load_policy((POLICIES,)).revision == load_policy(POLICIES).revision
    override = tmp_path / "strict.json"
    override.write_text('{"mlgate": {"environments": {"production": {"bias": {"delta": 0.03}}}}}')
    with_override = load_policy((ORG,), data_overrides=[override])
    assert with_override.revision != layered.revision and with_override.overrides[0][0].endswith("strict.json")
    assert with_override.data["mlgate"]["environments"]["production"]["bias"]["delta"] == 0.03
    assert load_policy((POLICIES,), data_overrides=[override]).revision == load_policy(POLICIES, data_overrides=[override]).revision
    bad = tmp_path / "bad.json"
    bad.write_text('{"mlgate": {"rules": {"org_governance": {"violation": []}}}}')
    with pytest.raises(InputError, match="may not set a path a rule defines"):
        load_policy((ORG,), data_overrides=[bad])


def test_a_module_path_another_layer_uses_is_prefixed(tmp_path):
    org = org_copy(tmp_path)
    (org / "mlgate" / "lib").mkdir()
    (org / "mlgate" / "lib" / "lib.rego").write_text("package mlgate.org_lib\n\nimport rego.v1\n\nok := true\n")
    policy = load_policy((org,))
    paths = {m.path for m in policy.modules}
    assert {"org/mlgate/lib/lib.rego", "mlgate/lib/lib.rego"} <= paths  # the library's keeps its path
    assert str(policy.root / "org/mlgate/lib/lib.rego") == str(org / "mlgate/lib/lib.rego")
    # A problem only the merged policy shows (the engine checks its builtins when it is built) names the org's file.
    (org / "mlgate" / "lib" / "lib.rego").write_text("package mlgate.org_lib\n\nimport rego.v1\n\nclaims := io.jwt.decode(input.token)\n")
    code, decision, err = check_json(RELEASE, "production", tmp_path / "a.jsonl", "--policy", org)
    assert code == 2 and "org/mlgate/lib/lib.rego:5" in one_error_line(err) and "io.jwt.decode" in decision["error"]


def test_the_settings_file_names_the_layers(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copytree(ORG, project / "org-policy")
    (project / ".mlgate.yaml").write_text(f"trust: {EXAMPLES / 'trust.yaml'}\npolicy: [org-policy/]\n")
    monkeypatch.chdir(project)
    code, decision, err = check_json(RELEASE, "production", tmp_path / "a.jsonl")
    assert code == 1 and ids(decision) == {ORG_ID}, err
    (project / ".mlgate.yaml").write_text(f"trust: {EXAMPLES / 'trust.yaml'}\npolicy: [{POLICIES}, org-policy/]\n")
    assert ids(check_json(RELEASE, "production", tmp_path / "a.jsonl")[1]) == {ORG_ID}
    for text, said in (("policy: [org-policy/, 3]\n", ".mlgate.yaml: policy[1]: must be a non-empty string"),
                       ("policy: []\n", ".mlgate.yaml: policy: must be a policy source or a non-empty list")):
        (project / ".mlgate.yaml").write_text(text)
        code, _, err = run(["check", RELEASE, "--env", "production", "--audit-log", tmp_path / "a.jsonl"])
        assert code == 2 and said in one_error_line(err)


def test_gate_options_take_one_source_or_several():
    from mlgate.gate import GateOptions, prepare
    from mlgate.settings import load_settings

    settings = load_settings(REPO / ".mlgate.yaml")
    single = prepare(GateOptions(environment="production", policy_dir=POLICIES, settings=settings))
    layered = prepare(GateOptions(environment="production", policy_dir=(POLICIES, ORG), settings=settings))
    org_alone = prepare(GateOptions(environment="production", policy_dir=ORG, settings=settings))  # the webhook's one source
    assert "layers" not in single.inputs["policy"] and single.inputs["policy"]["path"].endswith("policies")
    assert layered.revision == org_alone.revision != single.revision
    assert [layer["path"] for layer in org_alone.inputs["policy"]["layers"]] == ["bundled", "examples/org-policy"]


def test_recheck_with_a_layered_settings_file_judges_with_the_organisation_rule(tmp_path, monkeypatch):
    """`policy:` as a list in .mlgate.yaml reaches mlgate recheck (once a traceback: a tuple where the audit
    sink wanted the base layer's path)."""
    (tmp_path / ".mlgate.yaml").write_text(f"policy: [{POLICIES}, {ORG}]\ntrust: {EXAMPLES / 'trust.yaml'}\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["recheck", "-f", EXAMPLES / "cluster" / "serving.yaml", "--evidence-store", f"file://{EXAMPLES}",
                          "--env", "production", "--audit", f"file:{tmp_path / 'a.jsonl'}"])
    assert "Traceback" not in err, err
    assert code == 1, (out, err)
    assert ORG_ID in out


def test_replay_with_an_organisation_package_alone_puts_the_library_beneath(tmp_path):
    """mlgate audit replay --policy ORG judges with the library and the organisation's rule, as mlgate check does."""
    from mlgate.replay import ReplayOptions, Replayer

    replayer = Replayer(ReplayOptions(policy=ORG))
    assert replayer.policy.revision != load_policy(POLICIES).revision
    texts = [m.text for m in replayer.policy.decision_modules()]
    assert any("package mlgate.rules.bias\n" in t for t in texts)  # the library, beneath
    assert any(ORG_ID in t for t in texts)  # and the organisation's rule


def test_a_layer_of_data_alone_tightens_a_threshold(tmp_path):
    """An organisation that only tightens thresholds ships data alone: the library beneath decides with it."""
    layer = tmp_path / "thresholds"
    (layer / "mlgate" / "environments" / "production").mkdir(parents=True)
    (layer / "mlgate" / "environments" / "production" / "data.json").write_text('{"bias": {"delta": 0.001}}')
    _, report, _ = check_json(RELEASE, "production", tmp_path / "a.jsonl", "--policy", layer)
    assert report["allowed"] is False and "MLG-BIAS-006" in {v["id"] for v in report["violations"]}
    code, out, _ = run(["policy", "lint", "--policy", POLICIES, "--policy", layer])
    assert "tightens bias.delta" in out
    from mlgate.policy.bundle import build_bundle

    bundle = tmp_path / "thresholds.tar.gz"
    build_bundle(layer, bundle)  # ships as a bundle too
    assert check_json(RELEASE, "production", tmp_path / "b.jsonl", "--policy", bundle)[1]["allowed"] is False


def test_a_layer_with_neither_rules_nor_data_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    code, out, err = run(["check", RELEASE, "--env", "production", "--policy", tmp_path / "empty", "--audit-log", tmp_path / "a.jsonl"])
    assert code == 2 and "no Rego policy and no data found" in err
