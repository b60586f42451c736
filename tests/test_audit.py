from __future__ import annotations

import json
import os
import threading

import pytest

from mlgate.audit import GENESIS_HASH, FileAuditSink
from mlgate.canonical import canonical_json, sha256_hex
from mlgate.errors import AuditError


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_chain_links_and_hashes(tmp_path):
    log = tmp_path / "a" / "audit.jsonl"
    sink = FileAuditSink(log)
    r1 = sink.append({"decision_id": "d1", "result": "deny"})
    r2 = sink.append({"decision_id": "d2", "result": "allow"})
    assert (r1.sequence, r2.sequence) == (1, 2)
    recs = _records(log)
    assert recs[0]["prev_hash"] == GENESIS_HASH
    assert recs[1]["prev_hash"] == recs[0]["hash"] == r1.hash
    for rec in recs:
        body = {k: v for k, v in rec.items() if k != "hash"}
        assert rec["hash"] == sha256_hex(canonical_json(body))
        assert rec["apiVersion"] == "mlgate.dev/audit/v1"


def test_torn_tail_refuses_append_and_keeps_records(tmp_path):
    log = tmp_path / "audit.jsonl"
    sink = FileAuditSink(log)
    sink.append({"decision_id": "d1"})
    before = log.read_bytes()
    with open(log, "ab") as fh:
        fh.write(b'{"decision_id": "d2", "seq')  # crash mid-write
    with pytest.raises(AuditError, match="torn record"):
        sink.append({"decision_id": "d3"})
    assert log.read_bytes().startswith(before)


def test_unwritable_log_raises_audit_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(AuditError, match="cannot open the audit log"):
        FileAuditSink(blocker / "audit.jsonl").append({"decision_id": "d"})


def test_concurrent_writers_keep_one_chain(tmp_path):
    log = tmp_path / "audit.jsonl"
    errors = []

    def worker(n):
        try:
            sink = FileAuditSink(log)  # a separate open file per writer, as separate processes would have
            for i in range(25):
                sink.append({"decision_id": f"{n}-{i}"})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    recs = _records(log)
    assert [r["sequence"] for r in recs] == list(range(1, 101))
    for prev, cur in zip(recs, recs[1:]):
        assert cur["prev_hash"] == prev["hash"]


def test_long_last_line_is_found(tmp_path):
    log = tmp_path / "audit.jsonl"
    sink = FileAuditSink(log)
    sink.append({"decision_id": "big", "blob": "x" * 200_000})
    receipt = sink.append({"decision_id": "after"})
    assert receipt.sequence == 2
    assert os.path.getsize(log) > 200_000
