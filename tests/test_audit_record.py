"""The record content (mlgate.dev/audit/v1), evidence retention, `audit show` and `audit export`."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile

import pytest

from mlgate.audit import GENESIS_HASH, open_sink, parse_audit_url
from mlgate.canonical import digest_json
from mlgate.errors import AuditError

from cli_helpers import run
from conftest import EXAMPLES

FIELDS = {"apiVersion", "decision_id", "sequence", "timestamp", "actor", "action", "source", "namespace", "dry_run", "release",
          "subject_digest", "environment", "policy_revision", "policy_git", "engine", "engine_version", "mlgate_version", "input_digest",
          "erased", "evidence_digests", "evidence_retained", "result", "violations", "warnings", "error", "exempt", "admission", "prev_hash", "hash",
          "trust_policy", "revision_inputs", "input", "input_facts"}  # the input document is stored by default (mlgate audit replay)


def _check(tmp_path, example, env, *extra, log=None):
    log = log or tmp_path / "audit.jsonl"
    code, out, err = run(["check", EXAMPLES / example, "--env", env, "-o", "json", "--audit-log", log, *extra])
    return code, json.loads(out), log


def _records(log):
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_record_fields(tmp_path):
    code, decision, log = _check(tmp_path, "triage-acuity", "production")
    assert code == 1
    (rec,) = _records(log)
    assert set(rec) == FIELDS
    assert rec["apiVersion"] == "mlgate.dev/audit/v1" and rec["sequence"] == 1 and rec["prev_hash"] == GENESIS_HASH
    assert rec["timestamp"] == "2026-11-29T12:00:00Z"  # the injected clock's
    assert rec["decision_id"] == decision["decision_id"] and rec["result"] == "deny" and rec["source"] == "cli"
    assert rec["release"]["name"] == "triage-acuity" and rec["subject_digest"] == decision["model_digest"]
    assert rec["policy_revision"] == decision["policy_revision"] and rec["input_digest"] == decision["input_digest"]
    assert {v["id"] for v in rec["violations"]} >= {"MLG-BIAS-002"}
    assert rec["erased"] == [] and rec["input"]["evaluated_at"] == rec["timestamp"] and rec["evidence_retained"] is False
    # The bundled policies sit in this repository's git checkout: the commit is recorded.
    assert rec["policy_git"]["path"] == "policies" and len(rec["policy_git"]["commit"]) == 40
    # Digests only: no signature or key material anywhere in the record.
    text = json.dumps(rec)
    assert "BEGIN" not in text and "signature\"" not in text


def test_policy_git_is_null_outside_a_checkout(tmp_path):
    from mlgate.policy import bundled_policy_dir

    policy = tmp_path / "policy"
    shutil.copytree(bundled_policy_dir(), policy, ignore=shutil.ignore_patterns("__pycache__"))
    _check(tmp_path, "readmission-risk", "production", "--policy", policy)
    assert _records(tmp_path / "audit.jsonl")[0]["policy_git"] is None


def test_policy_git_of_a_policy_checkout(tmp_path):
    import git

    from mlgate.policy import bundled_policy_dir

    policy = tmp_path / "policy"
    shutil.copytree(bundled_policy_dir(), policy, ignore=shutil.ignore_patterns("__pycache__"))
    files = [p.relative_to(policy).as_posix() for p in policy.rglob("*") if p.is_file()]
    repo = git.Repo.init(policy)
    repo.index.add(files)
    commit = repo.index.commit("policies", author=git.Actor("a", "a@example.org"), committer=git.Actor("a", "a@example.org"))
    _check(tmp_path, "readmission-risk", "production", "--policy", policy)
    assert _records(tmp_path / "audit.jsonl")[0]["policy_git"] == {"commit": commit.hexsha, "dirty": False, "path": "."}


def test_input_document_stored_when_asked(tmp_path):
    code, decision, log = _check(tmp_path, "readmission-risk", "production", "--audit-input", "store")
    assert code == 0
    (rec,) = _records(log)
    assert rec["erased"] == [] and rec["input"]["apiVersion"] == "mlgate.dev/input/v1"
    # The collected facts are stored once, content-addressed, beside the log; the record names their digests.
    from mlgate.audit.file import FileEvidenceStore
    from mlgate.audit.record import load_input

    assert set(rec["input_facts"]) == {"model", "datasets", "evidence", "evidence_files"} and "evidence" not in rec["input"]
    doc = load_input(rec, FileEvidenceStore(log.parent / "evidence"))
    assert doc["apiVersion"] == "mlgate.dev/input/v1" and "evidence" in doc
    assert digest_json(doc) == rec["input_digest"] == decision["input_digest"]


def test_error_decision_is_recorded_with_what_is_known(tmp_path):
    code, decision, log = _check(tmp_path, "does-not-exist", "production", "--retain-evidence", "--audit-input", "store")
    assert code == 2
    (rec,) = _records(log)
    assert rec["result"] == "error" and rec["error"] and rec["input_digest"] is None and "input" not in rec


def test_retained_evidence_is_content_addressed(tmp_path):
    code, decision, log = _check(tmp_path, "readmission-risk", "production", "--retain-evidence")
    assert code == 0
    (rec,) = _records(log)
    assert rec["evidence_retained"] is True
    store = tmp_path / "evidence" / "sha256"
    for rel, digest in rec["evidence_digests"].items():
        copy = store / digest[:2] / digest
        assert hashlib.sha256(copy.read_bytes()).hexdigest() == digest
        assert copy.read_bytes() == (EXAMPLES / "readmission-risk" / rel).read_bytes()
    # a second decision on the same release stores nothing new
    before = sorted(p.name for p in store.rglob("*") if p.is_file())
    _check(tmp_path, "readmission-risk", "staging", "--retain-evidence")
    assert sorted(p.name for p in store.rglob("*") if p.is_file()) == before


def test_retention_refuses_evidence_changed_since_the_decision(tmp_path):
    """The copy must be the bytes the decision read; a file changed in between fails closed."""
    from mlgate.audit.record import AuditOptions, retain
    from mlgate.audit.file import FileEvidenceStore

    release = tmp_path / "rel"
    shutil.copytree(EXAMPLES / "readmission-risk", release)

    class D:
        manifest_path = str(release / "mlgate.yaml")
        evidence_digests = {"evidence/bias_audit.json": "0" * 64}

    with pytest.raises(AuditError, match="cannot retain evidence evidence/bias_audit.json: its sha256 is now"):
        retain(D(), FileEvidenceStore(tmp_path / "store"))
    assert not list((tmp_path / "store").rglob("*.tmp"))

    class Outside(D):
        evidence_digests = {"../../etc/passwd": "0" * 64}

    with pytest.raises(AuditError, match="not a file inside the release"):
        retain(Outside(), FileEvidenceStore(tmp_path / "store"))


@pytest.mark.parametrize("url,kind,where", [
    ("file:a/b.jsonl", "file", "a/b.jsonl"), ("file:///tmp/x.jsonl", "file", "/tmp/x.jsonl"), ("plain.jsonl", "file", "plain.jsonl"),
    ("postgresql://u:secret@h/db", "postgresql", "postgresql://u:***@h/db"), ("postgres://h/db", "postgresql", "postgres://h/db"),
])
def test_audit_urls(url, kind, where):
    target = parse_audit_url(url)
    assert target.kind == kind and target.display.removeprefix("file:") == where


@pytest.mark.parametrize("url,msg", [("", "empty audit URL"), ("s3://bucket/x", "unknown audit URL scheme 's3'"), ("file:", "no path"),
                                     ("file://host/x", "with a host")])
def test_bad_audit_urls(url, msg):
    with pytest.raises(AuditError, match=msg):
        open_sink(url)


def test_check_audit_url_and_env(tmp_path, monkeypatch):
    log = tmp_path / "via-env.jsonl"
    monkeypatch.setenv("MLGATE_AUDIT", f"file:{log}")
    code, _, _ = run(["check", EXAMPLES / "readmission-risk", "--env", "staging"])
    assert code == 0 and len(_records(log)) == 1
    other = tmp_path / "explicit.jsonl"
    code, _, _ = run(["check", EXAMPLES / "readmission-risk", "--env", "staging", "--audit-log", other])  # beats the env var
    assert code == 0 and len(_records(other)) == 1 and len(_records(log)) == 1
    code, _, err = run(["check", EXAMPLES / "readmission-risk", "--env", "staging", "--audit", f"file:{log}", "--audit-log", other])
    assert code == 2 and "give one" in err
    code, _, err = run(["check", EXAMPLES / "readmission-risk", "--env", "staging", "--audit", "ftp://x"])
    assert code == 2 and err.count("\n") == 1 and "unknown audit URL scheme 'ftp'" in err


# -- show and export -------------------------------------------------------------------------


@pytest.fixture
def trail(tmp_path):
    log = tmp_path / "audit.jsonl"
    for example, env in [("readmission-risk", "production"), ("triage-acuity", "production"), ("readmission-risk", "staging"),
                         ("chest-xray", "staging")]:
        _check(tmp_path, example, env, "--retain-evidence", log=log)
    return log


def _show(log, *args):
    code, out, err = run(["audit", "show", "--audit", f"file:{log}", *args])
    assert code == 0, err
    return out


def test_show_filters(trail):
    recs = _records(trail)
    assert [r["sequence"] for r in json.loads(_show(trail, "-o", "json"))["records"]] == [1, 2, 3, 4]
    assert [r["sequence"] for r in json.loads(_show(trail, "--release", "readmission-risk", "-o", "json"))["records"]] == [1, 3]
    assert [r["sequence"] for r in json.loads(_show(trail, "--release", "readmission-risk@9.9", "-o", "json"))["records"]] == []
    assert [r["sequence"] for r in json.loads(_show(trail, "--result", "deny", "-o", "json"))["records"]] == [2, 4]
    assert [r["sequence"] for r in json.loads(_show(trail, "--env", "staging", "-o", "json"))["records"]] == [3, 4]
    digest = recs[1]["subject_digest"]
    assert [r["sequence"] for r in json.loads(_show(trail, "--model-digest", f"sha256:{digest[:12]}", "-o", "json"))["records"]] == [2]
    assert json.loads(_show(trail, "--since", "2026-11-29T12:00:01Z", "-o", "json"))["count"] == 0
    assert json.loads(_show(trail, "--until", "2026-11-29T12:00:00Z", "-o", "json"))["count"] == 4
    text = _show(trail, "--result", "deny")
    lines = text.splitlines()
    assert lines[0].split() == ["SEQ", "TIMESTAMP", "RESULT", "ENV", "RELEASE", "MODEL", "DECISION", "VIOLATIONS"]
    assert len(lines) == 3 and "triage-acuity@" in lines[1] and "MLG-BIAS-002" in lines[1] and lines[2].startswith("4 ")


def test_show_bad_time_and_missing_trail(tmp_path):
    code, _, err = run(["audit", "show", "--audit", f"file:{tmp_path}/audit.jsonl", "--since", "yesterday"])
    assert code == 2 and "--since" in err
    code, _, err = run(["audit", "show", "--audit", f"file:{tmp_path}/none.jsonl"])
    assert code == 2 and err.count("\n") == 1 and "cannot read the audit log: no such file" in err


def _members(tar_path):
    with tarfile.open(tar_path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def test_export_is_complete_and_self_checking(trail, tmp_path):
    out = tmp_path / "export.tar"
    code, stdout, err = run(["audit", "export", "--audit", f"file:{trail}", "--release", "triage-acuity", "-o", out])
    assert code == 0, err
    files = _members(out)
    assert files["records.jsonl"] == trail.read_bytes()  # the whole chain, byte for byte
    manifest = json.loads(files["MANIFEST.json"])
    assert manifest["apiVersion"] == "mlgate.dev/audit-export/v1" and manifest["selected"] == [2]
    assert manifest["chain"]["verification"]["status"] == "intact" and manifest["chain"]["head"]["sequence"] == 4
    rec = _records(trail)[1]
    assert set(manifest["evidence"]) == set(rec["evidence_digests"].values())
    assert manifest["policy_revisions"][rec["policy_revision"]]["decisions"] == [2]
    for name, data in files.items():
        if name not in ("MANIFEST.json", "SHA256SUMS"):
            assert manifest["files"][name]["sha256"] == hashlib.sha256(data).hexdigest()
    for digest in manifest["evidence"]:
        assert hashlib.sha256(files[f"evidence/sha256/{digest}"]).hexdigest() == digest
    sums = dict(line.split("  ")[::-1] for line in files["SHA256SUMS"].decode().splitlines())
    assert sums == {n: f["sha256"] for n, f in manifest["files"].items()}
    # the auditor can verify the exported chain again
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "records.jsonl").write_bytes(files["records.jsonl"])
    code, outv, _ = run(["audit", "verify", "--audit", f"file:{tmp_path}/x/records.jsonl"])
    assert code == 0
    # deterministic: the same trail at the same time gives the same bytes
    out2 = tmp_path / "export2.tar"
    run(["audit", "export", "--audit", f"file:{trail}", "--release", "triage-acuity", "-o", out2])
    assert out2.read_bytes() == out.read_bytes()


def test_export_fails_on_missing_or_altered_evidence(trail, tmp_path):
    rec = _records(trail)[0]
    digest = sorted(rec["evidence_digests"].values())[0]
    blob = tmp_path / "evidence" / "sha256" / digest[:2] / digest
    blob.write_bytes(b"altered")
    out = tmp_path / "e.tar"
    code, _, err = run(["audit", "export", "--audit", f"file:{trail}", "-o", out])
    assert code == 2 and err.count("\n") == 1 and f"retained evidence sha256:{digest}" in err and "was altered" in err
    assert not out.exists() and not list(tmp_path.glob(".e.tar*"))
    blob.unlink()
    code, _, err = run(["audit", "export", "--audit", f"file:{trail}", "-o", out])
    assert code == 2 and "is missing from the evidence store" in err


def test_export_of_a_tampered_chain_says_so(trail, tmp_path):
    lines = trail.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"result":"deny"', b'"result":"allow"')
    trail.write_bytes(b"".join(lines))
    out = tmp_path / "t.tar"
    code, stdout, err = run(["audit", "export", "--audit", f"file:{trail}", "-o", out])
    assert code == 0 and "chain tampered" in stdout and "not intact" in err
    assert json.loads(_members(out)["MANIFEST.json"])["chain"]["verification"]["sequence"] == 2
