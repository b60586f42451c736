"""Issue 16, part 1: every decision is recorded, whatever the values it read.

Values YAML reads as dates, lone surrogates, non-JSON types, non-finite numbers, invalid
--timeout values, and one record among concurrent ones that cannot be sealed: each is a
recorded decision (or a usage error before any decision), never a traceback or a lost record.
"""

from __future__ import annotations

import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cli_helpers import run
from conftest import EXAMPLES

from mlgate.audit import FileAuditSink
from mlgate.audit.trail import FileTrail
from mlgate.audit.verify import verify_trail

MLFLOW_ABSENT = """    mlflow:
      present: false
      reason: not requested"""


def release_copy(tmp_path: Path, name: str = "rel", *, mlflow_params: str | None = None, owner: str | None = None,
                 version: str | None = None) -> Path:
    """A copy of examples/readmission-risk with its manifest edited as a text file (YAML as a user writes it)."""
    target = tmp_path / name
    shutil.copytree(EXAMPLES / "readmission-risk", target)
    manifest = target / "mlgate.yaml"
    text = manifest.read_text()
    if mlflow_params is not None:
        assert MLFLOW_ABSENT in text
        text = text.replace(MLFLOW_ABSENT, "    mlflow:\n      present: true\n      tracking_uri: http://mlflow.hospital.example\n"
                                           "      run:\n        id: 0123abcd\n        params:\n"
                                           + "".join(f"          {line}\n" for line in mlflow_params.splitlines())
                                           + "      model_version: null")
    if owner is not None:
        text = text.replace("  owner: ml-platform@hospital.example", f"  owner: {owner}", 1)
    if version is not None:
        text = text.replace('  version: "1.4.0"', f'  version: "{version}"', 1)
    manifest.write_text(text)
    return target


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def assert_intact(path: Path, count: int) -> None:
    result = verify_trail(FileTrail(path))
    assert result.status == "intact", result.problem
    assert result.records == count


def stored_input(rec: dict, log: Path) -> dict:
    """The input document a record stored (its facts lie content-addressed beside the log)."""
    from mlgate.audit.file import FileEvidenceStore
    from mlgate.audit.record import load_input

    return load_input(rec, FileEvidenceStore(log.parent / "evidence"))


def check(release: Path, log: Path, *extra: str, env: str = "staging"):
    return run(["check", release, "--env", env, "--audit-log", log, *extra])


# ------------------------------------------------------------------ a date in the manifest
def test_a_param_yaml_reads_as_a_date_is_recorded_as_an_rfc3339_string(tmp_path):
    release = release_copy(tmp_path, mlflow_params="trained_on: 2026-11-01\ncut_off: 2026-11-01 09:30:00")
    log = tmp_path / "audit.jsonl"
    code, out, err = check(release, log, "-o", "json", "--audit-input", "store")
    assert code in (0, 1), err  # a decision, not an error and not a traceback
    decision = json.loads(out)
    [rec] = lines(log)
    assert rec["decision_id"] == decision["decision_id"] and rec["result"] == decision["result"]
    params = stored_input(rec, log)["evidence"]["provenance"]["mlflow"]["params"]
    assert params == {"trained_on": "2026-11-01", "cut_off": "2026-11-01T09:30:00Z"}
    assert_intact(log, 1)


def test_the_date_decision_is_the_same_as_with_the_date_quoted(tmp_path):
    """The date is a string to the policy: quoting it in the YAML gives the same facts and decision."""
    log_a, log_b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    code_a, out_a, _ = check(release_copy(tmp_path, "a", mlflow_params="trained_on: 2026-11-01"), log_a, "-o", "json", "--audit-input", "store")
    code_b, out_b, _ = check(release_copy(tmp_path, "b", mlflow_params="trained_on: '2026-11-01'"), log_b, "-o", "json", "--audit-input", "store")
    assert code_a == code_b
    [a], [b] = lines(log_a), lines(log_b)
    assert stored_input(a, log_a)["evidence"] == stored_input(b, log_b)["evidence"]
    assert [v["id"] for v in a["violations"]] == [v["id"] for v in b["violations"]]


