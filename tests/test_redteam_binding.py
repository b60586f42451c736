"""Red team of issue 14 (bind what is promoted to what was reviewed), as implemented on main.

The attacker holds ONE approver key (Jane Roe, clinical-safety-officer; or Sam Patel, QA),
write access to the release directory and the evidence store, and the command line, the
environment and the working directory of the CI job. Each test states the SAFE outcome (a deny,
a waiver that does not apply, an error, or an audit record that tells the truth). A test marked
``xfail(strict=True, reason="red team: ...")`` is an attack that WORKS on the current code: the
marker keeps the suite green and turns red the day the hole is closed (then drop the marker).

Where a test re-signs with both example keys, it simulates honest reviewers who signed what
they were shown: the question is whether the gate itself catches the trick.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import pytest

from mlgate.errors import InputError
import yaml

from cli_helpers import resign_approvals, run
from conftest import EXAMPLES, EXAMPLES_NOW, REPO

from mlgate.evidence.approval import create_approval
from mlgate.evidence.model_digest import compute_model_digest
from mlgate.evidence.waiver import create_waiver
from mlgate.manifest import load_release
from mlgate.policy.policyset import bundled_policy_dir

TRUST = EXAMPLES / "trust.yaml"
KEYS = EXAMPLES / "keys"
JANE = {"printed_name": "Dr. Jane Roe", "signer_id": "jane.roe@hospital.example", "role": "clinical-safety-officer"}
JUSTIFICATION = "Accepted risk, mitigated by a manual double check until the next release (CAPA-2026-999)."


# --------------------------------------------------------------------------- helpers
def _copy(tmp_path: Path, name: str = "readmission-risk") -> Path:
    dst = tmp_path / name
    shutil.copytree(EXAMPLES / name, dst)
    return dst


def _edit(release: Path, change) -> None:
    path = release / "mlgate.yaml"
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def _check(release: Path, env: str, tmp_path: Path, *extra, trust=TRUST):
    args = ["check", release, "--env", env, "-o", "json", "--audit-log", tmp_path / "audit.jsonl", *extra]
    if trust is not None:
        args[2:2] = ["--trust", trust]
    code, out, err = run(args)
    return code, (json.loads(out) if out.strip().startswith("{") else None), err


def _ids(decision) -> set[str]:
    return {v["id"] for v in decision["violations"]}


def _last_record(tmp_path: Path) -> dict:
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    return json.loads(lines[-1])


def _with_waivers_dir(release: Path) -> Path:
    """List a waivers directory (``spec.evidence.waivers`` is not bound: approvals stay valid)."""
    _edit(release, lambda doc: doc["spec"]["evidence"].update(waivers=["evidence/waivers/"]))
    (release / "evidence" / "waivers").mkdir(exist_ok=True)
    return release / "evidence" / "waivers"


def _jane_waiver(release: Path, rules: list[str], env: str = "production", name: str = "jane.sigstore.json") -> Path:
    """Jane (the one key the attacker holds) signs a waiver bound to the release as it is now."""
    signed_at = EXAMPLES_NOW - dt.timedelta(days=1)
    bundle = create_waiver(
        (KEYS / "jane.roe.key").read_bytes(), release_name=load_release(release).name,
        model_digest=compute_model_digest(release / "model").root, rules=rules, environment=env,
        justification=JUSTIFICATION, signed_at=signed_at, expires_at=signed_at + dt.timedelta(days=20),
        ticket="CAPA-2026-999", release=load_release(release).binding, **JANE,
    )
    path = _with_waivers_dir(release) / name
    path.write_bytes(bundle)
    return path


def _applied(decision) -> list[dict]:
    return [w for w in decision["waivers"] if w["applied"]]


# =========================================================================== 1. the release directory
def test_dataset_file_replaced_by_a_directory_is_denied(tmp_path):
    """No key needed: replace data/train.csv by a directory holding other data. The manifest (and
    so every approval) is unchanged; the gate cannot hash a directory and calls it 'not a local
    file', a low warning. Safe: a local dataset path that is not the declared file is MLG-DATA-006."""
    release = _copy(tmp_path)
    (release / "data" / "train.csv").unlink()
    (release / "data" / "train.csv").mkdir()
    (release / "data" / "train.csv" / "part-0.csv").write_text("age,readmitted\n1,0\n")
    code, decision, _ = _check(release, "production", tmp_path)
    assert code == 1, decision["warnings"]
    assert "MLG-DATA-006" in _ids(decision)


def test_dataset_file_with_other_content_is_denied(tmp_path):
    release = _copy(tmp_path)
    (release / "data" / "train.csv").write_text("age,readmitted\n1,0\n")
    code, decision, _ = _check(release, "production", tmp_path)
    assert code == 1 and "MLG-DATA-006" in _ids(decision)


def test_dataset_symlink_out_of_the_release_is_an_error(tmp_path):
    release = _copy(tmp_path)
    outside = tmp_path / "elsewhere.csv"
    shutil.copy(release / "data" / "train.csv", outside)
    (release / "data" / "train.csv").unlink()
    (release / "data" / "train.csv").symlink_to(outside)
    code, _decision, err = _check(release, "production", tmp_path)
    assert code == 2 and "outside the release directory" in err


def test_dataset_hard_link_with_the_same_bytes_changes_nothing_and_other_bytes_deny(tmp_path):
    """A hard link is the same file: identical bytes stay allowed, and writing through the other
    name changes the dataset's digest (denied)."""
    release = _copy(tmp_path)
    other = tmp_path / "linked.csv"
    os.link(release / "data" / "train.csv", other)
    code, decision, _ = _check(release, "production", tmp_path)
    assert code == 0, decision["violations"]
    with open(other, "a") as fh:
        fh.write("1,1\n")
    code, decision, _ = _check(release, "production", tmp_path)
    assert code == 1 and "MLG-DATA-006" in _ids(decision)


@pytest.mark.xfail(strict=True, reason="red team: files under the model's git paths (.git/, .gitattributes, .github/, .gitignore) "
                                       "are outside the model digest and the model signature: production stays ALLOWED")
