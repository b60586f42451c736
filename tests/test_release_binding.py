"""Approvals and waivers bind what was reviewed to what is promoted (issue 14, parts 1 and 5).

Each attack below was reproduced on the code before the binding: it printed ALLOWED (or kept a
waiver applying). Now every signed statement carries the release identity and the digest of
every manifest field, and a change after signing denies with the field that changed.
"""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from cli_helpers import run
from conftest import EXAMPLES, EXAMPLES_NOW, REPO
from mlgate.manifest import binding_changes, load_release, release_binding

TRUST = REPO / "examples" / "trust.yaml"
KEYS = REPO / "examples" / "keys"


def _copy(tmp_path, name="readmission-risk"):
    dst = tmp_path / name
    shutil.copytree(EXAMPLES / name, dst)
    return dst


def _edit(release, change):
    path = release / "mlgate.yaml"
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def _check(release, env, tmp_path, *extra):
    code, out, err = run(["check", release, "--env", env, "-o", "json", "--trust", TRUST, "--audit-log", tmp_path / "a.jsonl", *extra])
    return code, json.loads(out), err


def _messages(decision, rule):
    return [v["message"] for v in decision["violations"] if v["id"] == rule]


def test_the_example_is_allowed_as_signed(tmp_path):
    code, decision, _ = _check(_copy(tmp_path), "production", tmp_path)
    assert code == 0, decision["violations"]


def test_renamed_copy_for_another_model_location_is_denied(tmp_path):
    release = _copy(tmp_path)

    def rename(doc):
        doc["metadata"]["name"] = "sepsis-alert"
        doc["metadata"]["version"] = "9.9.9"
        doc["spec"]["model"]["storageUri"] = "s3://attacker-bucket/sepsis-alert/"

    _edit(release, rename)
    code, decision, _ = _check(release, "production", tmp_path)
    assert code == 1
    messages = _messages(decision, "MLG-APPR-020")
    assert len(messages) == 2, decision["violations"]  # both production approvals
    for message in messages:
        assert "metadata.name: approved 'readmission-risk', now 'sepsis-alert'" in message
        assert "metadata.version: approved '1.4.0', now '9.9.9'" in message
        assert "spec.model.storageUri: approved ['s3://models.hospital.example/readmission-risk/1.4.0/'], now ['s3://attacker-bucket/sepsis-alert/']" in message


@pytest.mark.parametrize("field,change", [
    ("metadata.owner", lambda d: d["metadata"].__setitem__("owner", "someone-else@hospital.example")),
    ("spec.evidence.dataValidation", lambda d: d["spec"]["evidence"]["dataValidation"][0].__setitem__("validatedAt", "2026-11-28T00:00:00Z")),
    ("spec.provenance", lambda d: d["spec"]["provenance"]["git"].__setitem__("dirty", True)),
    ("spec.privacy", lambda d: d["spec"]["privacy"]["deidentification"].__setitem__("method", "expert-determination")),
])
def test_any_manifest_field_changed_after_signing_denies_naming_it(tmp_path, field, change):
    release = _copy(tmp_path)
    _edit(release, change)
    code, decision, _ = _check(release, "production", tmp_path)
    assert code == 1
    messages = _messages(decision, "MLG-APPR-020")
    assert messages and all(field in m for m in messages), decision["violations"]


def test_owner_edit_cannot_turn_a_separation_of_duties_deny_into_an_allow(tmp_path):
    """The owner is signed: renaming the owner after an owner-approved release no longer helps."""
    release = _copy(tmp_path)
    _edit(release, lambda d: d["metadata"].__setitem__("owner", "jane.roe@hospital.example"))
    code, decision, _ = _check(release, "production", tmp_path)
    assert code == 1
    assert {"MLG-APPR-007", "MLG-APPR-020"} <= {v["id"] for v in decision["violations"]}


def test_replaced_datasets_with_updated_digests_deny(tmp_path):
    release = _copy(tmp_path)
    for name in ("train", "eval"):
        path = release / "data" / f"{name}.csv"
        path.write_text(path.read_text().replace("\n1,", "\n0,", 5))
    from mlgate.canonical import sha256_hex

    def redigest(doc):
        for ds in doc["spec"]["datasets"]:
            ds["digest"]["sha256"] = sha256_hex((release / ds["uri"]).read_bytes())

    _edit(release, redigest)
    code, decision, _ = _check(release, "production", tmp_path)
    assert code == 1
    assert all("spec.datasets: changed since it was signed" in m for m in _messages(decision, "MLG-APPR-020"))


