"""The policy's git facts in the audit record come from one ``git status`` process, not GitPython
(issue 17 part 5), and say what GitPython said: the HEAD commit, whether the policy directory
differs from it (untracked files included, changes elsewhere in the repository not), its path."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import git
import pytest

from conftest import EXAMPLES, REPO
from mlgate.audit import record


def _gitpython(directory):
    repo = git.Repo(directory, search_parent_directories=True)
    try:
        rel = os.path.relpath(directory, repo.working_tree_dir)
        return {"commit": repo.head.commit.hexsha, "dirty": bool(repo.is_dirty(untracked_files=True, path=rel)),
                "path": rel.replace(os.sep, "/")}
    finally:
        repo.close()


@pytest.fixture
def checkout(tmp_path):
    root = tmp_path / "repo"
    (root / "policy" / "sub").mkdir(parents=True)
    (root / "other").mkdir()
    (root / "policy" / "a.rego").write_text("package a\n")
    (root / "policy" / "sub" / "b.json").write_text("{}\n")
    (root / "other" / "c.txt").write_text("c\n")
    repo = git.Repo.init(root)
    repo.index.add(["policy/a.rego", "policy/sub/b.json", "other/c.txt"])
    repo.index.commit("one", author=git.Actor("a", "a@example.org"), committer=git.Actor("a", "a@example.org"))
    repo.close()
    return root


@pytest.mark.parametrize("change", ["none", "edit tracked", "untracked", "untracked deep", "delete tracked", "staged",
                                    "edit outside", "untracked outside"])
def test_the_same_facts_as_gitpython(checkout, change):
    policy = checkout / "policy"
    if change == "edit tracked":
        (policy / "a.rego").write_text("package a\nx := 1\n")
    elif change == "untracked":
        (policy / "new.rego").write_text("package n\n")
    elif change == "untracked deep":
        (policy / "sub" / "deeper").mkdir()
        (policy / "sub" / "deeper" / "d.json").write_text("{}")
    elif change == "delete tracked":
        (policy / "sub" / "b.json").unlink()
    elif change == "staged":
        (policy / "a.rego").write_text("package a\ny := 2\n")
        subprocess.run(["git", "-C", str(checkout), "add", "policy/a.rego"], check=True)
    elif change == "edit outside":
        (checkout / "other" / "c.txt").write_text("changed\n")
    elif change == "untracked outside":
        (checkout / "stray.txt").write_text("x")
    for directory in (policy, policy / "sub", checkout):
        ours = record._git_status(os.path.realpath(directory))
        assert ours == _gitpython(directory), (change, directory)
    assert record._git_status(str(policy))["dirty"] is (change not in ("none", "edit outside", "untracked outside"))


def test_no_facts_without_a_commit_or_outside_a_checkout(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    git.Repo.init(empty).close()
    assert record._git_status(str(empty)) is None
    plain = tmp_path / "plain"
    plain.mkdir()
    assert record._git_status(str(plain)) is None


def test_a_check_imports_no_gitpython(tmp_path):
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['mlgate', 'check', sys.argv[1], '--env', 'production', '--audit-log', sys.argv[2]]\n"
        "try:\n    runpy.run_module('mlgate', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print('GITPYTHON' if 'git' in sys.modules else 'NO-GITPYTHON', file=sys.stderr)\n"
    )
    log = tmp_path / "audit.jsonl"
    run = subprocess.run([sys.executable, "-c", probe, str(EXAMPLES / "readmission-risk"), str(log)],
                         capture_output=True, text=True, cwd=REPO)
    assert "NO-GITPYTHON" in run.stderr, run.stderr[-2000:]
    rec = json.loads(log.read_text().splitlines()[0])
    expected = _gitpython(REPO / "policies")  # dirty may change meanwhile: others edit this checkout
    assert {k: rec["policy_git"][k] for k in ("commit", "path")} == {k: expected[k] for k in ("commit", "path")}
    assert isinstance(rec["policy_git"]["dirty"], bool)
