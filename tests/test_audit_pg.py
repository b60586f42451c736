"""The PostgreSQL backend against the real server (design.md section 9): one chain under
concurrent writers (threads and processes), append-only tables, verify, retention, export.

Each test module run uses its own database ``mlgate_test_<random>``, created and dropped here.
The server is ``MLGATE_TEST_PG`` (default postgresql://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading

import pytest

from mlgate.audit import open_sink
from mlgate.audit.verify import PostgresTrail, verify_trail
from mlgate.canonical import canonical_json
from mlgate.errors import AuditError

from cli_helpers import run
from conftest import EXAMPLES, require_service

BASE = os.environ.get("MLGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _admin():
    import psycopg

    try:
        return psycopg.connect(BASE, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        require_service("PostgreSQL", f"not reachable at {BASE} (start it: pg_ctlcluster <version> main start, or set MLGATE_TEST_PG): {exc}")


@pytest.fixture
def pg_url():
    name = f"mlgate_test_{secrets.token_hex(6)}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = BASE.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _sql(url, *statements):
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        out = None
        for st in statements:
            cur = conn.execute(st)
            out = cur.fetchall() if cur.description else None
        return out


def _verify(url):
    trail = PostgresTrail(url)
    try:
        return verify_trail(trail)
    finally:
        trail.close()


def test_append_and_verify(pg_url):
    with open_sink(pg_url) as sink:
        receipts = [sink.append({"decision_id": f"d{i}", "result": "deny"}) for i in range(5)]
    assert [r.sequence for r in receipts] == [1, 2, 3, 4, 5]
    rows = _sql(pg_url, "SELECT sequence, hash, prev_hash, record FROM mlgate_audit_records ORDER BY sequence")
    assert rows[0][2] == "0" * 64 and all(rows[i][2] == rows[i - 1][1] for i in range(1, 5))
    for seq, h, _prev, text in rows:
        rec = json.loads(text)
        assert canonical_json(rec).decode() == text and rec["hash"] == h and rec["sequence"] == seq
    assert _sql(pg_url, "SELECT sequence, hash FROM mlgate_audit_head") == [(5, receipts[-1].hash)]
    result = _verify(pg_url)
    assert result.ok and result.records == 5 and result.head_hash == receipts[-1].hash


def test_concurrent_threads_one_chain(pg_url):
    shared = open_sink(pg_url)
    own = [open_sink(pg_url) for _ in range(4)]  # separate pools, as separate replicas would have
    errors = []

    def worker(sink, tag):
        try:
            for i in range(25):
                sink.append({"decision_id": f"{tag}-{i}"})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(shared, f"s{n}")) for n in range(12)]
    threads += [threading.Thread(target=worker, args=(own[n % 4], f"o{n}")) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in [shared, *own]:
        s.close()
    assert not errors
    rows = _sql(pg_url, "SELECT sequence, record FROM mlgate_audit_records ORDER BY sequence")
    assert [r[0] for r in rows] == list(range(1, 501))
    assert len({json.loads(r[1])["decision_id"] for r in rows}) == 500
    assert _verify(pg_url).ok


def test_concurrent_processes_one_chain(pg_url):
    code = ("import sys, threading\n"
            "from mlgate.audit import open_sink\n"
            "sink = open_sink(sys.argv[1])\n"
            "def w(t):\n"
            "    for i in range(25): sink.append({'decision_id': f'{sys.argv[2]}-{t}-{i}'})\n"
            "ts = [threading.Thread(target=w, args=(t,)) for t in range(4)]\n"
            "[t.start() for t in ts]; [t.join() for t in ts]\n"
            "sink.close()\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, pg_url, f"p{p}"]) for p in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    rows = _sql(pg_url, "SELECT sequence, record FROM mlgate_audit_records ORDER BY sequence")
    assert [r[0] for r in rows] == list(range(1, 401))
    assert len({json.loads(r[1])["decision_id"] for r in rows}) == 400
    result = _verify(pg_url)
    assert result.ok and result.records == 400


def test_records_are_append_only(pg_url):
    import psycopg

    with open_sink(pg_url) as sink:
        sink.append({"decision_id": "a"})
    for statement in ("UPDATE mlgate_audit_records SET result = 'allow'", "DELETE FROM mlgate_audit_records",
                      "TRUNCATE mlgate_audit_records"):
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            _sql(pg_url, statement)
    assert _verify(pg_url).ok


def _tamper(url, statement):
    _sql(url, "ALTER TABLE mlgate_audit_records DISABLE TRIGGER USER", statement, "ALTER TABLE mlgate_audit_records ENABLE TRIGGER USER")


@pytest.fixture
def six(pg_url):
    with open_sink(pg_url) as sink:
        for i in range(1, 7):
            sink.append({"decision_id": f"d{i}", "result": "deny"})
    return pg_url


def test_verify_edited_row(six):
    _tamper(six, "UPDATE mlgate_audit_records SET record = replace(record, '\"result\":\"deny\"', '\"result\":\"allow\"') WHERE sequence = 3")
    result = _verify(six)
    assert (result.status, result.sequence, result.where, result.field) == ("tampered", 3, "row 3", "hash")
    code, out, _ = run(["audit", "verify", "--audit", six])
    assert code == 1 and "TAMPERED: sequence 3 (row 3): field hash: expected" in out


def test_verify_deleted_row(six):
    _tamper(six, "DELETE FROM mlgate_audit_records WHERE sequence = 4")
    result = _verify(six)
    assert (result.sequence, result.field, result.expected, result.found) == (4, "sequence", 4, 5)
    assert "record 4 was deleted" in result.problem


def test_verify_truncated_tail(six):
    _tamper(six, "DELETE FROM mlgate_audit_records WHERE sequence > 4")
    result = _verify(six)
    assert (result.status, result.records) == ("truncated", 4) and "records 5 to 6 were cut from the end" in result.problem


def test_verify_swapped_rows(six):
    _tamper(six, "UPDATE mlgate_audit_records r SET record = o.record FROM mlgate_audit_records o "
                 "WHERE (r.sequence, o.sequence) IN ((2, 3), (3, 2))")
    result = _verify(six)
    assert (result.sequence, result.field, result.expected, result.found) == (2, "sequence", 2, 3)
    assert "row 2 holds a record whose sequence is 3" in result.problem


def test_verify_missing_head(six):
    _sql(six, "ALTER TABLE mlgate_audit_head DISABLE TRIGGER USER", "DELETE FROM mlgate_audit_head",  # a superuser: the guard refuses
         "ALTER TABLE mlgate_audit_head ENABLE TRIGGER USER")
    assert _verify(six).status == "tampered"
    with open_sink(six) as sink, pytest.raises(AuditError, match="head row is missing|row is missing"):
        sink.append({"decision_id": "x"})


def test_check_show_and_export_with_postgresql(pg_url, tmp_path):
    import tarfile

    for example in ("readmission-risk", "triage-acuity"):
        code, out, err = run(["check", EXAMPLES / example, "--env", "production", "--audit", pg_url, "--retain-evidence"])
        assert code in (0, 1), err
    code, out, _ = run(["audit", "show", "--audit", pg_url, "--result", "deny", "-o", "json"])
    recs = json.loads(out)["records"]
    assert [r["sequence"] for r in recs] == [2] and recs[0]["evidence_retained"] is True
    n = _sql(pg_url, "SELECT count(*) FROM mlgate_audit_evidence")[0][0]
    assert n >= len(set(recs[0]["evidence_digests"].values()))
    out_tar = tmp_path / "pg.tar"
    code, out, err = run(["audit", "export", "--audit", pg_url, "--release", "triage-acuity", "-o", out_tar])
    assert code == 0, err
    with tarfile.open(out_tar) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("MANIFEST.json").read())
    assert manifest["chain"]["records"] == 2 and manifest["selected"] == [2] and manifest["chain"]["verification"]["status"] == "intact"
    assert {f"evidence/sha256/{d}" for d in recs[0]["evidence_digests"].values()} <= set(names)