def test_a_file_added_where_the_model_digest_does_not_look_is_denied(tmp_path):
    """model-signing ignores the git paths at the top of the model, and so does the model digest
    the approvals sign. Whatever is put there ships with the model directory unreviewed (a serving
    runtime that loads every file, or a `git lfs` attribute that changes what is fetched)."""
    release = _copy(tmp_path)
    (release / "model" / ".git").mkdir()
    (release / "model" / ".git" / "model.pkl").write_bytes(b"unreviewed weights")
    (release / "model" / ".gitattributes").write_text("*.pkl filter=lfs diff=lfs merge=lfs -text\n")
    code, decision, _ = _check(release, "production", tmp_path)
    assert code == 1, "a file inside the model directory changed nothing that was signed"


def _unsigned_model_release(tmp_path: Path) -> Path:
    """readmission-risk without a model signature, honestly approved for staging by Jane."""
    release = _copy(tmp_path)
    _edit(release, lambda doc: doc["spec"]["model"].pop("signature"))
    (release / "model.sig").unlink()
    resign_approvals(release)
    return release


@pytest.mark.xfail(strict=True, reason="red team: the model digest concatenates per-file digests without their names; renaming "
                                       "model files (order kept) keeps every approval valid when no model signature is required")
def test_renaming_model_files_voids_the_approval(tmp_path):
    """An attacker without any key renames files of an approved model (staging: no model signature
    required). The root digest hashes only the files' digests in name order, not the names, so
    config.json/model.pkl -> config.json/weights.pkl (or any rename keeping the order) is the
    'same model' to every approval."""
    release = _unsigned_model_release(tmp_path)
    code, decision, _ = _check(release, "staging", tmp_path)
    assert code == 0, decision["violations"]
    (release / "model" / "model.pkl").rename(release / "model" / "weights.pkl")
    (release / "model" / "config.json").rename(release / "model" / "a-config.json")
    code, decision, _ = _check(release, "staging", tmp_path)
    assert code == 1, "renamed model files kept the approval"


def test_renaming_model_files_is_caught_by_the_model_signature(tmp_path):
    release = _copy(tmp_path)
    (release / "model" / "model.pkl").rename(release / "model" / "weights.pkl")
    for env in ("staging", "production"):
        code, decision, _ = _check(release, env, tmp_path)
        assert code == 1 and "MLG-SIG-005" in _ids(decision), env


def test_evidence_file_symlinked_to_another_evidence_file_is_denied(tmp_path):
    release = _copy(tmp_path)
    (release / "evidence" / "validation_eval.json").unlink()
    (release / "evidence" / "validation_eval.json").symlink_to("validation_train.json")
    code, decision, _ = _check(release, "production", tmp_path)
    assert code == 1 and "MLG-APPR-012" in _ids(decision)


# =========================================================================== 2. the manifest (YAML)
def test_duplicate_keys_in_the_manifest_are_refused(tmp_path):
    """`storageUri:` twice. PyYAML keeps the last; a reader of the text (the reviewer) or another
    parser (first wins) sees the first. Binding the parsed value is consistent inside mlgate, but
    the file no longer says one thing: refuse it (exit 2), as JSON-with-duplicates should be."""
    release = _copy(tmp_path)
    manifest = release / "mlgate.yaml"
    text = manifest.read_text()
    uri = "    storageUri: s3://models.hospital.example/readmission-risk/1.4.0/\n"
    assert uri in text
    manifest.write_text(text.replace(uri, uri + "    storageUri: s3://attacker-bucket/readmission-risk/1.4.0/\n"))
    with pytest.raises(InputError, match="duplicate key 'storageUri'"):
        resign_approvals(release)  # nobody can even sign it now
    code, _decision, err = _check(release, "production", tmp_path)
    assert code == 2 and "duplicate" in err.lower()


def test_yaml_aliases_and_alias_merge_keys_are_refused(tmp_path):
    release = _copy(tmp_path)
    manifest = release / "mlgate.yaml"
    text = manifest.read_text().replace("  owner: ml-platform@hospital.example\n", "  owner: &o ml-platform@hospital.example\n  description: *o\n")
    manifest.write_text(text.replace('  description: "Diabetic 30-day readmission risk"\n', ""))
    code, _decision, err = _check(release, "production", tmp_path)
    assert code == 2 and "aliases are not allowed" in err


@pytest.mark.parametrize("change", [
    pytest.param(lambda d: d["spec"]["model"].update(storageUri="s3://models.hospital.example/Readmission-Risk/1.4.0/"), id="uri-case"),
    pytest.param(lambda d: d["spec"]["model"].update(storageUri="s3://models.hospital.example/readmission-risk/1.4.0"), id="uri-slash"),
    pytest.param(lambda d: d["spec"]["model"].update(storageUri="s3://models.hospital.example/readmission-risk/1.4.0/ "), id="uri-space"),
    pytest.param(lambda d: d["spec"]["model"].update(storageUri="s3://models.hospital.example/readmission-risk/1.4.0/\u200b"), id="uri-zwsp"),
    pytest.param(lambda d: d["metadata"].update(name="readmission-risk.v2"), id="name"),
    pytest.param(lambda d: d["metadata"].update(version="1.4.0 "), id="version-space"),
    pytest.param(lambda d: d["metadata"].update(owner="ML-Platform@hospital.example"), id="owner-case"),
    pytest.param(lambda d: d["metadata"].update(labels={"team": "x"}), id="new-label"),
    pytest.param(lambda d: d["spec"]["datasets"][0]["digest"].update(sha256="0" * 64), id="dataset-digest"),
    pytest.param(lambda d: d["spec"]["datasets"][0].update(uri="s3://attacker/train.csv"), id="dataset-remote-uri"),
    pytest.param(lambda d: d["spec"]["evidence"]["dataValidation"][0].update(validatedAt="2026-11-28T00:00:00Z"), id="validatedAt"),
    pytest.param(lambda d: d["spec"]["provenance"]["git"].update(dirty=False, commit="0" * 40), id="provenance"),
    pytest.param(lambda d: d["spec"].pop("lineage"), id="drop-lineage"),
])
def test_any_manifest_edit_voids_the_approvals(tmp_path, change):
    release = _copy(tmp_path)
    _edit(release, change)
    code, decision, err = _check(release, "production", tmp_path)
    assert code in (1, 2), decision
    if code == 1:
        assert "MLG-APPR-020" in _ids(decision), decision["violations"]