@pytest.mark.parametrize("param, field_hint", [
    ("auc: .nan", "not a finite number"),
    ("auc: .inf", "not a finite number"),
    ("blob: !!binary aGVsbG8=", "type bytes"),
])
def test_a_value_json_cannot_carry_is_a_recorded_error_naming_the_field(tmp_path, param, field_hint):
    release = release_copy(tmp_path, mlflow_params=param)
    log = tmp_path / "audit.jsonl"
    code, out, err = check(release, log)
    assert code == 2
    assert "Traceback" not in err
    [rec] = lines(log)
    assert rec["result"] == "error"
    assert "params." in rec["error"] and field_hint in rec["error"]  # names the field (manifest or input document path)
    assert_intact(log, 1)


# ------------------------------------------------------------------ a lone surrogate
@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "junit"])
def test_a_lone_surrogate_is_a_recorded_error_with_the_text_escaped(tmp_path, fmt, monkeypatch):
    # PyYAML's own loader (the fallback without libyaml) reads the escape as a lone surrogate, which must
    # reach the record escaped; libyaml (below) refuses the escape itself.
    import mlgate.safeio as safeio

    monkeypatch.setattr(safeio, "_CLoader", None)
    release = release_copy(tmp_path, owner='"ml-platform@hospital.example\\uD800"')
    log = tmp_path / "audit.jsonl"
    code, out, err = check(release, log, "-o", fmt)
    assert code == 2, err
    # The owner must be one canonical email spelling (issue 14: separation of duties compares it),
    # so the manifest is refused; the refusal quotes the value, escaped.
    assert "metadata.owner" in err and "does not match" in err
    raw = log.read_bytes()
    raw.decode("utf-8")  # valid UTF-8
    [rec] = lines(log)
    assert rec["result"] == "error"
    assert "ml-platform@hospital.example\\ud800" in rec["error"]  # the six characters \ud800
    assert_intact(log, 1)
    if fmt == "json":
        json.loads(out)  # the report is valid JSON


def test_libyaml_refuses_a_lone_surrogate_escape_and_the_refusal_is_recorded(tmp_path):
    release = release_copy(tmp_path, owner='"ml-platform@hospital.example\\uD800"')
    log = tmp_path / "audit.jsonl"
    code, out, err = check(release, log, "-o", "json")
    assert code == 2 and "mlgate.yaml: invalid YAML at line 6" in err and "Unicode" in err, err
    [rec] = lines(log)
    assert rec["result"] == "error" and "invalid YAML" in rec["error"]
    assert_intact(log, 1)


def test_record_json_is_canonical_json_for_every_ordinary_value():
    from mlgate.canonical import canonical_json, record_json

    doc = {"b": [1, 2.5, None, True], "a": {"é": "naïve ✓", "x": "😀"}}
    assert record_json(doc) == canonical_json(doc)


# ------------------------------------------------------------------ --timeout
@pytest.mark.parametrize("flag", ["--timeout", "--opa-timeout"])
@pytest.mark.parametrize("value", ["nan", "inf", "NaN", "1e999"])
def test_a_non_finite_timeout_is_a_usage_error(tmp_path, flag, value):
    log = tmp_path / "audit.jsonl"
    code, out, err = check(EXAMPLES / "readmission-risk", log, flag, value)
    assert code == 2
    assert "Traceback" not in err
    assert f"Invalid value for '{flag}'" in err and "finite" in err
    assert [line for line in err.splitlines() if line.startswith("Error:")] == [err.strip().splitlines()[-1]]
    assert not log.exists()  # refused before any decision began


