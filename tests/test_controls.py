"""Issue 5 parts 4 and 7: the rules added for control coverage, as acceptance tests through the CLI,
and the environment tiers (dev, staging, production)."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from cli_helpers import check_json, resign_approvals, run
from conftest import EXAMPLES


def ids(decision):
    return {v["id"] for v in decision["violations"]}


def override(tmp_path, env, block, values):
    path = tmp_path / f"override-{env}-{block}.json"
    path.write_text(json.dumps({"mlgate": {"environments": {env: {block: values}}}}))
    return path


def copy_example(tmp_path, name):
    dest = tmp_path / name
    shutil.copytree(EXAMPLES / name, dest)
    return dest


def edit_manifest(release, old, new):
    """Edit the manifest and have the approvers sign it again (the edit alone voids their
    approvals, MLG-APPR-020: these tests exercise the rule the edit is about)."""
    manifest = release / "mlgate.yaml"
    text = manifest.read_text()
    assert re.search(old, text, re.S), old
    manifest.write_text(re.sub(old, new, text, count=1, flags=re.S))
    resign_approvals(release)


# --------------------------------------------------------------------------- part 7: tiers

def test_dev_tier_is_catalogued_and_its_values_shown():
    code, out, _ = run(["policy", "doc"])
    assert code == 0
    assert "environments: dev, production, staging" in out
    assert "| threshold | dev | production | staging |" in out
    assert "| `bias.delta` | 0.1 | 0.05 | 0.05 |" in out


def test_check_env_picks_the_tier(tmp_path):
    # triage-acuity's subgroup gap fails non-inferiority in production, not in dev (non_inferiority false there)
    _, production, _ = check_json(EXAMPLES / "triage-acuity", "production", tmp_path / "a.jsonl")
    _, dev, _ = check_json(EXAMPLES / "triage-acuity", "dev", tmp_path / "a.jsonl")
    assert "MLG-BIAS-006" in ids(production)
    assert "MLG-BIAS-006" not in ids(dev)
    # dev requires one QA review for dev; the example carries none for dev
    assert "MLG-APPR-004" in ids(dev)
    assert all("review by quality-assurance" in v["message"] for v in dev["violations"] if v["id"] == "MLG-APPR-004")


# --------------------------------------------------------------------------- part 4: new rules

def test_examples_keep_their_decisions_under_the_new_rules(tmp_path):
    new = re.compile(r"MLG-(REC|SEQ|PCCP|PRIV)-|MLG-APPR-019|MLG-CARD-008")
    for name, env, code_expected in (("readmission-risk", "production", 0), ("readmission-risk", "staging", 0),
                                     ("triage-acuity-v2", "production", 0), ("triage-acuity", "production", 1),
                                     ("chest-xray", "staging", 1)):
        code, decision, _ = check_json(EXAMPLES / name, env, tmp_path / "a.jsonl")
        assert code == code_expected, (name, decision["violations"])
        assert not [i for i in ids(decision) if new.match(i)], (name, ids(decision))


def test_gmlp1_two_disciplines(tmp_path):
    data = override(tmp_path, "staging", "approvals", {"min_disciplines": 2})
    code, decision, _ = check_json(EXAMPLES / "readmission-risk", "staging", tmp_path / "a.jsonl", "--data", data)
    assert code == 1 and ids(decision) == {"MLG-APPR-019"}
    [v] = decision["violations"]
    assert "1 role(s) (clinical-safety-officer)" in v["message"] and "GMLP-1" in v["controls"]


def test_gmlp7_intended_use_names_the_human(tmp_path):
    data = override(tmp_path, "production", "model_card", {"human_roles": ["pharmacist"]})
    code, decision, _ = check_json(EXAMPLES / "readmission-risk", "production", tmp_path / "a.jsonl", "--data", data)
    assert code == 1 and ids(decision) == {"MLG-CARD-008"}


def test_pccp_lineage_required_in_production(tmp_path):
    release = copy_example(tmp_path, "readmission-risk")
    edit_manifest(release, r"  lineage: \{kind: initial\}\n", "")
    code, decision, _ = check_json(release, "production", tmp_path / "a.jsonl")
    assert code == 1 and ids(decision) == {"MLG-PCCP-001"}
    code, _, _ = check_json(release, "staging", tmp_path / "a.jsonl")
    assert code == 0  # staging does not require it


def test_pccp_retrain_must_cite_an_authorised_modification(tmp_path):
    data = override(tmp_path, "production", "lineage", {"authorized_modifications": ["PCCP-OTHER-001"]})
    code, decision, _ = check_json(EXAMPLES / "triage-acuity-v2", "production", tmp_path / "a.jsonl", "--data", data)
    assert code == 1 and ids(decision) == {"MLG-PCCP-003"}
    assert "PCCP-TRIAGE-001" in decision["violations"][0]["message"]


def test_pccp_retrain_must_name_a_different_predecessor(tmp_path):
    release = copy_example(tmp_path, "triage-acuity-v2")
    _, decision, _ = check_json(release, "production", tmp_path / "a.jsonl")
    own = decision["model_digest"]
    edit_manifest(release, r"modelDigest: [0-9a-f]{64}", f"modelDigest: {own}")
    code, decision, _ = check_json(release, "production", tmp_path / "a.jsonl")
    assert code == 1 and ids(decision) == {"MLG-PCCP-002"}


def test_hipaa_deidentification_declaration(tmp_path):
    release = copy_example(tmp_path, "readmission-risk")
    edit_manifest(release, r"  privacy:\n    deidentification:\n      method: safe-harbor\n      statement: [^\n]*\n", "")
    code, decision, _ = check_json(release, "production", tmp_path / "a.jsonl")
    assert code == 1 and ids(decision) == {"MLG-PRIV-001"}
    edit_manifest(release, r"  provenance:", "  privacy:\n    deidentification: {method: pseudonymised, statement: hashed MRNs}\n  provenance:")
    code, decision, _ = check_json(release, "production", tmp_path / "a.jsonl")
    assert code == 1 and ids(decision) == {"MLG-PRIV-002"}


def _shift_bias_audit(release, created_at):
    path = release / "evidence" / "bias_audit.json"
    doc = json.loads(path.read_text())
    assert "created_at" in doc
    doc["created_at"] = created_at
    path.write_text(json.dumps(doc, indent=2))


def test_sequencing_approval_after_the_evidence(tmp_path):
    release = copy_example(tmp_path, "readmission-risk")
    _shift_bias_audit(release, "2026-11-27T09:00:00Z")  # after both approvals
    code, decision, _ = check_json(release, "production", tmp_path / "a.jsonl")
    assert code == 1 and "MLG-SEQ-002" in ids(decision)
    assert "MLG-APPR-012" in ids(decision)  # the edit also changed evidence the approvals signed


def test_sequencing_validation_before_bias_audit(tmp_path):
    release = copy_example(tmp_path, "readmission-risk")
    _shift_bias_audit(release, "2026-10-01T09:00:00Z")  # before the data validation
    code, decision, _ = check_json(release, "production", tmp_path / "a.jsonl")
    assert code == 1 and "MLG-SEQ-001" in ids(decision)


def test_every_target_control_has_a_rule():
    from mlgate.policytools.doc import build_catalogue

    catalogue = build_catalogue()
    uncovered = [c.control.id for c in catalogue.uncovered if c.control.target]
    assert uncovered == []