def test_re_serialising_the_manifest_the_same_way_keeps_the_allow(tmp_path):
    """The binding is over the parsed manifest: comments, quoting, flow vs block style do not
    matter (so the gate is not brittle), and nothing else is needed to keep it."""
    release = _copy(tmp_path)
    _edit(release, lambda doc: None)
    code, decision, _ = _check(release, "production", tmp_path)
    assert code == 0, decision["violations"]


@pytest.mark.parametrize("value", ["2026-11-28", "2026-11-28T00:00:00Z"], ids=["date", "timestamp"])
def test_untagged_yaml_timestamps_in_the_manifest_do_not_crash(tmp_path, value):
    release = _copy(tmp_path)
    manifest = release / "mlgate.yaml"
    text = manifest.read_text()
    manifest.write_text(text.replace("      - {path: evidence/validation_train.json, dataset: train}",
                                     f"      - {{path: evidence/validation_train.json, dataset: train, validatedAt: {value}}}"))
    code, decision, err = _check(release, "production", tmp_path)
    assert code in (1, 2)
    assert "Traceback" not in err and "internal error" not in err


# =========================================================================== 3. approvals moved around
def test_a_staging_approval_does_not_count_in_production(tmp_path):
    release = _copy(tmp_path)
    (release / "evidence" / "approvals" / "jane.roe_hospital.example.approval.production.sigstore.json").unlink()
    code, decision, _ = _check(release, "production", tmp_path)
    assert code == 1 and "MLG-APPR-004" in _ids(decision), decision["violations"]


def test_an_approval_listed_twice_counts_once(tmp_path):
    """The approvals listing is not bound: list Sam's review twice (directory and file) and drop
    Jane's production approval: still one person, one required signature missing."""
    release = _copy(tmp_path)
    (release / "evidence" / "approvals" / "jane.roe_hospital.example.approval.production.sigstore.json").unlink()
    text = (release / "mlgate.yaml").read_text()
    (release / "mlgate.yaml").write_text(text.replace(
        "approvals: [evidence/approvals/]",
        "approvals: [evidence/approvals/, evidence/approvals/sam.patel_hospital.example.review.production.sigstore.json]"))
    code, decision, _ = _check(release, "production", tmp_path)
    assert code == 1 and "MLG-APPR-004" in _ids(decision), decision["violations"]


def test_approvals_of_another_release_with_the_same_name_do_not_count(tmp_path):
    """triage-acuity's production approvals copied into triage-acuity-v2 (same team, same name
    family): another model digest and another binding."""
    release = _copy(tmp_path, "triage-acuity-v2")
    target = release / "evidence" / "approvals"
    for f in target.iterdir():
        f.unlink()
    for f in (EXAMPLES / "triage-acuity" / "evidence" / "approvals").iterdir():
        shutil.copy(f, target / f.name)
    code, decision, _ = _check(release, "production", tmp_path)
    assert code == 1 and {"MLG-APPR-010"} <= _ids(decision)


def test_a_legacy_approval_made_with_the_one_key_is_refused_in_production(tmp_path):
    """Jane signs an unbound (legacy-shaped) approval; production refuses legacy approvals."""
    release = _copy(tmp_path)
    path = release / "evidence" / "approvals" / "jane.roe_hospital.example.approval.production.sigstore.json"
    loaded = load_release(release)
    from mlgate.canonical import sha256_hex
    evidence = {rel: sha256_hex(p.read_bytes()) for p, rel in loaded.evaluated_evidence()}
    path.write_bytes(create_approval(
        (KEYS / "jane.roe.key").read_bytes(), release_name="readmission-risk",
        model_digest=compute_model_digest(release / "model").root, printed_name="Dr. Jane Roe",
        signer_id="jane.roe@hospital.example", role="clinical-safety-officer", meaning="approval", environment="production",
        signed_at=EXAMPLES_NOW - dt.timedelta(days=1), expires_at=None, evidence_digests=evidence, comment=None, release=None))
    code, decision, _ = _check(release, "production", tmp_path)
    assert code == 1 and "MLG-APPR-021" in _ids(decision)


def test_an_approval_claiming_a_differently_cased_environment_does_not_count(tmp_path):
    release = _copy(tmp_path)
    path = release / "evidence" / "approvals" / "jane.roe_hospital.example.approval.production.sigstore.json"
    loaded = load_release(release)
    from mlgate.canonical import sha256_hex
    evidence = {rel: sha256_hex(p.read_bytes()) for p, rel in loaded.evaluated_evidence()}
    path.write_bytes(create_approval(
        (KEYS / "jane.roe.key").read_bytes(), release_name="readmission-risk",
        model_digest=compute_model_digest(release / "model").root, printed_name="Dr. Jane Roe",
        signer_id="jane.roe@hospital.example", role="clinical-safety-officer", meaning="approval", environment="Production",
        signed_at=EXAMPLES_NOW - dt.timedelta(days=1), expires_at=None, evidence_digests=evidence, comment=None,
        release=loaded.binding))
    code, decision, _ = _check(release, "production", tmp_path)
    assert code == 1


# =========================================================================== 4. separation of duties
# Jane owns the release and also signs it (approval) or waives its violations. The owner field is
# free text; the policy compares it with the signer id after lower() only.
JANE_OWNER_HELD = ["jane.roe@hospital.example", "JANE.ROE@Hospital.Example"]
JANE_OWNER_BROKEN = [
    ("jane.roe@hospital.example ", "trailing space"),
    (" jane.roe@hospital.example", "leading space"),
    ("jane.roe@hospital.example\u200b", "zero-width space"),
    ("mailto:jane.roe@hospital.example", "mailto: URI form"),
    ("Dr. Jane Roe <jane.roe@hospital.example>", "RFC 5322 display-name form"),
]


