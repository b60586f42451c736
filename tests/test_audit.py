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


# -- group commit ----------------------------------------------------------------------------


def _verify(log):
    from mlgate.audit.verify import FileTrail, verify_trail

    return verify_trail(FileTrail(log))


def test_group_commit_shares_fsyncs_and_keeps_one_chain(tmp_path, monkeypatch):
    """64 concurrent appenders on one sink: one chain 1..N, and far fewer fsyncs than records."""
    import mlgate.audit.file as audit_file

    fsyncs = []
    real_fsync = os.fsync

    def counting_fsync(fd):
        fsyncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(audit_file.os, "fsync", counting_fsync)
    log = tmp_path / "audit.jsonl"
    sink = FileAuditSink(log)
    barrier = threading.Barrier(64)
    receipts, errors = [], []

    def worker(n):
        try:
            barrier.wait()
            for i in range(20):
                receipts.append(sink.append({"decision_id": f"{n}-{i}"}))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    recs = _records(log)
    assert [r["sequence"] for r in recs] == list(range(1, 1281))
    assert sorted(r.sequence for r in receipts) == list(range(1, 1281))  # every caller got its own receipt
    assert {r["decision_id"] for r in recs} == {f"{n}-{i}" for n in range(64) for i in range(20)}
    assert len(fsyncs) < 1280 / 2, f"{len(fsyncs)} fsyncs for 1280 records: appends were not grouped"
    assert _verify(log).ok


def test_group_commit_failure_reaches_every_caller_of_the_batch(tmp_path, monkeypatch):
    import mlgate.audit.file as audit_file

    log = tmp_path / "audit.jsonl"
    sink = FileAuditSink(log)
    sink.append({"decision_id": "before"})
    before = log.read_bytes()

    def broken_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(audit_file.os, "fsync", broken_fsync)
    results = []

    def worker(n):
        try:
            sink.append({"decision_id": f"w{n}"})
            results.append("ok")
        except AuditError as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and all("Input/output error" in r and "nothing was appended" in r for r in results)
    assert log.read_bytes() == before  # the partly written batch was cut off again


def test_concurrent_processes_keep_one_chain(tmp_path):
    import subprocess
    import sys

    log = tmp_path / "audit.jsonl"
    code = ("import sys, threading\n"
            "from mlgate.audit import FileAuditSink\n"
            "sink = FileAuditSink(sys.argv[1])\n"
            "def w(t):\n"
            "    for i in range(25): sink.append({'decision_id': f'{sys.argv[2]}-{t}-{i}'})\n"
            "ts = [threading.Thread(target=w, args=(t,)) for t in range(4)]\n"
            "[t.start() for t in ts]; [t.join() for t in ts]\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(log), f"p{p}"]) for p in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    recs = _records(log)
    assert [r["sequence"] for r in recs] == list(range(1, 401))
    assert len({r["decision_id"] for r in recs}) == 400
    result = _verify(log)
    assert result.ok and result.records == 400 and result.notes == []


def test_head_file_follows_the_log(tmp_path):
    from mlgate.audit.file import read_head

    log = tmp_path / "audit.jsonl"
    sink = FileAuditSink(log)
    for i in range(3):
        last = sink.append({"decision_id": str(i)})
    assert read_head(log) == (3, last.hash)


def test_head_file_is_rewritten_in_place_at_a_fixed_size(tmp_path):
    """One padded write at offset 0, no temporary file and rename per batch: the same inode,
    always HEAD_BYTES long (so a shorter record never leaves a longer one's tail behind), and an
    older, longer head is cut to size. verify reads it like the unpadded heads of before."""
    from mlgate.audit.file import HEAD_BYTES, head_path, read_head
    from mlgate.audit.record import GENESIS_HASH

    log = tmp_path / "audit.jsonl"
    head_path(log).write_bytes(b'{"hash":"' + GENESIS_HASH.encode() + b'","sequence":0}' + b" " * 400 + b"\n")  # longer than HEAD_BYTES
    log.touch()
    sink = FileAuditSink(log)
    first = sink.append({"decision_id": "a"})
    inode = head_path(log).stat().st_ino
    assert head_path(log).stat().st_size == HEAD_BYTES and read_head(log) == (1, first.hash)
    for i in range(12):
        last = sink.append({"decision_id": str(i)})
    raw = head_path(log).read_bytes()
    assert len(raw) == HEAD_BYTES and raw.endswith(b"\n") and head_path(log).stat().st_ino == inode
    assert read_head(log) == (13, last.hash)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.jsonl", "audit.jsonl.head"]  # no temporary files left
    assert _verify(log).ok


def test_a_sink_rereads_the_tail_when_another_writer_appended(tmp_path):
    """A sink skips reading the log's tail only while the log is exactly as its last batch left
    it; another writer's append (another process, another sink) is read, and the chain holds."""
    log = tmp_path / "audit.jsonl"
    a, b = FileAuditSink(log), FileAuditSink(log)
    got = [a.append({"decision_id": "a1"}).sequence, a.append({"decision_id": "a2"}).sequence,
           b.append({"decision_id": "b1"}).sequence, a.append({"decision_id": "a3"}).sequence, b.append({"decision_id": "b2"}).sequence]
    assert got == [1, 2, 3, 4, 5]
    assert _verify(log).ok


def test_writer_refuses_to_extend_a_truncated_log(tmp_path):
    log = tmp_path / "audit.jsonl"
    sink = FileAuditSink(log)
    for i in range(5):
        sink.append({"decision_id": str(i)})
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:3]))  # records 4 and 5 cut from the end
    with pytest.raises(AuditError, match="ends at sequence 3 but its head file records sequence 5"):
        sink.append({"decision_id": "x"})
    assert log.read_bytes() == b"".join(lines[:3])
