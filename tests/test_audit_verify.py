"""`mlgate audit verify`: the first broken link, precisely, for every way a trail can be damaged."""

from __future__ import annotations

import json

import pytest

from mlgate.audit import GENESIS_HASH, FileAuditSink, seal
from mlgate.audit.verify import FileTrail, verify_trail
from mlgate.canonical import canonical_json, sha256_hex

from cli_helpers import run


def _trail(tmp_path, n=6):
    log = tmp_path / "audit.jsonl"
    sink = FileAuditSink(log)
    for i in range(1, n + 1):
        sink.append({"decision_id": f"d{i}", "result": "deny", "violations": [{"id": "MLG-X", "message": f"m{i}"}]})
    return log


def _lines(log):
    return log.read_bytes().splitlines(keepends=True)


def _verify(log):
    return verify_trail(FileTrail(log))


def _cli(log, *extra):
    return run(["audit", "verify", "--audit", f"file:{log}", *extra])


def test_intact_trail_exit_0(tmp_path):
    log = _trail(tmp_path)
    result = _verify(log)
    assert (result.status, result.records, result.head_sequence) == ("intact", 6, 6)
    code, out, _ = _cli(log)
    assert code == 0 and "intact: 6 record(s), head sequence 6" in out


def test_edited_record(tmp_path):
    log = _trail(tmp_path)
    lines = _lines(log)
    stored = json.loads(lines[2])["hash"]
    lines[2] = lines[2].replace(b'"result":"deny"', b'"result":"allow"')
    log.write_bytes(b"".join(lines))
    result = _verify(log)
    rec = json.loads(lines[2])
    computed = sha256_hex(canonical_json({k: v for k, v in rec.items() if k != "hash"}))
    assert (result.status, result.sequence, result.where, result.field) == ("tampered", 3, "line 3", "hash")
    assert (result.expected, result.found) == (computed, stored)
    assert result.records == 2  # everything before the edit verifies
    code, out, _ = _cli(log)
    assert code == 1
    assert f"TAMPERED: sequence 3 (line 3): field hash: expected {computed} (recomputed from the record), found {stored}: the record was edited" in out


def test_edit_with_recomputed_hash_breaks_the_next_link(tmp_path):
    log = _trail(tmp_path)
    lines = _lines(log)
    rec = json.loads(lines[2])
    old_hash = rec["hash"]
    rec["result"] = "allow"
    forged = seal({k: v for k, v in rec.items() if k not in ("apiVersion", "sequence", "prev_hash", "hash")},
                  sequence=3, prev_hash=rec["prev_hash"])
    lines[2] = canonical_json(forged) + b"\n"
    log.write_bytes(b"".join(lines))
    result = _verify(log)
    assert (result.sequence, result.field, result.expected, result.found) == (4, "prev_hash", forged["hash"], old_hash)
    assert "the record before it was replaced" in result.problem


def test_deleted_record(tmp_path):
    log = _trail(tmp_path)
    lines = _lines(log)
    del lines[3]
    log.write_bytes(b"".join(lines))
    result = _verify(log)
    assert (result.status, result.sequence, result.where, result.field, result.expected, result.found) == ("tampered", 4, "line 4", "sequence", 4, 5)
    assert "record 4 was deleted" in result.problem


def test_several_deleted_records(tmp_path):
    log = _trail(tmp_path)
    lines = _lines(log)
    del lines[1:4]
    log.write_bytes(b"".join(lines))
    assert "records 2 to 4 were deleted" in _verify(log).problem


def test_reordered_records(tmp_path):
    log = _trail(tmp_path)
    lines = _lines(log)
    lines[2], lines[4] = lines[4], lines[2]
    log.write_bytes(b"".join(lines))
    result = _verify(log)
    assert (result.sequence, result.field, result.expected, result.found) == (3, "sequence", 3, 5)
    assert "records out of order: sequence 3 comes later, at line 5" in result.problem


def test_duplicated_record(tmp_path):
    log = _trail(tmp_path)
    lines = _lines(log)
    lines.insert(3, lines[1])
    log.write_bytes(b"".join(lines))
    result = _verify(log)
    assert (result.sequence, result.found) == (4, 2) and "duplicated" in result.problem


def test_truncated_tail(tmp_path):
    log = _trail(tmp_path)
    lines = _lines(log)
    log.write_bytes(b"".join(lines[:4]))
    result = _verify(log)
    assert (result.status, result.records, result.expected, result.found) == ("truncated", 4, 6, 4)
    assert "records 5 to 6 were cut from the end" in result.problem
    code, out, _ = _cli(log)
    assert code == 1 and "TRUNCATED" in out


def test_torn_last_line_earlier_records_verify(tmp_path):
    log = _trail(tmp_path)
    with open(log, "ab") as fh:
        fh.write(b'{"action":"promote","decision_id":"d7","se')
    result = _verify(log)
    assert (result.status, result.records, result.where) == ("torn", 6, "line 7")
    assert "torn record" in result.problem and "the 6 record(s) before it verify" in result.problem
    code, out, _ = _cli(log)
    assert code == 1 and "TORN" in out