def _owned_by(release: Path, owner: str) -> Path:
    _edit(release, lambda doc: doc["metadata"].update(owner=owner))
    try:
        resign_approvals(release)  # Sam and Jane sign the release as it now reads
    except InputError:
        pass  # the manifest is refused (the owner is not one canonical email spelling): the check below exits 2
    return release


def _sod_params():
    out = [pytest.param(o, id=o.strip().replace(" ", "_")) for o in JANE_OWNER_HELD]
    for owner, why in JANE_OWNER_BROKEN:  # fixed: the manifest schema takes one canonical email spelling
        out.append(pytest.param(owner, id=why.replace(" ", "-")))
    return out


@pytest.mark.parametrize("owner", _sod_params())
def test_the_owner_cannot_approve_their_own_release_whatever_the_spelling(tmp_path, owner):
    """Jane writes the manifest (owner) and signs the production approval; Sam reviews in good
    faith. MLG-APPR-007 must fire for every spelling of Jane's identity (or the owner must be
    refused as not an identity)."""
    release = _owned_by(_copy(tmp_path), owner)
    code, decision, err = _check(release, "production", tmp_path)
    assert code == 2 or (code == 1 and "MLG-APPR-007" in _ids(decision)), decision and decision["violations"]


def _waiver_params():
    out = [pytest.param("jane.roe@hospital.example", id="exact"), pytest.param("Jane.Roe@HOSPITAL.example", id="case")]
    for owner, why in JANE_OWNER_BROKEN[:2]:  # fixed: the manifest schema takes one canonical email spelling
        out.append(pytest.param(owner, id=why.replace(" ", "-")))
    return out


@pytest.mark.parametrize("owner", _waiver_params())
def test_the_owners_waiver_does_not_apply_whatever_the_spelling(tmp_path, owner):
    release = _owned_by(_copy(tmp_path, "triage-acuity"), owner)
    try:
        _jane_waiver(release, ["MLG-BIAS-002", "MLG-BIAS-006"])
    except InputError:  # the manifest is refused (the owner is not one canonical email spelling): nobody can sign it
        code, _decision, err = _check(release, "production", tmp_path)
        assert code == 2 and "metadata.owner" in err
        return
    code, decision, _ = _check(release, "production", tmp_path)
    assert code != 0 and not _applied(decision), decision["waivers"]


def _trained_by(release: Path, user: str) -> None:
    def change(doc):
        doc["spec"]["provenance"]["mlflow"] = {
            "present": True, "tracking_uri": "https://mlflow.hospital.example",
            "run": {"id": "0123456789abcdef", "status": "FINISHED", "user": user, "git_commit": doc["spec"]["provenance"]["git"]["commit"],
                    "params": {}, "metrics": {}},
            "model_version": {"name": doc["metadata"]["name"], "version": "1", "run_id": "0123456789abcdef", "source": "runs:/0123456789abcdef/model",
                              "status": "READY", "aliases": []},
        }
    _edit(release, change)
    resign_approvals(release)


def test_the_trainers_waiver_does_not_apply(tmp_path):
    release = _copy(tmp_path, "triage-acuity")
    _trained_by(release, "jane.roe@hospital.example")
    _jane_waiver(release, ["MLG-BIAS-002", "MLG-BIAS-006"])
    code, decision, _ = _check(release, "production", tmp_path)
    assert code != 0 and not _applied(decision), decision["waivers"]
    assert any("trained the model" in (w["reason"] or "") for w in decision["waivers"])


def test_the_trainers_waiver_does_not_apply_when_mlflow_records_a_login(tmp_path):
    """MLflow records the OS login of whoever started the run (``mlflow.user`` = ``getpass.getuser()``),
    not an email. The honest provenance then says run user ``jane.roe``; Jane's waiver must not apply."""
    release = _copy(tmp_path, "triage-acuity")
    _trained_by(release, "jane.roe")
    _jane_waiver(release, ["MLG-BIAS-002", "MLG-BIAS-006"])
    code, decision, _ = _check(release, "production", tmp_path)
    assert code != 0 and not _applied(decision), decision["waivers"]


def test_a_staging_waiver_does_not_apply_in_production(tmp_path):
    release = _copy(tmp_path, "triage-acuity")
    _jane_waiver(release, ["MLG-BIAS-002", "MLG-BIAS-006"], env="staging")
    code, decision, _ = _check(release, "production", tmp_path)
    assert code == 1 and not _applied(decision)


def test_a_waiver_stops_applying_when_the_manifest_changes(tmp_path):
    release = _copy(tmp_path, "triage-acuity")
    _jane_waiver(release, ["MLG-BIAS-002", "MLG-BIAS-006"])
    _edit(release, lambda doc: doc["metadata"].update(description="edited after the waiver"))
    resign_approvals(release)
    code, decision, _ = _check(release, "production", tmp_path)
    assert code == 1 and not _applied(decision)
    assert any("no longer matches the release" in (w["reason"] or "") for w in decision["waivers"])


@pytest.mark.parametrize("rule", ["MLG-APPR-020", "MLG-APPR-012", "MLG-SIG-003", "MLG-CFG-001"])
def test_integrity_rules_cannot_be_waived_by_the_one_key(tmp_path, rule):
    release = _copy(tmp_path, "triage-acuity")
    _jane_waiver(release, ["MLG-BIAS-002", "MLG-BIAS-006", rule])
    _edit(release, lambda doc: doc["metadata"].update(description="edited after signing"))  # APPR-020 on every approval
    code, decision, _ = _check(release, "production", tmp_path)
    assert code == 1 and "MLG-APPR-020" in _ids(decision)


def test_one_person_cannot_waive_that_the_data_is_not_the_approved_data(tmp_path):
    """Jane alone swaps the training data (MLG-DATA-006, critical: the approvals' binding is
    intact because the manifest still declares the old digest) and waives MLG-DATA-006 in
    production. Safe: integrity rules not waivable, or waivable by two people only
    (issue 14 part 5: 'waivers of rules the data marks as critical need two distinct signers')."""
    release = _copy(tmp_path)
    (release / "data" / "train.csv").write_text("age,readmitted\n1,0\n")
    _jane_waiver(release, ["MLG-DATA-006"])
    code, decision, _ = _check(release, "production", tmp_path)
    assert code == 1, decision["warnings"]


