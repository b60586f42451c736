from __future__ import annotations

import os
import textwrap

import pytest

from mlgate.errors import InputError
from mlgate.manifest import load_release

GOOD = """\
apiVersion: mlgate.dev/v1
kind: ModelRelease
metadata: {name: readmission-risk, version: "1.4.0", owner: ml-platform@hospital.example}
spec:
  model: {path: model/, storageUri: "s3://models/readmission-risk/1.4.0/"}
  datasets:
    - {name: train, uri: data/train.csv, digest: {sha256: "%s"}}
    - {name: remote, uri: "s3://bucket/eval.parquet", digest: {sha256: "%s"}}
  evidence:
    modelCard: evidence/model_card.md
    dataValidation: [evidence/v.json, {path: evidence/w.json, dataset: train}]
    biasAudit: evidence/bias.json
    approvals: [evidence/approvals/]
""" % ("a" * 64, "b" * 64)


def make(tmp_path, text=GOOD):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "w.bin").write_bytes(b"w")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("x\n1\n")
    ev = tmp_path / "evidence"
    (ev / "approvals").mkdir(parents=True)
    for name in ("model_card.md", "v.json", "w.json", "bias.json"):
        (ev / name).write_text("{}")
    (ev / "approvals" / "b.json").write_text("{}")
    (ev / "approvals" / "a.json").write_text("{}")
    (ev / "approvals" / ".hidden").write_text("{}")
    (tmp_path / "mlgate.yaml").write_text(text)
    return tmp_path


def test_good_manifest(tmp_path):
    rel = load_release(make(tmp_path))
    assert (rel.name, rel.version, rel.owner) == ("readmission-risk", "1.4.0", "ml-platform@hospital.example")
    assert [a[1] for a in rel.approvals] == ["evidence/approvals/a.json", "evidence/approvals/b.json"]
    assert rel.datasets[0].local_path is not None and rel.datasets[1].local_path is None
    assert [v.dataset for v in rel.data_validation] == [None, "train"]
    assert [r for _, r in rel.evaluated_evidence()] == ["evidence/model_card.md", "evidence/v.json", "evidence/w.json", "evidence/bias.json"]
    assert len(rel.manifest_digest) == 64


def _error(tmp_path, text):
    with pytest.raises(InputError) as exc:
        load_release(make(tmp_path, text))
    msg = str(exc.value)
    assert "\n" not in msg and "mlgate.yaml" in msg
    return msg


def test_wrong_type_names_json_path(tmp_path):
    msg = _error(tmp_path, GOOD.replace("biasAudit: evidence/bias.json", "biasAudit: [evidence/bias.json]"))
    assert msg.endswith("mlgate.yaml: spec.evidence.biasAudit: expected string, got list")


def test_missing_required_field(tmp_path):
    msg = _error(tmp_path, GOOD.replace(", owner: ml-platform@hospital.example", ""))
    assert "metadata: 'owner' is required" in msg


@pytest.mark.parametrize("bad", ["../outside.md", "/etc/passwd"])
def test_escaping_paths(tmp_path, bad):
    msg = _error(tmp_path, GOOD.replace("evidence/model_card.md", bad))
    assert "spec.evidence.modelCard" in msg


def test_symlinked_evidence_leaving_release(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "card.md").write_text("x")
    rel = tmp_path / "rel"
    rel.mkdir()
    make(rel)
    os.remove(rel / "evidence" / "model_card.md")
    os.symlink(outside / "card.md", rel / "evidence" / "model_card.md")
    with pytest.raises(InputError, match="resolves outside the release directory"):
        load_release(rel)


def test_symlink_in_approvals_dir_leaving_release(tmp_path):
    rel = tmp_path / "rel"
    rel.mkdir()
    make(rel)
    (tmp_path / "evil.json").write_text("{}")
    os.symlink(tmp_path / "evil.json", rel / "evidence" / "approvals" / "evil.json")
    with pytest.raises(InputError, match="spec.evidence.approvals\\[0\\]"):
        load_release(rel)


def test_missing_evidence_file(tmp_path):
    msg = _error(tmp_path, GOOD.replace("evidence/bias.json", "evidence/nope.json"))
    assert "spec.evidence.biasAudit: 'evidence/nope.json' does not exist" in msg


def test_malformed_yaml(tmp_path):
    assert "invalid YAML at line" in _error(tmp_path, "apiVersion: [unclosed\n")


def test_alias_bomb(tmp_path):
    assert "aliases are not allowed" in _error(tmp_path, GOOD + "x: &a [1]\ny: *a\n")


def test_unknown_dataset_reference(tmp_path):
    msg = _error(tmp_path, GOOD.replace("dataset: train", "dataset: test"))
    assert "spec.evidence.dataValidation[1].dataset" in msg


def test_release_dir_missing(tmp_path):
    with pytest.raises(InputError, match="release directory not found"):
        load_release(tmp_path / "nope")


def test_dir_without_manifest(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_release(tmp_path)


def test_empty_manifest(tmp_path):
    assert "empty manifest" in _error(tmp_path, "")


def test_manifest_file_path_accepted(tmp_path):
    root = make(tmp_path)
    assert load_release(root / "mlgate.yaml").name == "readmission-risk"


def test_unknown_top_level_key(tmp_path):
    msg = _error(tmp_path, textwrap.dedent(GOOD) + "extra: 1\n")
    assert "mlgate.yaml: $: unexpected field(s) 'extra'" in msg
