"""Anchored checkpoints (issue 16 part 2): the writer signs checkpoints itself, anchors them (an
RFC 3161 timestamp of a TSA the trust policy lists, a copy in an anchor directory), and
``mlgate audit verify --require-anchor AGE`` fails when records older than AGE are not covered.

The three tamperings of the issue, each reported intact (exit 0) before:
(a) cut the last record and delete or rewrite the head file;
(b) rewrite the whole chain (every deny an allow, re-hashed) and delete PATH.checkpoints/;
(c) rewrite a record after the last checkpoint.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pytest

from mlgate.audit import GENESIS_HASH, FileAuditSink, seal
from mlgate.audit.autocheckpoint import CheckpointingSink, Checkpointer, CheckpointSettings, checkpoint_settings, parse_every
from mlgate.audit.checkpoint import checkpoint_dir, parse_age
from mlgate.audit.file import head_path
from mlgate.canonical import canonical_json
from mlgate.clock import rfc3339
from mlgate.errors import InputError
from mlgate.signing.keys import generate_keypair

from cli_helpers import run
from conftest import EXAMPLES, EXAMPLES_NOW, REPO

T0 = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.timezone.utc)
LATER = T0 + dt.timedelta(days=3)  # the auditor's clock: every record is older than 24h


class StepClock:
    def __init__(self, at: dt.datetime):
        self.at = at

    def now(self) -> dt.datetime:
        return self.at


@pytest.fixture
def signer(tmp_path):
    priv, pub = generate_keypair("ed25519")
    (tmp_path / "cp.key").write_bytes(priv)
    (tmp_path / "cp.pub").write_bytes(pub)
    return tmp_path / "cp.key"


def _trust(tmp_path, tsa=None):
    path = tmp_path / "trust.yaml"
    base = (REPO / "examples" / "trust.yaml").read_text().split("\ncheckpointSigners:")[0].rstrip("\n") + "\n"  # ours only
    text = base + ("checkpointSigners:\n  - id: audit-checkpointer@hospital.example\n"
                                                              "    name: Audit checkpoint service\n    keys: [{path: cp.pub}]\n")
    if tsa is not None:
        text += "timestampAuthorities:\n" + tsa.trust_entry()
    path.write_text(text)
    return path


@pytest.fixture
def trust(tmp_path, signer):
    return _trust(tmp_path)


def _write(log, n, *, key, trust, every="1", anchors=(), tsa=None, start=T0, step=dt.timedelta(minutes=10)):
    """What mlgate check/serve do with --checkpoint-key: n decisions, each recorded, checkpoints as due."""
    clock = StepClock(start)
    settings = checkpoint_settings(key, every, anchors, tsa.url if tsa is not None else None)
    checkpointer = Checkpointer.from_settings(f"file:{log}", settings, clock=clock, trust_path=trust)
    sink = CheckpointingSink(FileAuditSink(log), checkpointer)
    for i in range(1, n + 1):
        sink.append({"decision_id": f"d{i}", "timestamp": rfc3339(clock.now()), "result": "deny",
                     "violations": [{"id": "MLG-X", "message": f"m{i}"}]})
        checkpointer.run_if_due()
        clock.at += step
    sink.close()
    assert checkpointer.errors == []
    return checkpointer


def _records(log):
    return [json.loads(line) for line in log.read_bytes().splitlines()]


def _rewrite(log, edit, *, head=True):
    """An attacker with write access: edit records, reseal the whole chain (and the head file)."""
    prev, lines, recs = GENESIS_HASH, [], _records(log)
    edit(recs)
    for i, rec in enumerate(recs, start=1):
        body = {k: v for k, v in rec.items() if k not in ("apiVersion", "sequence", "prev_hash", "hash")}
        sealed = seal(body, sequence=i, prev_hash=prev)
        prev = sealed["hash"]
        lines.append(canonical_json(sealed) + b"\n")
    log.write_bytes(b"".join(lines))
    if head:
        head_path(log).write_bytes(canonical_json({"sequence": len(recs), "hash": prev}) + b"\n")


def _verify(log, trust, *extra, now=LATER):
    code, out, err = run(["audit", "verify", "--audit", f"file:{log}", "--trust", trust, "-o", "json", *extra], now=now)
    return code, (json.loads(out) if out.strip() else None), err


def _verify_text(log, trust, *extra, now=LATER):
    return run(["audit", "verify", "--audit", f"file:{log}", "--trust", trust, *extra], now=now)


# --------------------------------------------------------------------------- (a) cut tail, head gone
def test_a_cut_tail_with_deleted_head_was_intact_and_is_caught_by_the_anchor_copy(tmp_path, signer, trust):
    log, anchors = tmp_path / "audit.jsonl", tmp_path / "anchors"
    _write(log, 6, key=signer, trust=trust, anchors=[f"file:{anchors}"])
    assert len(list(anchors.iterdir())) == 6  # every=1: one anchored copy per record
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:-1]))  # cut sequence 6
    head_path(log).unlink()
    shutil.rmtree(checkpoint_dir(log))  # and the checkpoints beside the trail
    code, result, _ = _verify(log, trust)
    assert code == 0 and result["status"] == "intact", "the gap: without anchors the cut is invisible"
    code, result, _ = _verify(log, trust, "--anchor", f"file:{anchors}", "--require-anchor", "24h")
    assert code == 1 and result["status"] == "truncated"
    assert "attests sequence 6, but the trail ends at sequence 5" in result["problem"]


def test_a_cut_tail_with_rewritten_head_and_only_tsa_anchors_fails_require_anchor(tmp_path, signer):
    from tsa_local import running_tsa

    tsa = running_tsa()
    try:
        trust = _trust(tmp_path, tsa)
        now = dt.datetime.now(dt.timezone.utc)
        log = tmp_path / "audit.jsonl"
        _write(log, 4, key=signer, trust=trust, every="2", tsa=tsa, start=now - dt.timedelta(hours=1), step=dt.timedelta(minutes=1))
        code, result, _ = _verify(log, trust, "--require-anchor", "24h", now=now + dt.timedelta(days=2))
        assert code == 0, result
        assert [c["anchors"] for c in result["checkpoints"]] == [["tsa:hospital-tsa"]] * 2
        # Cut the last record, rewrite the head to match, and delete the checkpoint that named it.
        lines = log.read_bytes().splitlines(keepends=True)
        log.write_bytes(b"".join(lines[:-1]))
        head_path(log).write_bytes(canonical_json({"sequence": 3, "hash": json.loads(lines[-2])["hash"]}) + b"\n")
        for cp in checkpoint_dir(log).iterdir():
            if cp.name.startswith("000000000004-"):
                cp.unlink()
        assert _verify(log, trust, now=now + dt.timedelta(days=2))[0] == 0, "the gap: chain, head and remaining checkpoint agree"
        code, result, _ = _verify(log, trust, "--require-anchor", "24h", now=now + dt.timedelta(days=2))
        assert code == 1 and result["status"] == "unanchored" and result["sequence"] == 3
        assert "older than 24h and no anchored checkpoint covers it" in result["problem"]
    finally:
        tsa.close()


# --------------------------------------------------------------------------- (b) whole chain rewritten
def test_b_rewritten_chain_with_deleted_checkpoints_is_caught_by_the_anchor_directory(tmp_path, signer, trust):
    log, anchors = tmp_path / "audit.jsonl", tmp_path / "anchors"
    _write(log, 5, key=signer, trust=trust, every="2", anchors=[f"file:{anchors}"])
    shutil.rmtree(checkpoint_dir(log))

    def allow_all(recs):
        for r in recs:
            r["result"], r["violations"] = "allow", []
    _rewrite(log, allow_all)
    code, result, _ = _verify(log, trust)
    assert code == 0 and result["status"] == "intact", "the gap: a rewritten chain without its checkpoints verifies"
    code, result, _ = _verify(log, trust, "--anchor", f"file:{anchors}", "--require-anchor", "24h")
    assert code == 1 and result["status"] == "tampered" and "the chain was rewritten after the checkpoint" in result["problem"]


def test_b_rewritten_chain_with_deleted_checkpoints_has_no_anchor_for_its_old_records(tmp_path, signer, trust):
    log = tmp_path / "audit.jsonl"
    _write(log, 5, key=signer, trust=trust, every="2", anchors=[f"file:{tmp_path / 'anchors'}"])
    shutil.rmtree(checkpoint_dir(log))
    _rewrite(log, lambda recs: [r.update(result="allow", violations=[]) for r in recs])
    # The auditor asks for anchors but the anchor directory is not at hand: no anchored checkpoint at all.
    code, out, _ = _verify_text(log, trust, "--require-anchor", "24h")
    assert code == 1
    (line,) = [x for x in out.splitlines() if "UNANCHORED" in x]
    assert "sequence 1 (line 1, recorded at 2026-11-01T08:00:00Z) is older than 24h and no anchored checkpoint covers it" in line


def test_b_a_fresh_checkpoint_over_a_rewritten_old_chain_was_anchored_too_late(tmp_path, signer, trust):
    """The attacker holds the writer's key too: rewrites, deletes the old checkpoints and copies,
    then signs and anchors a new checkpoint today. The anchor is weeks younger than the records."""
    log, anchors = tmp_path / "audit.jsonl", tmp_path / "anchors"
    _write(log, 3, key=signer, trust=trust, every="3", anchors=[f"file:{anchors}"])
    shutil.rmtree(checkpoint_dir(log))
    shutil.rmtree(anchors)
    _rewrite(log, lambda recs: [r.update(result="allow") for r in recs])
    code, _, err = run(["audit", "checkpoint", "--audit", f"file:{log}", "--key", signer, "--trust", trust, "--anchor", f"file:{anchors}"],
                       now=T0 + dt.timedelta(days=20))
    assert code == 0, err
    code, result, _ = _verify(log, trust, "--anchor", f"file:{anchors}", "--require-anchor", "7d", now=T0 + dt.timedelta(days=21))
    assert code == 1 and result["status"] == "unanchored" and result["sequence"] == 1
    assert "was first anchored at 2026-11-21T08:00:00Z, more than 7d later" in result["problem"]


# --------------------------------------------------------------------------- (c) after the last checkpoint
def test_c_a_record_after_the_last_checkpoint_rewritten_is_unanchored(tmp_path, signer, trust):
    log, anchors = tmp_path / "audit.jsonl", tmp_path / "anchors"
    _write(log, 5, key=signer, trust=trust, every="3", anchors=[f"file:{anchors}"])  # checkpoint at 3; 4 and 5 not yet

    def deny_to_allow(recs):
        recs[4]["result"] = "allow"
    _rewrite(log, deny_to_allow)
    code, result, _ = _verify(log, trust, "--anchor", f"file:{anchors}")
    assert code == 0 and result["status"] == "intact", "the gap: nothing signed sequence 5"
    code, result, _ = _verify(log, trust, "--anchor", f"file:{anchors}", "--require-anchor", "24h")
    assert code == 1 and result["status"] == "unanchored" and result["sequence"] == 4
    assert "(anchored checkpoints cover sequence 3 and before)" in result["problem"]


# --------------------------------------------------------------------------- honest trails
def test_honest_trail_with_anchor_directory_passes_require_anchor(tmp_path, signer, trust):
    log, anchors = tmp_path / "audit.jsonl", tmp_path / "anchors"
    checkpointer = _write(log, 7, key=signer, trust=trust, every="2", anchors=[f"file:{anchors}"])
    assert [s.sequence for s in checkpointer.signed] == [2, 4, 6]
    # the first checkpoint verified the whole chain, the later ones the records since (same results)
    assert checkpointer._verified[0] == 6
    # sequence 7 is younger than the window when the auditor looks 30 minutes after it
    code, out, err = _verify_text(log, trust, "--anchor", f"file:{anchors}", "--require-anchor", "24h",
                                  now=T0 + dt.timedelta(minutes=90))
    assert code == 0, out + err
    assert "anchored: file:" in out and "sequences 7 to 7 are not anchored yet (younger than 24h)" in out
    # three days later it is not covered any more: sign one (as a cron job would) and it passes again
    assert _verify(log, trust, "--anchor", f"file:{anchors}", "--require-anchor", "24h")[0] == 1
    code, _, err = run(["audit", "checkpoint", "--audit", f"file:{log}", "--key", signer, "--trust", trust, "--anchor", f"file:{anchors}"],
                       now=T0 + dt.timedelta(hours=3))
    assert code == 0, err
    code, result, _ = _verify(log, trust, "--anchor", f"file:{anchors}", "--require-anchor", "24h")
    assert code == 0 and result["status"] == "intact"


def test_honest_trail_with_tsa_timestamps_passes_require_anchor(tmp_path, signer):
    from tsa_local import running_tsa

    tsa = running_tsa()
    try:
        trust = _trust(tmp_path, tsa)
        now = dt.datetime.now(dt.timezone.utc)
        log = tmp_path / "audit.jsonl"
        _write(log, 3, key=signer, trust=trust, every="3", tsa=tsa, start=now - dt.timedelta(minutes=5), step=dt.timedelta(seconds=1))
        assert len(tsa.requests) == 1
        code, result, err = _verify(log, trust, "--require-anchor", "1h", now=now + dt.timedelta(days=1))
        assert code == 0, (result, err)
        (cp,) = result["checkpoints"]
        assert cp["status"] == "ok" and cp["anchors"] == ["tsa:hospital-tsa"] and abs(
            (dt.datetime.fromisoformat(cp["anchored_at"].replace("Z", "+00:00")) - now).total_seconds()) < 120
        # a trust policy that does not list this TSA: the timestamp anchors nothing, and its tampered token fails closed
        other = tmp_path / "other"
        other.mkdir()
        shutil.copy(tmp_path / "cp.pub", other / "cp.pub")
        stranger = running_tsa("Other TSA")
        try:
            untrusting = _trust(other, stranger)
            code, result, _ = _verify(log, untrusting, "--require-anchor", "1h", now=now + dt.timedelta(days=1))
            assert code == 1 and result["status"] == "tampered" and "does not verify with any timestamping authority" in result["problem"]
        finally:
            stranger.close()
    finally:
        tsa.close()


def test_check_signs_anchored_checkpoints_from_the_command_line(tmp_path, signer):
    shutil.copytree(EXAMPLES / "keys", tmp_path / "keys")
    trust = _trust(tmp_path)
    log, anchors = tmp_path / "audit.jsonl", tmp_path / "anchors"
    for _ in range(2):
        code, out, err = run(["check", EXAMPLES / "readmission-risk", "--env", "staging", "--audit-log", log, "--trust", trust,
                              "--checkpoint-key", signer, "--checkpoint-every", "1", "--checkpoint-anchor", f"file:{anchors}"])
        assert code in (0, 1) and "warning" not in err, err
    assert sorted(p.name[:12] for p in anchors.iterdir()) == ["000000000001", "000000000002"]
    code, out, err = run(["audit", "verify", "--audit", f"file:{log}", "--trust", trust, "--anchor", f"file:{anchors}",
                          "--require-anchor", "1d"], now=EXAMPLES_NOW + dt.timedelta(days=5))
    assert code == 0, out + err
    # a key the trust policy does not list is refused before any decision is made
    priv, _ = generate_keypair("ed25519")
    (tmp_path / "stranger.key").write_bytes(priv)
    code, _, err = run(["check", EXAMPLES / "readmission-risk", "--env", "staging", "--audit-log", log, "--trust", trust,
                        "--checkpoint-key", tmp_path / "stranger.key"])
    assert code == 2 and "is not a checkpoint signer" in err and len(_records(log)) == 2


def test_time_based_checkpoints_sign_when_the_newest_is_old_enough(tmp_path, signer, trust):
    log = tmp_path / "audit.jsonl"
    checkpointer = _write(log, 7, key=signer, trust=trust, every="25m")  # records every 10 minutes
    assert [s.sequence for s in checkpointer.signed] == [1, 4, 7]


@pytest.mark.parametrize("text,expected", [("100", (100, None)), ("30s", (None, 30.0)), ("1h", (None, 3600.0)), ("100,1d", (100, 86400.0))])
def test_every_parses(text, expected):
    every = parse_every(text)
    assert (every.records, every.seconds) == expected


@pytest.mark.parametrize("text", ["0", "-1", "1x", "1h,2h", "", "nan", "1,2", "1e3"])
def test_every_refuses(text):
    with pytest.raises(InputError):
        parse_every(text)


@pytest.mark.parametrize("text", ["0h", "24", "inf", "nan", "-1d", "1w"])
def test_require_anchor_refuses_bad_ages_with_one_line(tmp_path, text, signer, trust):
    log = tmp_path / "audit.jsonl"
    _write(log, 1, key=signer, trust=trust)
    code, out, err = run(["audit", "verify", "--audit", f"file:{log}", "--trust", trust, "--require-anchor", text])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--require-anchor" in err
    assert parse_age("7d") == dt.timedelta(days=7)


def test_a_missing_anchor_directory_fails_closed(tmp_path, signer, trust):
    log = tmp_path / "audit.jsonl"
    _write(log, 1, key=signer, trust=trust)
    code, out, err = run(["audit", "verify", "--audit", f"file:{log}", "--trust", trust, "--anchor", f"file:{tmp_path / 'gone'}"])
    assert code == 2 and "cannot read the anchor directory" in err


def test_checkpoint_options_without_a_key_are_refused():
    with pytest.raises(InputError, match="needs --checkpoint-key"):
        checkpoint_settings(None, "10", (), None)
    assert checkpoint_settings(None, None, (), None) is None
    assert isinstance(checkpoint_settings(REPO / "x.key", None, ("file:/tmp/a",), None), CheckpointSettings)


def test_the_writer_refuses_to_sign_a_chain_rewritten_under_it(tmp_path, signer, trust):
    log = tmp_path / "audit.jsonl"
    clock = StepClock(T0)
    checkpointer = Checkpointer.from_settings(f"file:{log}", checkpoint_settings(signer, "1"), clock=clock, trust_path=trust)
    sink = CheckpointingSink(FileAuditSink(log), checkpointer)
    sink.append({"decision_id": "d1", "timestamp": rfc3339(T0), "result": "deny"})
    assert checkpointer.run_if_due().sequence == 1
    FileAuditSink(log).append({"decision_id": "d2", "timestamp": rfc3339(T0), "result": "deny"})
    lines = log.read_bytes().splitlines(keepends=True)
    rec = json.loads(lines[1])
    rec["result"] = "allow"  # edited without resealing
    log.write_bytes(lines[0] + canonical_json(rec) + b"\n")
    sink.append({"decision_id": "d3", "timestamp": rfc3339(T0), "result": "deny"})
    assert checkpointer.run_if_due() is None
    assert "line 2: the record does not hash to its hash field; refusing to sign" in checkpointer.errors[0]
    sink.close()
    assert len(checkpointer.errors) == 2  # tried again as the sink closed, refused again


def test_webhook_settings_sign_checkpoints_on_a_background_thread(tmp_path, signer, trust):
    import time

    from mlgate.gatekeeper.config import settings_from_dict
    from mlgate.gatekeeper.service import open_audit_sink

    log, anchors = tmp_path / "audit.jsonl", tmp_path / "anchors"
    doc = {"auditCheckpoints": {"key": "cp.key", "every": "1", "anchors": ["file:anchors"]}}
    settings = settings_from_dict(doc, "settings.yaml", base=tmp_path, evidence_store=f"file://{tmp_path}", audit=f"file:{log}",
                                  trust_policy=trust)
    assert settings.checkpoint.anchors == (f"file:{anchors}",) and settings.checkpoint.every.records == 1
    sink = open_audit_sink(settings, StepClock(T0))
    sink.append({"decision_id": "d1", "timestamp": rfc3339(T0), "result": "deny"})
    deadline = time.monotonic() + 20  # signed by the thread, not by the appending caller
    while not list(anchors.glob("*.sigstore.json")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [p.name[:12] for p in anchors.glob("*.sigstore.json")] == ["000000000001"]
    for i in range(2, 5):
        sink.append({"decision_id": f"d{i}", "timestamp": rfc3339(T0), "result": "deny"})
    sink.close()  # joins the thread; what is still due is signed
    assert sorted(p.name[:12] for p in anchors.glob("*.sigstore.json"))[-1] == "000000000004"
    code, result, _ = _verify(log, trust, "--anchor", f"file:{anchors}", "--require-anchor", "24h")
    assert code == 0 and result["status"] == "intact"
    # the flags win over the file, key by key; a bad value is one line naming the settings file
    flags = settings_from_dict(doc, "settings.yaml", base=tmp_path, evidence_store="file:///x", audit="file:a.jsonl",
                               checkpoint_flags={"every": "30s"})
    assert (flags.checkpoint.every.records, flags.checkpoint.every.seconds) == (None, 30.0)
    with pytest.raises(InputError, match="settings.yaml: --checkpoint-every: expected N"):
        settings_from_dict({"auditCheckpoints": {"key": "cp.key", "every": "often"}}, "settings.yaml", base=tmp_path,
                           evidence_store="file:///x", audit="file:a.jsonl")
    with pytest.raises(InputError, match="auditCheckpoints: unknown key 'keys'"):
        settings_from_dict({"auditCheckpoints": {"keys": "cp.key"}}, "settings.yaml", base=tmp_path, evidence_store="file:///x", audit="file:a.jsonl")