# =========================================================================== 5. overrides, policy directory
def _write(path: Path, doc) -> Path:
    path.write_text(json.dumps(doc) if path.suffix == ".json" else yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("doc", [
    pytest.param({"mlgate": {"decision": {"allow": True}}}, id="decision"),
    pytest.param({"mlgate.decision": {"allow": True}}, id="dotted-key"),
    pytest.param({"mlgate": {"decision": {}}}, id="empty-object-over-a-rule"),
    pytest.param({"mlgate": {"rules": {"bias": {"violation": []}}}}, id="a-rule-set"),
    pytest.param({"mlgate": {"environments": {"production": {"bias": {"metrics": []}}}, "decision": {"allow": True}}}, id="mixed"),
    pytest.param({"mlgate": {"lib": {"model_digest": "x"}}}, id="lib"),
    pytest.param({"mlgate": {"environments": {"production": {"violation": []}}}}, id="undocumented-tier-key"),
    pytest.param({"mlgate": {"environments": {"production": {}}}}, id="empty-tier"),
    pytest.param({"mlgate": {"environments": []}}, id="environments-not-an-object"),
    pytest.param({"mlgate": {"environments": {"production": {"waivers ": {"not_waivable": []}}}}}, id="key-with-trailing-space"),
    pytest.param({"mlgate": {"environments": {"production": {"w\u0430ivers": {"not_waivable": []}}}}}, id="cyrillic-a-key"),
    pytest.param({"system": {"authz": True}}, id="outside-mlgate"),
])
@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_overrides_that_touch_rules_or_undocumented_data_are_refused(tmp_path, doc, suffix):
    override = _write(tmp_path / f"o{suffix}", doc)
    code, _decision, err = _check(EXAMPLES / "triage-acuity", "production", tmp_path, "--data", override)
    assert code == 2 and ("override" in err or "policy data path" in err), err


def test_an_override_with_a_non_string_key_is_refused(tmp_path):
    override = tmp_path / "o.yaml"
    override.write_text("mlgate:\n  environments:\n    production:\n      1: true\n")
    code, _decision, err = _check(EXAMPLES / "triage-acuity", "production", tmp_path, "--data", override)
    assert code == 2


def test_a_documented_override_that_weakens_production_is_in_the_record(tmp_path):
    """Overrides may weaken a documented threshold (that is what they are for); the auditor must
    see it: the override's path and digest in revision_inputs, and another policy revision."""
    release = _copy(tmp_path)
    (release / "evidence" / "approvals" / "sam.patel_hospital.example.review.production.sigstore.json").unlink()
    code, decision, _ = _check(release, "production", tmp_path)
    assert code == 1
    honest = _last_record(tmp_path)
    override = _write(tmp_path / "o.json", {"mlgate": {"environments": {"production": {"approvals": {
        "required": [{"role": "clinical-safety-officer", "meaning": "approval"}], "min_disciplines": 1}}}}})
    code, decision, _ = _check(release, "production", tmp_path, "--data", override)
    record = _last_record(tmp_path)
    assert record["policy_revision"] != honest["policy_revision"]
    assert [o["path"] for o in record["revision_inputs"]["data_overrides"]] == [str(override)]
    assert record["revision_inputs"]["policy"] == honest["revision_inputs"]["policy"]


def _engines_to_try() -> list[str]:
    from mlgate.policy.engine import ENGINES

    return ["embedded"] + [e for e in ("regorus-interp",) if e in ENGINES]


def test_a_policy_directory_whose_data_shadows_a_rule_is_refused(tmp_path):
    """A vendored copy of the bundled library, every .rego byte-identical (a reviewer diffing the
    Rego sees no change), plus mlgate/decision/data.json = {allow: true}. --data refuses exactly
    this; a policy directory (from --policy or `policy:` in .mlgate.yaml) does not, and regorus
    (interpreted: the embedded engine at commit 5a1acbc, `--engine regorus-interp` since) lets the
    data document win over the rule. Safe: the same check as for overrides, at load, on every engine."""
    policy = tmp_path / "policy"
    shutil.copytree(bundled_policy_dir(), policy, ignore=shutil.ignore_patterns("__pycache__"))
    (policy / "mlgate" / "decision").mkdir()
    (policy / "mlgate" / "decision" / "data.json").write_text('{"allow": true, "violations": [], "warnings": []}')
    for engine in _engines_to_try():
        code, _decision, _err = _check(EXAMPLES / "triage-acuity", "production", tmp_path, "--policy", policy, "--engine", engine)
        assert code != 0, f"ALLOWED on engine {engine}"


def test_a_policy_directory_is_named_in_the_record(tmp_path):
    policy = tmp_path / "policy"
    shutil.copytree(bundled_policy_dir(), policy, ignore=shutil.ignore_patterns("__pycache__"))
    _check(EXAMPLES / "readmission-risk", "production", tmp_path)
    honest = _last_record(tmp_path)
    (policy / "mlgate" / "rules" / "zz_extra.rego").write_text("package mlgate.rules.zz\n\nimport rego.v1\n\nx := 1\n")
    _check(EXAMPLES / "readmission-risk", "production", tmp_path, "--policy", policy)
    record = _last_record(tmp_path)
    assert record["revision_inputs"]["policy"]["path"] == str(policy)
    assert record["revision_inputs"]["policy"]["revision"] != honest["revision_inputs"]["policy"]["revision"]
    assert record["policy_revision"] != honest["policy_revision"]


def test_hidden_files_in_a_policy_directory_are_neither_loaded_nor_needed_in_the_revision(tmp_path):
    """A module in a dot-directory is skipped by the loader; it must then not change the decision
    either (what is not in the revision is not evaluated)."""
    policy = tmp_path / "policy"
    shutil.copytree(bundled_policy_dir(), policy, ignore=shutil.ignore_patterns("__pycache__"))
    (policy / ".hidden").mkdir()
    (policy / ".hidden" / "allow.rego").write_text("package mlgate\n\nimport rego.v1\n\ndecision := {\"allow\": true}\n")
    (policy / "mlgate" / ".data.json").write_text('{"decision": {"allow": true}}')
    code, decision, _ = _check(EXAMPLES / "triage-acuity", "production", tmp_path, "--policy", policy)
    assert code == 1, decision


# =========================================================================== 6. settings, trust policy, engine
def test_settings_in_a_parent_directory_are_not_read(tmp_path, monkeypatch):
    (tmp_path / ".mlgate.yaml").write_text(f"trust: {TRUST}\n")
    child = tmp_path / "child"
    child.mkdir()
    monkeypatch.chdir(child)
    code, _decision, err = _check(EXAMPLES / "readmission-risk", "production", tmp_path, trust=None)
    assert code == 2 and "no trust policy configured" in err


def test_settings_in_a_child_directory_are_not_read(tmp_path, monkeypatch):
    (tmp_path / "child").mkdir()
    (tmp_path / "child" / ".mlgate.yaml").write_text(f"trust: {TRUST}\n")
    monkeypatch.chdir(tmp_path)
    code, _decision, err = _check(EXAMPLES / "readmission-risk", "production", tmp_path, trust=None)
    assert code == 2 and "no trust policy configured" in err


def _attacker_trust(tmp_path: Path) -> Path:
    """A trust policy in which Jane holds every role and meaning."""
    doc = yaml.safe_load(TRUST.read_text())
    for a in doc["approvers"]:
        if a["id"] == "jane.roe@hospital.example":
            a["roles"] = ["clinical-safety-officer", "quality-assurance"]
            a["meanings"] = ["approval", "review", "responsibility"]
    path = tmp_path / "evil" / "trust.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_trust_policy_from_settings_in_the_working_directory_is_in_the_record(tmp_path, monkeypatch):
    """The CI job's working directory is the attacker's: its .mlgate.yaml names their trust
    policy. The decision may then allow (the gate trusts what it is told), but the record must
    say where the trust came from and what it was."""
    evil = _attacker_trust(tmp_path)
    (tmp_path / ".mlgate.yaml").write_text(f"trust: {evil}\n")
    monkeypatch.chdir(tmp_path)
    _check(EXAMPLES / "readmission-risk", "production", tmp_path, trust=None)
    record = _last_record(tmp_path)
    assert record["trust_policy"]["from"] == "settings"
    assert (tmp_path / record["trust_policy"]["path"]).resolve() == evil.resolve()
    import hashlib
    assert record["trust_policy"]["digest"] == hashlib.sha256(evil.read_bytes()).hexdigest()
    assert record["revision_inputs"]["settings"]["digest"] == hashlib.sha256((tmp_path / ".mlgate.yaml").read_bytes()).hexdigest()


def test_duplicate_keys_in_the_settings_file_are_refused(tmp_path, monkeypatch):
    evil = _attacker_trust(tmp_path)
    (tmp_path / ".mlgate.yaml").write_text(f"trust: {TRUST}\n# (the project's trust policy)\ntrust: {evil}\n")
    monkeypatch.chdir(tmp_path)
    code, _decision, err = _check(EXAMPLES / "readmission-risk", "production", tmp_path, trust=None)
    assert code == 2 and "duplicate" in err.lower()


def test_a_key_file_named_by_the_trust_policy_is_in_the_revision(tmp_path):
    trust_dir = tmp_path / "trust"
    (trust_dir / "keys").mkdir(parents=True)
    doc = yaml.safe_load(TRUST.read_text())
    for a in doc["approvers"]:
        if a["id"] == "sam.patel@hospital.example":
            (trust_dir / "keys" / "sam.pem").write_text(a["keys"][0]["pem"])
            a["keys"] = [{"path": "keys/sam.pem"}]
    (trust_dir / "trust.yaml").write_text(yaml.safe_dump(doc))
    code, decision, _ = _check(EXAMPLES / "readmission-risk", "production", tmp_path, trust=trust_dir / "trust.yaml")
    assert code == 0, decision["violations"]
    first = _last_record(tmp_path)
    assert "keys/sam.pem" in first["trust_policy"]["files"]
    # Sam's key file swapped for another public key (trust.yaml unchanged): another revision, recorded.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    other = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (trust_dir / "keys" / "sam.pem").write_bytes(other)
    _check(EXAMPLES / "readmission-risk", "production", tmp_path, trust=trust_dir / "trust.yaml")
    second = _last_record(tmp_path)
    assert second["trust_policy"]["digest"] == first["trust_policy"]["digest"]
    assert second["trust_policy"]["files"]["keys/sam.pem"] != first["trust_policy"]["files"]["keys/sam.pem"]
    assert second["policy_revision"] != first["policy_revision"]


def test_a_trust_policy_key_path_may_not_leave_its_directory(tmp_path):
    doc = yaml.safe_load(TRUST.read_text())
    doc["approvers"][0]["keys"] = [{"path": "../../" + str(KEYS / "jane.roe.pub")}]
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "trust.yaml").write_text(yaml.safe_dump(doc))
    code, _decision, err = _check(EXAMPLES / "readmission-risk", "production", tmp_path, trust=tmp_path / "t" / "trust.yaml")
    assert code == 2 and "leaves" in err