def test_a_new_approval_signs_the_release_as_it_is_now(tmp_path):
    """Re-signing after the change is the remedy: the approval binds the edited manifest."""
    release = _copy(tmp_path)
    _edit(release, lambda d: d["metadata"].__setitem__("description", "Edited description"))
    code, decision, _ = _check(release, "production", tmp_path)
    assert code == 1
    for person, name, role, meaning in (("jane.roe", "Dr. Jane Roe", "clinical-safety-officer", "approval"),
                                        ("sam.patel", "Sam Patel", "quality-assurance", "review")):
        approval = next((release / "evidence" / "approvals").glob(f"{person}_*.{meaning}.production.sigstore.json"))
        approval.unlink()
        code, out, err = run(["approve", release, "--key", KEYS / f"{person}.key", "--name", name, "--id", f"{person}@hospital.example",
                              "--role", role, "--meaning", meaning, "--env", "production", "--expires", "2027-11-01T00:00:00Z",
                              "--trust", TRUST], now=EXAMPLES_NOW)
        assert code == 0, err
    code, decision, _ = _check(release, "production", tmp_path)
    assert code == 0, decision["violations"]


def test_legacy_approval_is_denied_in_production_and_warned_in_staging(tmp_path):
    """An approval made before the binding existed (no `release` in its predicate)."""
    from mlgate.evidence.approval import create_approval
    from mlgate.evidence.model_digest import compute_model_digest
    from mlgate.signing.approve import evidence_digests

    release = _copy(tmp_path)
    loaded = load_release(release)
    for path in (release / "evidence" / "approvals").glob("jane.roe_*.staging.*"):
        bundle = create_approval(
            (KEYS / "jane.roe.key").read_bytes(), release_name=loaded.name, model_digest=compute_model_digest(loaded.model_path).root,
            printed_name="Dr. Jane Roe", signer_id="jane.roe@hospital.example", role="clinical-safety-officer", meaning="approval",
            environment="staging", signed_at=EXAMPLES_NOW.replace(day=20), expires_at=EXAMPLES_NOW.replace(year=2027),
            evidence_digests=evidence_digests(loaded), comment=None,
        )
        path.write_bytes(bundle)
    code, decision, _ = _check(release, "staging", tmp_path)
    assert code == 0, decision["violations"]
    assert any(w["id"] == "MLG-APPR-021" and "legacy approval" in w["message"] for w in decision["warnings"])
    # The same legacy approval for production is refused.
    for path in (release / "evidence" / "approvals").glob("jane.roe_*.production.*"):
        bundle = create_approval(
            (KEYS / "jane.roe.key").read_bytes(), release_name=loaded.name, model_digest=compute_model_digest(loaded.model_path).root,
            printed_name="Dr. Jane Roe", signer_id="jane.roe@hospital.example", role="clinical-safety-officer", meaning="approval",
            environment="production", signed_at=EXAMPLES_NOW.replace(day=20), expires_at=EXAMPLES_NOW.replace(year=2027),
            evidence_digests=evidence_digests(loaded), comment=None,
        )
        path.write_bytes(bundle)
    code, decision, _ = _check(release, "production", tmp_path)
    assert code == 1
    assert any("legacy approval" in m for m in _messages(decision, "MLG-APPR-021"))


def test_binding_covers_every_field_but_the_signed_statements_listing():
    release = load_release(EXAMPLES / "readmission-risk")
    binding = release.binding
    assert binding["name"] == "readmission-risk" and binding["version"] == "1.4.0"
    assert binding["storageUris"] == ["s3://models.hospital.example/readmission-risk/1.4.0/"]
    assert "spec.evidence.approvals" not in binding["fields"]
    for field in ("metadata.owner", "spec.datasets", "spec.evidence.dataValidation", "spec.provenance", "spec.model.path"):
        assert field in binding["fields"]
    doc = yaml.safe_load((EXAMPLES / "readmission-risk" / "mlgate.yaml").read_text())
    doc["spec"]["evidence"]["approvals"] = ["elsewhere/"]
    doc["spec"]["evidence"]["waivers"] = ["evidence/waivers/"]
    assert release_binding(doc) == binding  # adding a waivers directory does not void the approvals
    assert binding_changes(binding, binding) == []
    assert binding_changes(None, binding) == ["release: the statement binds no release identity"]


