"""Issue 16, part 4: recovery that leaves a trace (file trails).

`mlgate audit repair` moves a torn last line aside and records it; `mlgate audit recover-head`
rebuilds a lost head file after a full verify and records it. Neither mends a trail that does
not verify before the torn or missing part: both refuse (exit 1, one line) and change nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import pytest

from cli_helpers import run
from conftest import REPO
from mlgate.audit import FileAuditSink
from mlgate.audit.file import head_path
from mlgate.audit.trail import FileTrail
from mlgate.audit.verify import verify_trail
from mlgate.signing.keys import generate_keypair

T1 = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.timezone.utc)


def _trail(tmp_path: Path, n: int = 5) -> Path:
    log = tmp_path / "audit.jsonl"
    sink = FileAuditSink(log)
    for i in range(1, n + 1):
        sink.append({"decision_id": f"d{i}", "result": "deny", "violations": [{"id": "MLG-X", "message": f"m{i}"}]})
    return log


def _records(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_bytes().splitlines()]


def _tear(log: Path, fragment: bytes = b'{"action":"promote","actor":"ci","decision_id":"d-torn","resu') -> bytes:
    with open(log, "ab") as fh:
        fh.write(fragment)
    return fragment


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def _cli(*args, now=T1):
    return run(["audit", *[str(a) for a in args]], now=now)


def _status(log: Path) -> str:
    return verify_trail(FileTrail(log)).status


def _one_error_line(err: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err


# ------------------------------------------------------------------ repair
def test_a_torn_last_line_stops_every_decision_until_repaired(tmp_path):
    """The reproduction: today a crash mid-write leaves a log no decision can be added to."""
    log = _trail(tmp_path)
    _tear(log)
    with pytest.raises(Exception, match="torn record"):
        FileAuditSink(log).append({"decision_id": "after", "result": "deny"})
    code, out, err = _cli("repair", "--audit", f"file:{log}", "--actor", "oncall@hospital.example")
    assert code == 0, err
    assert FileAuditSink(log).append({"decision_id": "after", "result": "deny"}).sequence == 7
    assert _status(log) == "intact"


def test_repair_quarantines_the_fragment_and_records_it(tmp_path):
    log = _trail(tmp_path)
    original = log.read_bytes()
    size_before = len(original)
    fragment = _tear(log)
    code, out, err = _cli("repair", "--audit", f"file:{log}", "--actor", "oncall@hospital.example", "-o", "json")
    assert code == 0, err
    result = json.loads(out)
    assert result["action"] == "repaired" and result["sequence"] == 6
    quarantine = Path(result["quarantine"])
    assert quarantine.parent == log.parent and quarantine.read_bytes() == fragment
    recs = _records(log)
    assert len(recs) == 6 and log.read_bytes()[:size_before] == original  # the whole records are untouched
    rec = recs[-1]
    assert rec["kind"] == "repair" and rec["actor"] == "oncall@hospital.example" and rec["timestamp"] == "2026-12-01T08:00:00Z"
    assert rec["quarantine"] == {"file": quarantine.name, "sha256": hashlib.sha256(fragment).hexdigest(), "bytes": len(fragment),
                                 "offset": size_before, "line": 6}
    assert rec["verified"] == {"records": 5, "hash": recs[4]["hash"]} and rec["prev_hash"] == recs[4]["hash"]
    assert json.loads(head_path(log).read_bytes()) == {"sequence": 6, "hash": rec["hash"]}
    assert _status(log) == "intact"


def test_repair_of_a_torn_first_line(tmp_path):
    log = tmp_path / "audit.jsonl"
    _tear(log, b'{"decision_id":"first"')
    code, out, err = _cli("repair", "--audit", f"file:{log}")
    assert code == 0, err
    [rec] = _records(log)
    assert rec["kind"] == "repair" and rec["sequence"] == 1 and rec["verified"]["records"] == 0
    assert _status(log) == "intact"


def test_repair_with_nothing_torn_changes_nothing(tmp_path):
    log = _trail(tmp_path)
    before = _snapshot(tmp_path)
    code, out, err = _cli("repair", "--audit", f"file:{log}")
    assert code == 0 and "nothing to repair" in out
    assert _snapshot(tmp_path) == before


def _edit_record(log: Path, index: int) -> None:
    lines = log.read_bytes().splitlines(keepends=True)
    lines[index] = lines[index].replace(b'"result":"deny"', b'"result":"allow"')
    log.write_bytes(b"".join(lines))


def test_repair_refuses_when_an_earlier_record_was_edited(tmp_path):
    log = _trail(tmp_path)
    _edit_record(log, 2)
    _tear(log)
    before = _snapshot(tmp_path)
    code, out, err = _cli("repair", "--audit", f"file:{log}")
    assert code == 1
    _one_error_line(err)
    assert "refused" in err and "tampered" in err and "sequence 3" in err
    assert _snapshot(tmp_path) == before  # no quarantine file, nothing cut, nothing appended


def test_repair_refuses_records_cut_from_the_end_disguised_as_a_torn_line(tmp_path):
    """Cut records 4 and 5 and leave half of record 4: the head says 5, so this is no crash."""
    log = _trail(tmp_path)
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:3]) + lines[3][:40])
    before = _snapshot(tmp_path)
    code, out, err = _cli("repair", "--audit", f"file:{log}")
    assert code == 1
    _one_error_line(err)
    assert "head records sequence 5" in err and "cut" in err
    assert _snapshot(tmp_path) == before


@pytest.fixture
def checkpoint_trust(tmp_path):
    priv, pub = generate_keypair("ed25519")
    (tmp_path / "signer.key").write_bytes(priv)
    (tmp_path / "signer.pub").write_bytes(pub)
    path = tmp_path / "trust.yaml"
    path.write_text((REPO / "examples" / "trust.yaml").read_text().split("\ncheckpointSigners:")[0].rstrip("\n") + "\ncheckpointSigners:\n"
                    "  - id: audit-checkpointer@hospital.example\n    name: Audit checkpoint service\n    keys: [{path: signer.pub}]\n")
    return path, tmp_path / "signer.key"


def _rewrite_from(log: Path, first: int) -> None:
    """An attacker with write access: edit record ``first`` and reseal it and every later one (and the head)."""
    from mlgate.audit import seal
    from mlgate.canonical import canonical_json

    recs = _records(log)
    recs[first - 1]["result"] = "allow"
    prev = recs[first - 2]["hash"] if first > 1 else "0" * 64
    out = [canonical_json(r) + b"\n" for r in recs[: first - 1]]
    for rec in recs[first - 1:]:
        body = {k: v for k, v in rec.items() if k not in ("apiVersion", "sequence", "prev_hash", "hash")}
        sealed = seal(body, sequence=rec["sequence"], prev_hash=prev)
        prev = sealed["hash"]
        out.append(canonical_json(sealed) + b"\n")
    log.write_bytes(b"".join(out))
    head_path(log).write_bytes(canonical_json({"sequence": len(recs), "hash": prev}) + b"\n")


def test_repair_refuses_a_resealed_chain_that_a_signed_checkpoint_contradicts(tmp_path, checkpoint_trust):
    trust, key = checkpoint_trust
    log = _trail(tmp_path)
    code, out, err = _cli("checkpoint", "--audit", f"file:{log}", "--key", key, "--trust", trust)
    assert code == 0, err
    _rewrite_from(log, 2)
    _tear(log)
    before = _snapshot(tmp_path)
    code, out, err = _cli("repair", "--audit", f"file:{log}", "--trust", trust)
    assert code == 1
    _one_error_line(err)
    assert "checkpoint sequence 5" in err
    assert _snapshot(tmp_path) == before
    # the untouched chain with the same checkpoint and a torn line is repaired
    (tmp_path / "ok").mkdir()
    log2 = _trail(tmp_path / "ok")
    assert _cli("checkpoint", "--audit", f"file:{log2}", "--key", key, "--trust", trust)[0] == 0
    _tear(log2)
    code, out, err = _cli("repair", "--audit", f"file:{log2}", "--trust", trust)
    assert code == 0, err


def test_repair_is_for_file_trails(tmp_path):
    code, out, err = _cli("repair", "--audit", "postgresql://mlgate@127.0.0.1:1/none")
    assert code == 2 and "file trails" in err


# ------------------------------------------------------------------ recover-head
def test_a_deleted_head_hides_a_cut_tail_until_recovered(tmp_path):
    """The reproduction: with the head file gone, cutting the last records goes unnoticed."""
    log = _trail(tmp_path)
    head_path(log).unlink()
    code, out, err = _cli("recover-head", "--audit", f"file:{log}", "--actor", "oncall@hospital.example", "-o", "json")
    assert code == 0, err
    result = json.loads(out)
    assert result["action"] == "recovered" and result["sequence"] == 6
    recs = _records(log)
    rec = recs[-1]
    assert rec["kind"] == "recover-head" and rec["head_before"] == "missing" and rec["actor"] == "oncall@hospital.example"
    assert rec["verified"] == {"records": 5, "hash": recs[4]["hash"]}
    assert json.loads(head_path(log).read_bytes()) == {"sequence": 6, "hash": rec["hash"]}
    assert _status(log) == "intact"
    # truncation is detectable again
    log.write_bytes(b"".join(log.read_bytes().splitlines(keepends=True)[:4]))
    assert _status(log) == "truncated"


def test_recover_head_of_an_unreadable_head_keeps_it_aside(tmp_path):
    log = _trail(tmp_path, 3)
    head_path(log).write_bytes(b"\x00garbage")
    code, out, err = _cli("recover-head", "--audit", f"file:{log}")
    assert code == 0, err
    rec = _records(log)[-1]
    assert rec["kind"] == "recover-head" and rec["head_before"].startswith("unreadable")
    assert [p.read_bytes() for p in tmp_path.glob("audit.jsonl.head.unreadable-*")] == [b"\x00garbage"]
    assert _status(log) == "intact"


def test_recover_head_with_the_head_present_changes_nothing(tmp_path):
    log = _trail(tmp_path)
    before = _snapshot(tmp_path)
    code, out, err = _cli("recover-head", "--audit", f"file:{log}")
    assert code == 0 and "nothing to recover" in out
    assert _snapshot(tmp_path) == before


def test_recover_head_refuses_an_edited_record(tmp_path):
    log = _trail(tmp_path)
    head_path(log).unlink()
    _edit_record(log, 1)
    before = _snapshot(tmp_path)
    code, out, err = _cli("recover-head", "--audit", f"file:{log}")
    assert code == 1
    _one_error_line(err)
    assert "refused" in err and "tampered" in err
    assert _snapshot(tmp_path) == before and not head_path(log).exists()


def test_recover_head_refuses_a_cut_tail_a_signed_checkpoint_attests(tmp_path, checkpoint_trust):
    trust, key = checkpoint_trust
    log = _trail(tmp_path)
    assert _cli("checkpoint", "--audit", f"file:{log}", "--key", key, "--trust", trust)[0] == 0
    log.write_bytes(b"".join(log.read_bytes().splitlines(keepends=True)[:3]))
    head_path(log).unlink()
    before = _snapshot(tmp_path)
    code, out, err = _cli("recover-head", "--audit", f"file:{log}", "--trust", trust)
    assert code == 1
    _one_error_line(err)
    assert "truncated" in err
    assert _snapshot(tmp_path) == before


def test_repair_waits_for_the_writers_lock(tmp_path):
    """Repair holds the log's flock as writers do: it cannot interleave with an append."""
    import fcntl
    import subprocess
    import sys
    import time

    log = _trail(tmp_path, 2)
    _tear(log)
    fd = os.open(log, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "mlgate", "audit", "repair", "--audit", f"file:{log}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(1.5)
        assert proc.poll() is None  # still waiting for the lock
        assert not list(tmp_path.glob("audit.jsonl.torn-*"))
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert _status(log) == "intact"