def test_serve_refuses_a_non_finite_opa_timeout(tmp_path):
    code, out, err = run(["serve", "--cert", tmp_path / "c", "--key", tmp_path / "k", "--audit", tmp_path / "a.jsonl",
                          "--opa-timeout", "nan"])
    assert code == 2 and "finite" in err and "Traceback" not in err


@pytest.mark.parametrize("key", ["defaultTimeoutSeconds", "engine.opa.timeoutSeconds"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_serve_settings_refuse_a_non_finite_timeout(key, value):
    from mlgate.errors import InputError
    from mlgate.gatekeeper.config import settings_from_dict

    doc = {key: value} if "." not in key else {"engine": {"name": "opa", "opa": {"url": "http://127.0.0.1:8181", "timeoutSeconds": value}}}
    with pytest.raises(InputError, match="timeoutSeconds|TimeoutSeconds"):
        settings_from_dict(doc, "settings.yaml", evidence_store="file:///tmp", audit="file:/tmp/a.jsonl")


# ------------------------------------------------------------------ exceptions on the way
def test_an_unexpected_exception_becomes_a_recorded_error_decision(tmp_path):
    from mlgate.gate import GateOptions, check_loaded

    log = tmp_path / "audit.jsonl"

    def load(prepared):
        raise ZeroDivisionError("division by zero in a loader")

    with FileAuditSink(log) as sink:
        decision = check_loaded(load, GateOptions(environment="staging"), sink)
    assert decision.result == "error" and not decision.allowed
    assert decision.audit is not None and decision.audit.sequence == 1
    [rec] = lines(log)
    assert rec["result"] == "error" and "internal error: ZeroDivisionError: division by zero in a loader" in rec["error"]
    assert rec["policy_revision"] == decision.policy_revision
    assert_intact(log, 1)


def test_a_timeout_of_nan_through_the_library_is_a_recorded_error(tmp_path):
    """The command line refuses it; a caller of the library gets a recorded error, not a lost decision."""
    from mlgate.gate import GateOptions, check

    log = tmp_path / "audit.jsonl"
    with FileAuditSink(log) as sink:
        decision = check(EXAMPLES / "readmission-risk", GateOptions(environment="staging", timeout_s=float("nan")), sink)
    assert decision.result == "error" and decision.audit is not None
    assert "timeout must be a finite number" in decision.error
    assert lines(log)[0]["result"] == "error"


# ------------------------------------------------------------------ group commit: one fails alone
def test_one_unsealable_record_fails_alone_in_its_group(tmp_path):
    from mlgate.audit import UnsealableRecord

    log = tmp_path / "audit.jsonl"
    sink = FileAuditSink(log)
    start = threading.Barrier(40)
    gate = threading.Lock()

    # Hold the first flush until every thread has queued its record, so they share groups.
    original = sink._flush

    def slow_flush(records):
        with gate:
            return original(records)

    sink._group._flush = slow_flush

    def append(i: int):
        start.wait()
        record = {"decision_id": f"d{i}", "result": "deny", "note": object() if i % 13 == 5 else f"ok {i}"}
        try:
            return sink.append(record)
        except UnsealableRecord as exc:
            return exc

    pool = ThreadPoolExecutor(40)
    with gate:
        futures = [pool.submit(append, i) for i in range(40)]
        for _ in range(1000):
            if len(sink._group._pending) >= 39:
                break
            threading.Event().wait(0.01)
        assert len(sink._group._pending) >= 30  # the poisoned records wait in the same group as the others
    # released: the queued records flush as one group, the poisoned ones among them
    results = [f.result(timeout=60) for f in futures]
    pool.shutdown()
    bad = [i for i, r in enumerate(results) if isinstance(r, UnsealableRecord)]
    assert bad == [i for i in range(40) if i % 13 == 5]
    for i in bad:
        assert "the decision record cannot be sealed" in str(results[i]) and "note" in str(results[i])
    written = lines(log)
    assert len(written) == 40 - len(bad)
    assert sorted(r["decision_id"] for r in written) == sorted(f"d{i}" for i in range(40) if i not in bad)
    assert sorted(r.sequence for r in results if not isinstance(r, UnsealableRecord)) == list(range(1, len(written) + 1))
    assert_intact(log, len(written))


# ------------------------------------------------------------------ the webhook over TLS
def test_webhook_records_every_decision_with_poisoned_and_dated_releases_among_them(tmp_path):
    from mlgate.gatekeeper.config import Settings
    from test_gatekeeper_support import RunningWebhook, admit, deployment

    store = tmp_path / "store"
    store.mkdir()
    shutil.copytree(EXAMPLES / "readmission-risk", store / "good")
    release_copy(store, "poisoned", owner='"ml-platform@hospital.example\\uD800"', version="1.4.1")
    release_copy(store, "dated", mlflow_params="trained_on: 2026-11-01", version="1.4.2")
    audit = tmp_path / "audit.jsonl"
    hook = RunningWebhook(tmp_path, Settings(evidence_store=f"file://{store}", audit=str(audit), gate_threads=4))
    try:
        refs = ["readmission-risk@1.4.0"] * 180 + ["readmission-risk@1.4.1"] * 10 + ["readmission-risk@1.4.2"] * 10
        refs = [refs[(i * 37) % 200] for i in range(200)]  # interleaved: poisoned ones land among the good ones
        with hook.client() as client:
            with ThreadPoolExecutor(24) as pool:
                answers = list(pool.map(lambda ref: (ref, admit(client, deployment(ref), "staging")), refs))
    finally:
        hook.stop()
    decisions = {}
    for ref, r in answers:
        assert r.status_code == 200, r.text
        resp = r.json()["response"]
        assert "internal error" not in resp.get("status", {}).get("message", ""), resp
        decisions[resp["auditAnnotations"]["decision-id"]] = (ref, resp["allowed"])
    recs = lines(audit)
    assert len(recs) == len(answers) == 200
    assert {r["decision_id"] for r in recs} == set(decisions)
    for rec in recs:
        ref, allowed = decisions[rec["decision_id"]]
        assert (rec["result"] == "allow") is allowed
        if ref.endswith("1.4.1"):
            # refused: its owner is not one canonical email spelling (the store does not index it)
            assert rec["result"] == "error" and rec["error"]
        elif ref.endswith("1.4.0"):
            assert rec["result"] == "allow"
        else:
            assert rec["result"] in ("allow", "deny") and rec["error"] is None
    assert_intact(audit, 200)


# ------------------------------------------------------------------ the same on PostgreSQL
from test_audit_pg import pg_url  # noqa: E402,F401 - the fixture: a fresh database on the real server


def test_postgres_one_unsealable_record_fails_alone_and_surrogates_are_stored_escaped(pg_url):  # noqa: F811
    import datetime as dt

    from mlgate.audit import UnsealableRecord, open_sink
    from mlgate.audit.verify import PostgresTrail

    sink = open_sink(pg_url)
    try:
        records = [{"decision_id": f"d{i}", "result": "deny", "owner": "x\ud800" if i == 3 else f"o{i}",
                    "trained_on": dt.date(2026, 11, 1), "bad": object() if i in (5, 11) else None} for i in range(16)]
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda r: _try(sink.append, r), records))
    finally:
        sink.close()
    assert [i for i, r in enumerate(results) if isinstance(r, UnsealableRecord)] == [5, 11]
    trail = PostgresTrail(pg_url)
    try:
        result = verify_trail(trail)
        assert result.status == "intact" and result.records == 14, result.problem
        rows = {rec["decision_id"]: rec for rec in (json.loads(raw) for _, raw in trail.sink.iter_rows())}
    finally:
        trail.close()
    assert rows["d3"]["owner"] == "x\\ud800" and rows["d0"]["trained_on"] == "2026-11-01"


def _try(fn, arg):
    try:
        return fn(arg)
    except Exception as exc:  # noqa: BLE001 - returned for the assertion
        return exc