def test_garbage_line_in_the_middle(tmp_path):
    log = _trail(tmp_path)
    lines = _lines(log)
    lines[1] = b"not json\n"
    log.write_bytes(b"".join(lines))
    result = _verify(log)
    assert (result.status, result.sequence, result.field) == ("tampered", 2, "record")


def test_missing_field(tmp_path):
    log = _trail(tmp_path)
    lines = _lines(log)
    rec = json.loads(lines[0])
    del rec["prev_hash"]
    lines[0] = canonical_json(rec) + b"\n"
    log.write_bytes(b"".join(lines))
    result = _verify(log)
    assert (result.sequence, result.field) == (1, "prev_hash")


def test_first_record_must_link_to_genesis(tmp_path):
    log = _trail(tmp_path)
    lines = _lines(log)
    log.write_bytes(b"".join(lines[1:]))
    (tmp_path / "audit.jsonl.head").unlink()
    result = _verify(log)
    assert (result.sequence, result.field, result.expected, result.found) == (1, "sequence", 1, 2)


def test_every_single_byte_flip_is_detected(tmp_path):
    """Mutate one byte anywhere (model-transparency's fuzzing habit): never intact."""
    log = _trail(tmp_path, n=3)
    data = log.read_bytes()
    for pos in range(0, len(data), 7):
        if data[pos:pos + 1] == b"\n":
            continue
        mutated = bytearray(data)
        mutated[pos] ^= 0x01
        log.write_bytes(bytes(mutated))
        assert not _verify(log).ok, f"byte {pos} flipped and the trail still verified"


def test_lagging_head_is_a_note_not_a_failure(tmp_path):
    log = _trail(tmp_path)
    (tmp_path / "audit.jsonl.head").write_text(json.dumps({"sequence": 4, "hash": json.loads(_lines(log)[3])["hash"]}))
    result = _verify(log)
    assert result.ok and "behind the last record 6" in result.notes[0]


def test_head_disagreeing_with_the_record_is_tampering(tmp_path):
    log = _trail(tmp_path)
    (tmp_path / "audit.jsonl.head").write_text(json.dumps({"sequence": 6, "hash": "f" * 64}))
    result = _verify(log)
    assert (result.status, result.sequence, result.field, result.expected) == ("tampered", 6, "hash", "f" * 64)


def test_non_canonical_but_correct_line_still_verifies(tmp_path):
    """The fast path falls back to re-serialising: a record rewritten with spaces but the same content verifies."""
    log = _trail(tmp_path, n=2)
    lines = _lines(log)
    lines[0] = json.dumps(json.loads(lines[0]), indent=None).encode() + b"\n"
    log.write_bytes(b"".join(lines))
    assert _verify(log).ok


@pytest.mark.parametrize("setup", ["missing", "directory"])
def test_unreadable_exit_2(tmp_path, setup):
    target = tmp_path / "audit.jsonl"
    if setup == "directory":
        target.mkdir()
    code, out, err = _cli(target)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and f"{target}: cannot read the audit log" in err


def test_bad_url_exit_2(tmp_path):
    code, _, err = run(["audit", "verify", "--audit", "mysql://x/y"])
    assert code == 2 and "unknown audit URL scheme 'mysql'" in err


def test_json_output(tmp_path):
    log = _trail(tmp_path)
    lines = _lines(log)
    del lines[2]
    log.write_bytes(b"".join(lines))
    code, out, _ = _cli(log, "-o", "json")
    doc = json.loads(out)
    assert code == 1 and doc["status"] == "tampered" and doc["sequence"] == 3 and doc["field"] == "sequence"


def test_empty_log_is_intact(tmp_path):
    log = tmp_path / "audit.jsonl"
    log.write_bytes(b"")
    result = _verify(log)
    assert result.ok and result.records == 0 and result.head_hash == GENESIS_HASH


def test_parallel_path_agrees_with_the_sequential_walk(tmp_path, monkeypatch):
    """Large files are checked in parallel chunks; the answer (and, on damage, the report) is the same."""
    import mlgate.audit.verify as av

    monkeypatch.setattr(av, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(av.os if hasattr(av, "os") else __import__("os"), "sched_getaffinity", lambda _pid: {0, 1, 2}, raising=False)
    log = _trail(tmp_path, n=40)
    calls = []
    real = av._parallel_file_check
    monkeypatch.setattr(av, "_parallel_file_check", lambda *a: calls.append(real(*a)) or calls[-1])
    result = _verify(log)
    assert result.ok and result.records == 40 and calls == [(40, result.head_hash)]
    for mutate, field in [(lambda ls: ls.__delitem__(20), "sequence"),
                          (lambda ls: ls.__setitem__(30, ls[30].replace(b'"result":"deny"', b'"result":"allow"')), "hash")]:
        lines = _lines(_trail(tmp_path / field, n=40))
        mutate(lines)
        (tmp_path / field / "audit.jsonl").write_bytes(b"".join(lines))
        result = _verify(tmp_path / field / "audit.jsonl")
        assert calls[-1] is None and result.status == "tampered" and result.field == field
    log.write_bytes(log.read_bytes()[:-1] + b"")  # truncate the final newline: a torn last line
    result = _verify(log)
    assert calls[-1] is None and result.status == "torn"