def test_a_trust_policy_with_an_include_key_is_refused(tmp_path):
    doc = yaml.safe_load(TRUST.read_text())
    doc["include"] = str(_attacker_trust(tmp_path))
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(doc))
    code, _decision, _err = _check(EXAMPLES / "readmission-risk", "production", tmp_path, trust=tmp_path / "t.yaml")
    assert code == 2


def test_a_proxy_in_the_environment_cannot_stand_in_for_opa(tmp_path, monkeypatch):
    """HTTP_PROXY points at a fake 'OPA' that allows everything and claims the expected bundle
    revision; --opa-url names an address where nothing listens. The engine must not use the
    proxy (else the record would name the honest URL for a forged decision)."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from mlgate.policy import load_policy
    expected = load_policy(None).bundle_revision

    class Fake(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("content-length", 0)))
            body = json.dumps({"result": {"allow": True, "violations": [], "warnings": []},
                               "provenance": {"version": "1.20.0", "bundles": {"mlgate": {"revision": expected}}}}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = HTTPServer(("127.0.0.1", 0), Fake)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
        s.close()
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        code, _decision, _err = _check(EXAMPLES / "triage-acuity", "production", tmp_path, "--engine", "opa",
                                       "--opa-url", f"http://127.0.0.1:{dead}")
        assert code == 2
        # And the fake OPA used directly: allowed (a remote engine is trusted), but the record names it.
        code, _decision, _err = _check(EXAMPLES / "triage-acuity", "production", tmp_path, "--engine", "opa",
                                       "--opa-url", f"http://127.0.0.1:{server.server_address[1]}")
        record = _last_record(tmp_path)
        assert str(server.server_address[1]) in record["engine_version"]
        assert str(server.server_address[1]) in json.dumps(record["revision_inputs"]["engine"])
    finally:
        server.shutdown()


# =========================================================================== 7. evidence checked, not trusted
SIGNERS = {
    "jane.roe@hospital.example": dict(key_path=KEYS / "jane.roe.key", printed_name="Dr. Jane Roe", role="clinical-safety-officer", meaning="approval"),
    "sam.patel@hospital.example": dict(key_path=KEYS / "sam.patel.key", printed_name="Sam Patel", role="quality-assurance", meaning="review"),
}


def _reviewers_sign_again(release: Path, env: str = "production") -> None:
    """The reviewers sign the edited evidence in good faith (new evidence digests)."""
    from mlgate.signing.approve import approve_release

    for signer_id, who in SIGNERS.items():
        if env == "staging" and who["meaning"] == "review":
            continue
        approve_release(release, signer_id=signer_id, environment=env, expires=None, comment=None, out=None,
                        now=EXAMPLES_NOW - dt.timedelta(hours=1), force=True, **who)


def _bias(release: Path, change) -> None:
    path = release / "evidence" / "bias_audit.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc, indent=2, sort_keys=True))


@pytest.mark.parametrize("renamed", ["ethnicity ", "ethnicity\u200b", "ethn\u0456city", "race/ethnicity"])
def test_a_renamed_required_attribute_does_not_count_as_audited(tmp_path, renamed):
    """The failing attribute renamed (consistently, counts untouched) so that it no longer matches
    a required attribute. Production then misses race/ethnicity (MLG-BIAS-013), and the failing
    group still fails under its new name."""
    release = _copy(tmp_path, "triage-acuity")

    def rename(doc):
        doc["columns"]["sensitive"] = [renamed if a == "ethnicity" else a for a in doc["columns"]["sensitive"]]
        for item in doc["groups"] + doc["comparisons"]:
            if item["attribute"] == "ethnicity":
                item["attribute"] = renamed
    _bias(release, rename)
    _reviewers_sign_again(release)
    code, decision, _ = _check(release, "production", tmp_path)
    assert code in (1, 2)
    if code == 1:
        assert "MLG-BIAS-013" in _ids(decision) or "MLG-BIAS-002" in _ids(decision)


def test_dropping_the_failing_attribute_is_denied_in_production(tmp_path):
    release = _copy(tmp_path, "triage-acuity")

    def drop(doc):
        doc["columns"]["sensitive"] = ["sex"]
        doc["groups"] = [g for g in doc["groups"] if g["attribute"] != "ethnicity"]
        doc["comparisons"] = [c for c in doc["comparisons"] if c["attribute"] != "ethnicity"]
    _bias(release, drop)
    _reviewers_sign_again(release)
    code, decision, _ = _check(release, "production", tmp_path)
    assert code == 1 and "MLG-BIAS-013" in _ids(decision)


def test_doctored_p_values_are_denied(tmp_path):
    release = _copy(tmp_path, "triage-acuity")

    def doctor(doc):
        for c in doc["comparisons"]:
            if c["group"] == "Black":
                c["p_value"], c["p_holm"] = 0.5, 1.0
    _bias(release, doctor)
    _reviewers_sign_again(release, "staging")
    code, decision, _ = _check(release, "staging", tmp_path)
    assert code == 1


def test_a_raised_n_min_that_makes_every_group_insufficient_fails_closed(tmp_path):
    release = _copy(tmp_path, "triage-acuity")

    def raise_n_min(doc):
        doc["n_min"] = 10 ** 9
        for g in doc["groups"]:
            g["insufficient"] = True
        for c in doc["comparisons"]:
            c["insufficient"] = True
    _bias(release, raise_n_min)
    _reviewers_sign_again(release, "staging")
    code, decision, _ = _check(release, "staging", tmp_path)
    assert code == 1


def _validation(release: Path, name: str, change) -> None:
    path = release / "evidence" / name
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc, indent=2))


def test_a_validation_result_with_no_checks_is_refused(tmp_path):
    release = _copy(tmp_path)

    def empty(doc):
        doc["results"] = []
        doc["statistics"] = {"evaluated_expectations": 0, "successful_expectations": 0, "unsuccessful_expectations": 0, "success_percent": None}
    _validation(release, "validation_train.json", empty)
    _reviewers_sign_again(release)
    code, decision, _ = _check(release, "production", tmp_path)
    assert code in (1, 2) and (code == 2 or any(v["id"].startswith("MLG-DATA") for v in decision["violations"]))


def test_validation_statistics_that_contradict_the_results_are_refused(tmp_path):
    """One failing expectation, statistics saying all passed and success true."""
    release = _copy(tmp_path)

    def lie(doc):
        doc["results"][0]["success"] = False
        doc["success"] = True
    _validation(release, "validation_train.json", lie)
    _reviewers_sign_again(release)
    code, decision, _ = _check(release, "production", tmp_path)
    assert code in (1, 2)


@pytest.mark.xfail(strict=True, reason="red team (limitation): a Great Expectations result with ONE trivial expectation (row count "
                                       "between 1000 and 1e6) counts as the dataset's validation in production")
def test_a_validation_suite_of_one_trivial_expectation_is_not_enough_for_production(tmp_path):
    """Not claimed by issue 14 (it refuses results with no checks); listed because the brief asked.
    Safe would be a per-environment minimum (expectation count or required expectation types)."""
    release = _copy(tmp_path)

    def trivial(doc):
        doc["results"] = [r for r in doc["results"] if r["expectation_config"]["type"] == "expect_table_row_count_to_be_between"][:1]
        doc["results"][0]["expectation_config"]["kwargs"].update(min_value=0, max_value=10 ** 9)
        doc["statistics"] = {"evaluated_expectations": 1, "successful_expectations": 1, "unsuccessful_expectations": 0, "success_percent": 100.0}
        doc["success"] = True
    for name in ("validation_train.json", "validation_eval.json"):
        _validation(release, name, trivial)
    _reviewers_sign_again(release)
    code, decision, _ = _check(release, "production", tmp_path)
    assert code == 1, decision["warnings"]


# =========================================================================== 8. time
@pytest.fixture(scope="module")
def tsa():
    from tsa_local import running_tsa

    server = running_tsa("Hospital Timestamping Authority")
    yield server
    server.close()


def _trust_with(tmp_path: Path, jane_line: str | None, tsa=None) -> Path:
    text = TRUST.read_text()
    anchor = "  - id: jane.roe@hospital.example"
    head, tail = text.split(anchor, 1)
    if jane_line:
        tail = tail.replace("      - pem: |", f"      - {jane_line}\n        pem: |", 1)
    text = head + anchor + tail
    if tsa is not None:
        text += "timestampAuthorities:\n" + tsa.trust_entry()
    path = tmp_path / "trust.yaml"
    path.write_text(text)
    return path


def _forge_staging(release: Path, signed_at: dt.datetime, tsa_url: str | None = None) -> None:
    """The thief, with Jane's stolen key, renames a copy and approves it for staging."""
    from mlgate.signing.approve import approve_release

    _edit(release, lambda doc: doc["metadata"].update(name="sepsis-alert") or doc["spec"]["model"].update(storageUri="s3://attacker/sepsis/"))
    target = release / "evidence" / "approvals" / "jane.roe_hospital.example.approval.staging.sigstore.json"
    target.unlink()
    approve_release(release, signer_id="jane.roe@hospital.example", environment="staging", expires=None, comment="forged",
                    out=target, now=signed_at, tsa=tsa_url, **SIGNERS["jane.roe@hospital.example"])


