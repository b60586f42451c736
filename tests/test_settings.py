"""Issue 14 part 7: secure by default, and the project settings file ``.mlgate.yaml``.

The trust policy inside the package trusts no one; the examples' trust policy (whose private keys
are published in examples/keys/) is found through the repository's ``.mlgate.yaml``."""

from __future__ import annotations

import json

import pytest

from cli_helpers import run
from conftest import EXAMPLES, REPO
from mlgate.errors import InputError
from mlgate.policy import TRUST_POLICY_NAME, bundled_policy_dir, load_policy
from mlgate.settings import NO_SETTINGS, find_settings, load_settings

RELEASE = EXAMPLES / "readmission-risk"


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_the_installed_package_trusts_no_one():
    """The reproduction: policies/trust.yaml trusted the fictional hospital whose keys are public."""
    assert not (bundled_policy_dir() / TRUST_POLICY_NAME).exists()
    assert load_policy().trust_policy_path is None


def test_no_trust_policy_configured_is_a_recorded_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no .mlgate.yaml here
    log = tmp_path / "a.jsonl"
    code, out, err = run(["check", RELEASE, "--env", "production", "--audit-log", log])
    assert code == 2
    assert _one_line(err).startswith("mlgate: error: no trust policy configured") and "--trust FILE" in err and ".mlgate.yaml" in err
    (record,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert record["result"] == "error" and "no trust policy configured" in record["error"]


def test_verify_follows_the_same_lookup(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(["verify", RELEASE])
    assert code == 2 and "no trust policy configured" in _one_line(err)
    monkeypatch.chdir(REPO)
    code, out, _ = run(["verify", RELEASE, "-o", "json"])
    assert json.loads(out)["trust_policy"]["source"] == "examples/trust.yaml"


def test_the_quick_start_reads_the_repository_settings(tmp_path):
    assert find_settings(REPO).trust == REPO / "examples" / "trust.yaml"
    log = tmp_path / "a.jsonl"
    code, _, _ = run(["check", RELEASE, "--env", "production", "--audit-log", log])
    assert code in (0, 1)
    record = json.loads(log.read_text().splitlines()[0])
    assert record["trust_policy"]["from"] == "settings" and record["revision_inputs"]["settings"]["path"] == ".mlgate.yaml"


def test_paths_are_relative_to_the_settings_file_and_flags_win(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    (project / "trust.yaml").write_text((EXAMPLES / "trust.yaml").read_text())
    (project / ".mlgate.yaml").write_text("trust: trust.yaml\naudit: trail/audit.jsonl\n")
    settings = load_settings(project / ".mlgate.yaml")
    assert settings.trust == project / "trust.yaml" and settings.audit == f"file:{project / 'trail' / 'audit.jsonl'}"
    monkeypatch.chdir(project)
    code, _, _ = run(["check", RELEASE, "--env", "production"])
    assert code in (0, 1)
    (record,) = [json.loads(line) for line in (project / "trail" / "audit.jsonl").read_text().splitlines()]
    assert record["trust_policy"] == {**record["trust_policy"], "path": "trust.yaml", "from": "settings"}
    code, _, _ = run(["check", RELEASE, "--env", "production", "--trust", EXAMPLES / "trust.yaml", "--audit-log", tmp_path / "b.jsonl"])
    (record,) = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert record["trust_policy"]["from"] == "flag"


@pytest.mark.parametrize("text,field,message", [
    ("trsut: trust.yaml\n", "trsut", "unknown setting 'trsut'"),
    ("trust: [a, b]\n", "trust", "must be a non-empty string"),
    ("audit: 5\n", "audit", "must be a non-empty string"),
    ("- trust\n", None, "the settings must be a mapping"),
])
def test_bad_settings_are_one_line_errors_naming_file_and_key(tmp_path, monkeypatch, text, field, message):
    (tmp_path / ".mlgate.yaml").write_text(text)
    with pytest.raises(InputError) as info:
        load_settings(tmp_path / ".mlgate.yaml")
    assert info.value.field == field and message in info.value.message
    monkeypatch.chdir(tmp_path)
    code, _, err = run(["check", RELEASE, "--env", "production", "--audit-log", tmp_path / "a.jsonl"])
    assert code == 2 and _one_line(err).startswith("mlgate: error: .mlgate.yaml: ") and message in err


def test_no_settings_file_means_no_settings(tmp_path):
    assert find_settings(tmp_path) == NO_SETTINGS