def test_owner_waiver_does_not_lift_their_own_bias_deny(tmp_path):
    """Separation of duties for waivers: the release owner cannot accept the risk of their release."""
    release = _copy(tmp_path, "triage-acuity")
    _edit(release, lambda d: (d["metadata"].__setitem__("owner", "jane.roe@hospital.example"),
                              d["spec"]["evidence"].__setitem__("waivers", ["evidence/waivers/"])))
    (release / "evidence" / "waivers").mkdir(exist_ok=True)  # the example has it
    code, out, err = run(["waive", release, "--rule", "MLG-BIAS-002", "--rule", "MLG-BIAS-006", "--env", "production",
                          "--justification", "Owner accepts own risk", "--expires", "2026-12-20T00:00:00Z",
                          "--key", KEYS / "jane.roe.key", "--name", "Dr. Jane Roe", "--id", "jane.roe@hospital.example",
                          "--role", "clinical-safety-officer", "--trust", TRUST], now=EXAMPLES_NOW)
    assert code == 0, err
    code, decision, _ = _check(release, "production", tmp_path)
    assert code == 1
    assert decision["waivers"][0]["applied"] is False
    assert "the release owner" in decision["waivers"][0]["reason"]


def test_webhook_denies_an_inference_service_of_a_renamed_copy(tmp_path):
    """The issue's webhook case: a store holding a renamed copy of an approved release, and an
    InferenceService pointing at the copy's (unreviewed) storage URI: denied, naming the change."""
    from mlgate.gatekeeper.config import Settings
    from test_gatekeeper_refs import isvc
    from test_gatekeeper_support import RunningWebhook, admit

    store = tmp_path / "store"
    release = _copy(store, "readmission-risk")

    def rename(doc):
        doc["metadata"]["name"] = "sepsis-alert"
        doc["spec"]["model"]["storageUri"] = "s3://attacker-bucket/sepsis-alert/"

    _edit(release, rename)
    hook = RunningWebhook(tmp_path, Settings(evidence_store=f"file://{store}", audit=str(tmp_path / "audit.jsonl"), trust_policy=str(TRUST)))
    try:
        with hook.client() as client:
            doc = isvc(predictor={"minReplicas": 1, "model": {"modelFormat": {"name": "sklearn"}, "name": "", "resources": {},
                                                                "storageUri": "s3://attacker-bucket/sepsis-alert/"}})
            r = admit(client, doc, "production")
            assert r.status_code == 200, r.text
            resp = r.json()["response"]
            assert resp["allowed"] is False
            assert "MLG-APPR-020" in resp["status"]["message"]
            assert "metadata.name: approved 'readmission-risk', now 'sepsis-alert'" in resp["status"]["message"]
    finally:
        hook.stop()


def test_a_manifest_value_no_signature_can_bind_is_a_one_line_input_error(tmp_path):
    """A NaN in the manifest has no canonical JSON, so nothing can sign it: an input error naming
    the manifest and the value (exit 2, recorded), not an internal error."""
    release = _copy(tmp_path)
    manifest = release / "mlgate.yaml"
    manifest.write_text(manifest.read_text().replace(
        "    mlflow:\n      present: false\n", "    mlflow:\n      present: false\n      run: {params: {auc: .nan}}\n"))
    code, out, err = run(["check", release, "--env", "production", "--trust", TRUST, "--audit-log", tmp_path / "a.jsonl"])
    assert code == 2, out + err
    assert "mlgate.yaml" in out + err and "nan" in (out + err).lower() and "Traceback" not in out + err
    assert "internal error" not in out + err
    record = json.loads((tmp_path / "a.jsonl").read_text().splitlines()[-1])
    assert record["result"] == "error"


def test_verify_fails_the_signatures_of_a_renamed_copy(tmp_path):
    """`mlgate verify` said every signature verifies for a renamed copy; now each approval row fails with the change."""
    release = _copy(tmp_path)
    _edit(release, lambda d: d["metadata"].__setitem__("name", "sepsis-alert"))
    code, out, err = run(["verify", release, "--trust", TRUST, "-o", "json"])
    assert code == 1, out + err
    rows = [r for r in json.loads(out)["signatures"] if r["kind"] == "approval"]
    assert rows and all(r["status"] == "failed" for r in rows)
    assert all("metadata.name: approved 'readmission-risk', now 'sepsis-alert'" in r["reason"] for r in rows)
    code, out, _ = run(["verify", _copy(tmp_path / "clean"), "--trust", TRUST])
    assert code == 0, out