def _check_at(release: Path, env: str, tmp_path: Path, trust: Path, now: dt.datetime):
    code, out, err = run(["check", release, "--env", env, "-o", "json", "--trust", trust, "--audit-log", tmp_path / "audit.jsonl"], now=now)
    return code, json.loads(out), err


def test_a_backdated_forgery_with_a_key_revoked_for_compromise_is_denied(tmp_path):
    release = _copy(tmp_path)
    _forge_staging(release, EXAMPLES_NOW - dt.timedelta(days=2))
    trust = _trust_with(tmp_path, f"revoked: {{at: '{(EXAMPLES_NOW - dt.timedelta(days=1)).strftime('%Y-%m-%dT%H:%M:%SZ')}', reason: keyCompromise}}")
    code, decision, _ = _check_at(release, "staging", tmp_path, trust, EXAMPLES_NOW)
    assert code == 1


def test_a_backdated_forgery_with_an_expired_key_is_denied(tmp_path):
    release = _copy(tmp_path)
    _forge_staging(release, EXAMPLES_NOW - dt.timedelta(days=2))
    trust = _trust_with(tmp_path, f"notAfter: '{(EXAMPLES_NOW - dt.timedelta(days=1)).strftime('%Y-%m-%dT%H:%M:%SZ')}'")
    code, decision, _ = _check_at(release, "staging", tmp_path, trust, EXAMPLES_NOW)
    assert code == 1


