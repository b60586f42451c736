"""Provenance (issue 7 parts 1, 2 and 6): git, DVC, the collect command, the facts and the rules.

Git repositories are real (GitPython in a temporary directory). DVC files are written in DVC 3's
documented format (``.dvc``: ``outs[].md5/size/hash/path``; ``dvc.lock`` schema 2.0) because
DVC is not a dependency of mlgate; the md5 values are real md5s of the files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from cli_helpers import check_json, resign_approvals, run
from conftest import EXAMPLES

UTC = dt.timezone.utc
WHEN = dt.datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def git_repo(path: Path):
    import git

    repo = git.Repo.init(path, initial_branch="main")
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "CI")
        cw.set_value("user", "email", "ci@hospital.example")
        cw.set_value("commit", "gpgsign", "false")
    return repo


def dvc_add(root: Path, rel: str) -> None:
    """What `dvc add` writes: REL.dvc beside the file, and a .gitignore entry."""
    path = root / rel
    (root / f"{rel}.dvc").write_text(f"outs:\n- md5: {md5(path)}\n  size: {path.stat().st_size}\n  hash: md5\n  path: {path.name}\n")
    with open(path.parent / ".gitignore", "a") as fh:
        fh.write(f"/{path.name}\n")


@pytest.fixture
def training_repo(tmp_path):
    """A training repository with the readmission-risk release inside it, its data tracked by DVC."""
    root = tmp_path / "training"
    shutil.copytree(EXAMPLES / "readmission-risk", root / "release")
    manifest = root / "release" / "mlgate.yaml"
    doc = yaml.safe_load(manifest.read_text())
    doc["spec"].pop("provenance", None)
    text = manifest.read_text()
    manifest.write_text(text[: text.index("  provenance:")])  # the example's own provenance is for another repository
    (root / "train.py").write_text("print('train')\n")
    repo = git_repo(root)
    for ds in ("train", "eval"):
        dvc_add(root, f"release/data/{ds}.csv")
    repo.git.add(A=True)
    repo.index.commit("train readmission-risk")
    return root, repo


# --------------------------------------------------------------------------- git


def test_strip_credentials():
    from mlgate.provenance.gitinfo import strip_credentials

    assert strip_credentials("https://user:ghp_secret@github.com/org/repo.git") == "https://github.com/org/repo.git"
    assert strip_credentials("https://oauth2:tok@gitlab.example:8443/g/r.git") == "https://gitlab.example:8443/g/r.git"
    assert strip_credentials("ssh://git@host/org/r.git") == "ssh://host/org/r.git"
    assert strip_credentials("git@github.com:org/repo.git") == "git@github.com:org/repo.git"
    assert strip_credentials(None) is None


def test_git_facts_clean_dirty_and_excluded_release(tmp_path):
    from mlgate.provenance.gitinfo import git_facts

    repo = git_repo(tmp_path)
    (tmp_path / "train.py").write_text("a\n")
    (tmp_path / "release").mkdir()
    (tmp_path / "release" / "mlgate.yaml").write_text("x\n")
    repo.git.add(A=True)
    repo.index.commit("c1")
    repo.create_remote("origin", "https://bot:s3cret@git.example/ml/train.git")
    facts = git_facts(tmp_path / "release", exclude=tmp_path / "release")
    assert facts["present"] and facts["dirty"] is False
    assert facts["commit"] == repo.head.commit.hexsha == facts["training_commit"]
    assert facts["training_commit_source"] == "git-head" and facts["training_commit_in_repo"] is True
    assert facts["branch"] == "main" and facts["remote_url"] == "https://git.example/ml/train.git"
    assert "s3cret" not in json.dumps(facts)

    # a change inside the release directory is the product, not the code: still clean
    (tmp_path / "release" / "mlgate.yaml").write_text("y\n")
    assert git_facts(tmp_path, exclude=tmp_path / "release")["dirty"] is False
    # a changed training script and an untracked file are not
    (tmp_path / "train.py").write_text("b\n")
    (tmp_path / "notes.py").write_text("c\n")
    facts = git_facts(tmp_path, exclude=tmp_path / "release")
    assert facts["dirty"] is True and facts["changed_count"] == 1 and facts["untracked_count"] == 1
    assert facts["changed_paths"] == ["notes.py", "train.py"]


def test_git_training_commit_from_another_source(tmp_path):
    from mlgate.provenance.gitinfo import git_facts

    repo = git_repo(tmp_path)
    (tmp_path / "a").write_text("a")
    repo.git.add(A=True)
    first = repo.index.commit("c1").hexsha
    (tmp_path / "a").write_text("b")
    repo.git.add(A=True)
    repo.index.commit("c2")
    facts = git_facts(tmp_path, training_commit=(first, "mlflow-run-tag"))
    assert facts["training_commit"] == first and facts["training_commit_in_repo"] is True
    assert facts["training_commit_source"] == "mlflow-run-tag"
    unknown = git_facts(tmp_path, training_commit=("ab" * 20, "option"))
    assert unknown["training_commit_in_repo"] is False


def test_not_git_and_empty_repository_are_recorded_absences(tmp_path):
    from mlgate.provenance.gitinfo import git_facts

    plain = tmp_path / "plain"
    plain.mkdir()
    facts = git_facts(plain)
    assert facts == {"present": False, "reason": f"{plain}: not inside a git repository"}
    empty = tmp_path / "empty"
    git_repo(empty)
    facts = git_facts(empty)
    assert facts["present"] is False and "no commit" in facts["reason"]
    assert git_facts(tmp_path / "missing")["present"] is False


# --------------------------------------------------------------------------- DVC


def test_dvc_files_and_lock(tmp_path):
    from mlgate.provenance.dvcinfo import MD5_WARNING, dvc_facts

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("a,b\n1,2\n")
    dvc_add(tmp_path, "data/train.csv")
    (tmp_path / "model").mkdir()
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  train:\n    cmd: python train.py\n    deps:\n"
        f"    - path: data/train.csv\n      hash: md5\n      md5: {md5(tmp_path / 'data' / 'train.csv')}\n      size: 8\n"
        "    outs:\n    - path: model\n      hash: md5\n      md5: 0123456789abcdef0123456789abcdef.dir\n      size: 10\n      nfiles: 2\n"
    )
    facts = dvc_facts(tmp_path)
    assert facts["present"] and facts["errors"] == [] and facts["warning"] == MD5_WARNING
    assert facts["stages"] == [{"name": "train", "cmd": "python train.py", "deps": ["data/train.csv"], "outs": ["model"]}]
    by_path = {f["path"]: f for f in facts["files"]}
    train = by_path["data/train.csv"]
    assert train["sha256"] == sha256(tmp_path / "data" / "train.csv") and train["md5_matches"] is True
    assert by_path["model"]["is_dir"] is True and by_path["model"]["sha256"] is None


def test_dvc_md5_mismatch_and_missing_local_file(tmp_path):
    from mlgate.provenance.dvcinfo import dvc_facts

    (tmp_path / "train.csv").write_text("x\n")
    dvc_add(tmp_path, "train.csv")
    (tmp_path / "train.csv").write_text("changed after dvc add\n")
    (tmp_path / "gone.csv.dvc").write_text("outs:\n- md5: 0123456789abcdef0123456789abcdef\n  size: 3\n  hash: md5\n  path: gone.csv\n")
    files = {f["path"]: f for f in dvc_facts(tmp_path)["files"]}
    assert files["train.csv"]["md5_matches"] is False
    assert files["gone.csv"]["sha256"] is None and files["gone.csv"]["md5_matches"] is None


@pytest.mark.parametrize(
    ("lock", "expected"),
    [
        ("schema: '2.0'\nstages:\n  train: [unclosed\n", "invalid YAML"),
        ("schema: '2.0'\nstages: [a, b]\n", "stages: expected a mapping of stage names"),
        ("schema: '1.0'\nstages: {}\n", "schema: got '1.0', expected '2.0'"),
        ("schema: '2.0'\nstages:\n  train:\n    outs:\n    - path: ../../etc/passwd\n      md5: 0123456789abcdef0123456789abcdef\n", "leaves the DVC project"),
        ("schema: '2.0'\nstages:\n  train:\n    outs:\n    - path: m\n      md5: not-an-md5\n", "expected 32 hex characters"),
        ("\x00binary", "binary data"),
    ],
)
def test_corrupt_dvc_lock_is_a_recorded_error(tmp_path, lock, expected):
    from mlgate.provenance.dvcinfo import dvc_facts

    (tmp_path / "dvc.lock").write_text(lock)
    facts = dvc_facts(tmp_path)
    assert facts["present"] is True
    assert any(expected in e for e in facts["errors"]), facts["errors"]


def test_no_dvc_files_is_absent(tmp_path):
    from mlgate.provenance.dvcinfo import dvc_facts

    assert dvc_facts(tmp_path) == {"present": False, "reason": f"{tmp_path}: no dvc.lock and no .dvc files"}


# --------------------------------------------------------------------------- collect + check


def test_collect_writes_the_block_and_keeps_the_manifest(training_repo, tmp_path):
    root, repo = training_repo
    manifest = root / "release" / "mlgate.yaml"
    before = manifest.read_text()
    code, out, err = run(["evidence", "collect", root / "release"], now=WHEN)
    assert code == 0, err
    assert "provenance written to" in out and "2 dataset digest(s)" in out
    assert "not a security digest" in err
    after = manifest.read_text()
    assert after.startswith(before)  # every byte before the block is kept
    block = yaml.safe_load(after)["spec"]["provenance"]
    assert block["collected_at"] == "2026-11-20T09:00:00Z"
    assert block["git"]["commit"] == repo.head.commit.hexsha and block["git"]["dirty"] is False
    assert block["git"]["excluded_path"] == "release"
    assert {d["name"]: d["sha256"] for d in block["datasets"]} == {
        "train": sha256(root / "release" / "data" / "train.csv"), "eval": sha256(root / "release" / "data" / "eval.csv")}
    assert {d["role"] for d in block["datasets"]} == {"train", "eval"}
    # running it again replaces the block instead of adding a second one
    code, _, _ = run(["evidence", "collect", root / "release"], now=WHEN)
    assert code == 0 and manifest.read_text() == after

    # Collected after signing: the approvals signed the manifest as it was, so they no longer count
    # (issue 14: collect provenance first, then sign) ...
    code, decision, _ = check_json(root / "release", "production", tmp_path / "a.jsonl")
    assert code == 1
    assert all("spec.provenance: changed since it was signed" in v["message"] for v in decision["violations"] if v["id"] == "MLG-APPR-020")
    # ... until the approvers sign the finished manifest.
    resign_approvals(root / "release")
    code, decision, _ = check_json(root / "release", "production", tmp_path / "a.jsonl")
    assert code == 0, decision["violations"]


def test_collect_replaces_a_block_in_the_middle(tmp_path):
    from mlgate.provenance import write_provenance

    manifest = tmp_path / "mlgate.yaml"
    manifest.write_text("apiVersion: mlgate.dev/v1\nkind: ModelRelease\nspec:\n  model: {path: m}\n  provenance:\n    old: 1\n\n  # comment kept\n  datasets: []\nmetadata: {name: x, version: '1', owner: o@x.example}\n")
    block = {"collected_at": "2026-11-20T09:00:00Z", "collector": "mlgate test", "git": {"present": False, "reason": "r"},
             "dvc": {"present": False, "reason": "r"}, "mlflow": {"present": False, "reason": "r"}, "datasets": []}
    write_provenance(manifest, block)
    text = manifest.read_text()
    assert "old: 1" not in text and "# comment kept" in text and text.endswith("metadata: {name: x, version: '1', owner: o@x.example}\n")
    assert yaml.safe_load(text)["spec"]["provenance"] == block


def test_dirty_tree_denies_in_production_only(training_repo, tmp_path):
    root, _ = training_repo
    (root / "train.py").write_text("print('changed after the commit')\n")
    code, _, err = run(["evidence", "collect", root / "release"], now=WHEN)
    assert code == 0, err
    resign_approvals(root / "release")  # the approvers sign the manifest with its new provenance (else MLG-APPR-020)
    code, decision, _ = check_json(root / "release", "production", tmp_path / "a.jsonl")
    assert code == 1
    (finding,) = [v for v in decision["violations"] if v["id"] == "MLG-PROV-004"]
    assert "train.py" in finding["message"]
    assert {v["id"] for v in decision["violations"]} == {"MLG-PROV-004"}
    code, decision, _ = check_json(root / "release", "staging", tmp_path / "a.jsonl")
    assert "MLG-PROV-004" not in {v["id"] for v in decision["violations"]}


def test_corrupt_dvc_lock_denies(training_repo, tmp_path):
    root, repo = training_repo
    (root / "dvc.lock").write_text("schema: '2.0'\nstages: {train: [\n")
    repo.git.add(A=True)
    repo.index.commit("broken lock")
    code, out, err = run(["evidence", "collect", root / "release"], now=WHEN)
    assert code == 0 and "invalid YAML" in err and "Traceback" not in err
    code, decision, _ = check_json(root / "release", "production", tmp_path / "a.jsonl")
    assert code == 1
    (finding,) = [v for v in decision["violations"] if v["id"] == "MLG-PROV-002"]
    assert "dvc.lock: invalid YAML" in finding["message"]


def test_data_changed_after_dvc_add_denies(training_repo, tmp_path):
    root, _ = training_repo
    data = root / "release" / "data" / "eval.csv"
    data.write_text(data.read_text() + "1,2,3\n")
    code, _, _ = run(["evidence", "collect", root / "release"], now=WHEN)
    assert code == 0
    code, decision, _ = check_json(root / "release", "production", tmp_path / "a.jsonl")
    ids = {v["id"] for v in decision["violations"]}
    assert code == 1 and {"MLG-PROV-002", "MLG-PROV-007", "MLG-DATA-006"} <= ids, ids


def test_release_outside_git_records_absence_and_production_denies(tmp_path):
    release = tmp_path / "release"
    shutil.copytree(EXAMPLES / "readmission-risk", release)
    text = (release / "mlgate.yaml").read_text()
    (release / "mlgate.yaml").write_text(text[: text.index("  provenance:")])
    code, out, err = run(["evidence", "collect", release], now=WHEN)
    assert code == 0, err
    assert "git: recorded as absent" in err and "not inside a git repository" in err
    code, decision, _ = check_json(release, "production", tmp_path / "a.jsonl")
    assert code == 1
    assert {"MLG-PROV-003", "MLG-PROV-006"} <= {v["id"] for v in decision["violations"]}


def test_explicit_sources_that_fail_are_errors(tmp_path):
    release = tmp_path / "release"
    shutil.copytree(EXAMPLES / "readmission-risk", release)
    before = (release / "mlgate.yaml").read_bytes()
    code, _, err = run(["evidence", "collect", release, "--repo", tmp_path / "nowhere"], now=WHEN)
    assert code == 2 and "--repo: cannot read git facts" in err
    code, _, err = run(["evidence", "collect", release, "--dvc-root", tmp_path, "--no-git"], now=WHEN)
    assert code == 2 and "--dvc-root: cannot read DVC facts" in err
    code, _, err = run(["evidence", "collect", release, "--mlflow-model", "models:/x/1", "--tracking-uri", "http://127.0.0.1:9"], now=WHEN)
    assert code == 2 and "unreachable" in err and "Traceback" not in err
    code, _, err = run(["evidence", "collect", release, "--mlflow-model", "not-a-uri", "--tracking-uri", "http://127.0.0.1:9"], now=WHEN)
    assert code == 2 and "expected models:/NAME/VERSION" in err
    code, _, err = run(["evidence", "collect", release, "--mlflow-run", "abc", "--tracking-uri", "file:///tmp/mlruns"], now=WHEN)
    assert code == 2 and "REST API" in err
    assert (release / "mlgate.yaml").read_bytes() == before  # nothing written on an error


def test_examples_carry_provenance():
    for name in ("readmission-risk", "triage-acuity", "triage-acuity-v2", "chest-xray"):
        block = yaml.safe_load((EXAMPLES / name / "mlgate.yaml").read_text())["spec"]["provenance"]
        assert block["git"]["present"] and block["git"]["dirty"] is False
        assert block["dvc"]["present"] and block["dvc"]["errors"] == []
        assert block["model_stage"]["name"] == "train"
        assert {d["name"] for d in block["datasets"]} == {"train", "eval"}


def test_provenance_facts_in_the_input_document(tmp_path):
    from mlgate.evidence import collect
    from mlgate.manifest import load_release
    from mlgate.signing.trust import load_trust_policy
    from conftest import REPO

    release = load_release(EXAMPLES / "readmission-risk")
    facts = collect(release, load_trust_policy(REPO / "examples" / "trust.yaml")).evidence["provenance"]
    assert facts["present"] and facts["valid"] and facts["authenticated"] is False and facts["errors"] == []
    assert facts["collected_at_ns"] > 0 and facts["git"]["training_commit_in_repo"] is True
    assert facts["dvc"] == {
        "present": True, "reason": None, "lock_file": "dvc.lock", "stages": ["train"], "file_count": 4,
        "warning": facts["dvc"]["warning"], "md5_mismatches": []}
    declared = {d.name: d.declared_sha256 for d in release.datasets}
    assert {d["name"]: d["sha256"] for d in facts["datasets"]} == declared


def test_provenance_naming_an_undeclared_dataset_is_invalid(tmp_path):
    release = tmp_path / "release"
    shutil.copytree(EXAMPLES / "readmission-risk", release)
    manifest = release / "mlgate.yaml"
    manifest.write_text(manifest.read_text().replace("- name: eval\n", "- name: holdout\n"))
    code, decision, _ = check_json(release, "production", tmp_path / "a.jsonl")
    assert code == 1
    (finding,) = [v for v in decision["violations"] if v["id"] == "MLG-PROV-002"]
    assert "'holdout' is not a dataset of the manifest" in finding["message"]


def test_malformed_provenance_block_is_an_input_error(tmp_path):
    release = tmp_path / "release"
    shutil.copytree(EXAMPLES / "readmission-risk", release)
    manifest = release / "mlgate.yaml"
    manifest.write_text(manifest.read_text().replace("      dirty: false\n", "      dirty: maybe\n", 1))
    code, out, err = run(["check", release, "--env", "production", "--audit-log", tmp_path / "a.jsonl"])
    assert code == 2 and "spec.provenance" in (out + err)
