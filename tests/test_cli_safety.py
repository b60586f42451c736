"""Issue 19: no string from a manifest or evidence drives a terminal. Hostile strings (ESC
sequences, CR, BEL, a C1 CSI, a bidi override) go through every output format and `audit show`:
text shows them escaped, JSON stays valid JSON (the same values once parsed), JUnit is valid
XML, SARIF is valid JSON with escaped messages."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET

import pytest
from cli_helpers import run
from conftest import EXAMPLES, REPO

from mlgate.safeio import dumps_json, printable

TRUST = next(p for p in (EXAMPLES / "trust.yaml", REPO / "policies" / "trust.yaml") if p.exists())

# A version that, printed raw, erases the verdict line and writes a fake one, then hides the rest.
SPOOF = "1.4.0\r\x1b[2Kmlgate: ALLOWED  readmission-risk 1.4.0 -> production\x1b[8m"
# A dataset path that is not there (a deny quoting it), with a bell, a C1 CSI and a bidi override.
HOSTILE_URI = "data/\x07tr\x9b2Jain\u202egnp.csv"
UNSAFE = ["\x1b", "\r", "\x07", "\x9b", "\u202e"]


@pytest.fixture
def hostile(tmp_path):
    release = tmp_path / "hostile"
    shutil.copytree(EXAMPLES / "readmission-risk", release)
    manifest = release / "mlgate.yaml"
    text = manifest.read_text()
    text = text.replace('version: "1.4.0"', "version: " + json.dumps(SPOOF))
    text = text.replace("uri: data/train.csv", "uri: " + json.dumps(HOSTILE_URI))
    manifest.write_text(text)
    return release


def _check(release, tmp_path, fmt):
    return run(["check", release, "--env", "production", "--trust", TRUST, "-o", fmt, "--audit-log", tmp_path / "audit.jsonl"])


def _raw(text: str) -> list[str]:
    return [c for c in UNSAFE if c in text]


def test_printable_escapes_controls_and_bidi():
    assert printable("a\x1b[2Kb\rc\x07\x9b\u202e\x7f\n") == "a\\x1b[2Kb\\rc\\x07\\x9b\\u202e\\x7f\\n"
    assert printable("line\nnext\x1b", keep_newlines=True) == "line\nnext\\x1b"
    assert printable("plain ≥ text é") == "plain ≥ text é"
    doc = {"v": SPOOF + "\x9b\u202e\ud800"}
    text = dumps_json(doc)
    assert json.loads(text) == doc and not _raw(text)
    text.encode("utf-8")  # a lone surrogate is escaped, so the output can be written


def test_text_report_cannot_spoof_the_verdict(hostile, tmp_path):
    code, out, err = _check(hostile, tmp_path, "text")
    assert code == 1
    assert not _raw(out) and not _raw(err)
    first = out.splitlines()[0]
    assert first.startswith("mlgate: DENIED") and "\\r\\x1b[2Kmlgate: ALLOWED" in first
    assert "\\x07tr\\x9b2Jain\\u202egnp.csv is missing" in out


def test_text_report_with_explanation(hostile, tmp_path):
    code, out, _ = run(["explain", hostile, "--env", "production", "--trust", TRUST, "--audit-log", tmp_path / "a.jsonl"])
    assert code == 1 and not _raw(out)


def test_json_stays_valid_and_exact(hostile, tmp_path):
    code, out, _ = _check(hostile, tmp_path, "json")
    assert code == 1 and not _raw(out)
    doc = json.loads(out)
    assert doc["release"]["version"] == SPOOF  # the data is unchanged; only its bytes are safe
    assert any(HOSTILE_URI in v["message"] for v in doc["violations"])
    code, out, _ = run(["explain", hostile, "--env", "production", "--trust", TRUST, "-o", "json", "--audit-log", tmp_path / "a.jsonl"])
    assert not _raw(out) and json.loads(out)["release"]["version"] == SPOOF


def test_junit_is_valid_xml_with_escaped_text(hostile, tmp_path):
    code, out, _ = _check(hostile, tmp_path, "junit")
    assert code == 1 and not _raw(out)
    root = ET.fromstring(out.encode("utf-8"))  # raises on characters XML 1.0 cannot carry
    suite = root.find("testsuite")
    assert "\\r\\x1b[2K" in suite.get("name")
    messages = [f.get("message") for f in root.iter("failure")]
    assert any("\\x07tr\\x9b2Jain\\u202egnp.csv" in (m or "") for m in messages)
    assert all(not _raw(m or "") for m in messages)


def test_sarif_is_valid_json_with_escaped_messages(hostile, tmp_path):
    code, out, _ = _check(hostile, tmp_path, "sarif")
    assert code == 1 and not _raw(out)
    doc = json.loads(out)
    texts = [r["message"]["text"] for r in doc["runs"][0]["results"]]
    assert any("\\x07tr\\x9b2Jain\\u202egnp.csv" in t for t in texts)
    assert all(not _raw(t) for t in texts)


def test_audit_show_prints_no_control_characters(hostile, tmp_path):
    log = tmp_path / "audit.jsonl"
    _check(hostile, tmp_path, "text")
    code, out, _ = run(["audit", "show", "--audit", f"file:{log}"])
    assert code == 0
    assert not _raw(out)
    assert "\\r\\x1b[2K" in out
    code, out, _ = run(["audit", "show", "--audit", f"file:{log}", "-o", "json"])
    assert not _raw(out) and json.loads(out)["records"][0]["release"]["version"] == SPOOF


def test_error_messages_are_neutralised(tmp_path):
    # A value quoted in a one-line error (here a release path) cannot drive the terminal either.
    code, out, err = run(["check", tmp_path / "no\x1b[2Jwhere", "--env", "production", "--trust", TRUST, "--audit-log", tmp_path / "a.jsonl"])
    assert code == 2 and not _raw(out) and not _raw(err) and "\\x1b[2J" in err