@pytest.mark.parametrize("reason", ["KeyCompromise", "key_compromise", "superseded ", "Superseded"])
def test_a_misspelt_revocation_reason_is_refused_or_treated_as_compromise(tmp_path, reason):
    """A trust-policy typo must not turn a compromise into a benign revocation."""
    release = _copy(tmp_path)
    _forge_staging(release, EXAMPLES_NOW - dt.timedelta(days=2))
    trust = _trust_with(tmp_path, f"revoked: {{at: '{(EXAMPLES_NOW - dt.timedelta(days=1)).strftime('%Y-%m-%dT%H:%M:%SZ')}', reason: '{reason}'}}")
    code, decision, _ = _check_at(release, "staging", tmp_path, trust, EXAMPLES_NOW)
    assert code in (1, 2)


def test_a_timestamped_forgery_made_before_a_compromise_revocation_is_denied(tmp_path, tsa):
    """Keys are revoked after the compromise is found, not when it happens. The thief signs and
    timestamps (a public TSA stamps anything) a renamed copy on the day of the theft; Jane's key is
    revoked for keyCompromise ten minutes later; the forgery still approves staging (with an
    MLG-APPR-018 warning). Safe: keyCompromise voids every signature unless the trust policy gives
    a compromise time (RFC 5280 invalidityDate) that the trusted time predates."""
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    release = _copy(tmp_path)
    # Jane's own (untimestamped) production approval would fail verification after the revocation
    # (MLG-APPR-003 looks at every approval listed): the thief simply removes it.
    (release / "evidence" / "approvals" / "jane.roe_hospital.example.approval.production.sigstore.json").unlink()
    _forge_staging(release, now, tsa_url=tsa.url)
    revoked = now + dt.timedelta(minutes=10)
    trust = _trust_with(tmp_path, f"revoked: {{at: '{revoked.strftime('%Y-%m-%dT%H:%M:%SZ')}', reason: keyCompromise}}", tsa=tsa)
    code, decision, _ = _check_at(release, "staging", tmp_path, trust, now + dt.timedelta(days=1))
    assert code == 1, decision["warnings"]
