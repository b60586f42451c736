"""Signed checkpoints (issue #4 part 5): `mlgate audit checkpoint` signs the head, `mlgate audit
verify` checks every checkpoint against the trust policy and catches a whole rewritten chain,
one that verifies on its own."""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil

import pytest

from mlgate.signing.attestation import parse_bundle
from mlgate.audit import GENESIS_HASH, FileAuditSink, seal
from mlgate.audit.anchor import create_checkpoint
from mlgate.audit.checkpoint import PREDICATE_TYPE, CheckpointPolicy, CheckpointRefused, checkpoint_dir, load_checkpoint_trust
from mlgate.audit.file import head_path
from mlgate.audit.verify import FileTrail, verify_trail
from mlgate.canonical import canonical_json
from mlgate.errors import InputError
from mlgate.signing.keys import generate_keypair, key_id, load_private_key_pem

from cli_helpers import run
from conftest import EXAMPLES_NOW, REPO

T1 = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def keys(tmp_path):
    """Two key pairs written as files: the trusted checkpoint signer and a stranger."""
    out = {}
    for who in ("signer", "stranger"):
        priv, pub = generate_keypair("ed25519")
        (tmp_path / f"{who}.key").write_bytes(priv)
        (tmp_path / f"{who}.pub").write_bytes(pub)
        out[who] = tmp_path / f"{who}.key"
    return out


@pytest.fixture
def trust(tmp_path, keys):
    """The bundled trust policy plus a checkpoint signer, as an auditor's trust file."""
    path = tmp_path / "trust.yaml"
    path.write_text((REPO / "examples" / "trust.yaml").read_text().split("\ncheckpointSigners:")[0].rstrip("\n") + "\ncheckpointSigners:\n"
                    "  - id: audit-checkpointer@hospital.example\n    name: Audit checkpoint service\n    keys: [{path: signer.pub}]\n")
    return path


def _trail(tmp_path, n=6):
    log = tmp_path / "audit.jsonl"
    sink = FileAuditSink(log)
    for i in range(1, n + 1):
        sink.append({"decision_id": f"d{i}", "result": "deny", "violations": [{"id": "MLG-X", "message": f"m{i}"}]})
    return log


def _records(log):
    return [json.loads(line) for line in log.read_bytes().splitlines()]


def _rewrite(log, edit):
    """What an attacker with write access does: edit records, then reseal the whole chain and the head."""
    prev, lines, recs = GENESIS_HASH, [], _records(log)
    edit(recs)
    for i, rec in enumerate(recs, start=1):
        body = {k: v for k, v in rec.items() if k not in ("apiVersion", "sequence", "prev_hash", "hash")}
        sealed = seal(body, sequence=i, prev_hash=prev)
        prev = sealed["hash"]
        lines.append(canonical_json(sealed) + b"\n")
    log.write_bytes(b"".join(lines))
    head_path(log).write_bytes(canonical_json({"sequence": len(recs), "hash": prev}) + b"\n")


def _sign(log, key, *extra, now=T1):
    return run(["audit", "checkpoint", "--audit", f"file:{log}", "--key", key, *extra], now=now)


def _verify(log, trust, *extra):
    code, out, err = run(["audit", "verify", "--audit", f"file:{log}", "--trust", trust, "-o", "json", *extra])
    return code, json.loads(out), err


def test_checkpoint_signs_the_head_with_the_injected_clock(tmp_path, keys, trust):
    log = _trail(tmp_path)
    code, out, err = _sign(log, keys["signer"], "--trust", trust, "-o", "json")
    assert code == 0, err
    doc = json.loads(out)
    head = _records(log)[-1]
    assert (doc["sequence"], doc["hash"], doc["time"], doc["signer_id"]) == (6, head["hash"], "2026-12-01T08:00:00Z", "audit-checkpointer@hospital.example")
    (stored,) = sorted(checkpoint_dir(log).iterdir())
    assert str(stored) == doc["location"] and stored.name.startswith("000000000006-20261201T080000000000Z-")
    statement = json.loads(parse_bundle(stored.read_bytes(), "cp").payload)
    assert statement["predicateType"] == PREDICATE_TYPE == "https://mlgate.dev/attestation/audit-checkpoint/v1"
    assert statement["subject"] == [{"name": "mlgate-audit-head", "digest": {"sha256": head["hash"]}}]
    assert statement["predicate"]["sequence"] == 6 and statement["predicate"]["time"] == "2026-12-01T08:00:00Z"
    code, result, _ = _verify(log, trust)
    assert code == 0 and result["status"] == "intact"
    assert [(c["status"], c["sequence"], c["signer_id"]) for c in result["checkpoints"]] == [("ok", 6, "audit-checkpointer@hospital.example")]
    code, out, _ = run(["audit", "verify", "--audit", f"file:{log}", "--trust", trust])
    assert code == 0 and "checkpoint sequence 6" in out and "signed by Audit checkpoint service <audit-checkpointer@hospital.example> at 2026-12-01T08:00:00Z: OK" in out


def test_a_whole_rewritten_chain_verifies_alone_but_contradicts_the_checkpoint(tmp_path, keys, trust):
    log = _trail(tmp_path)
    assert _sign(log, keys["signer"])[0] == 0
    signed_hash = _records(log)[3]["hash"]

    def edit(recs):
        recs[1]["result"] = "allow"  # decision 2 becomes an allow
    _rewrite(log, edit)
    chain_only = verify_trail(FileTrail(log))
    assert chain_only.ok, "the rewritten chain is internally consistent: only a checkpoint can tell"
    code, result, _ = _verify(log, trust)
    assert code == 1 and result["status"] == "tampered" and result["field"] == "hash" and result["sequence"] == 6
    assert result["expected"] == _sign_hash(log) and result["found"] == _records(log)[5]["hash"] != result["expected"]
    assert "the chain was rewritten after the checkpoint" in result["problem"]
    assert result["checkpoints"][0]["status"] == "contradicted"
    assert signed_hash != _records(log)[3]["hash"]
    code, out, _ = run(["audit", "verify", "--audit", f"file:{log}", "--trust", trust])
    assert code == 1 and "TAMPERED: checkpoint" in out and "CONTRADICTED" in out


def _sign_hash(log):
    (stored,) = sorted(checkpoint_dir(log).iterdir())
    return json.loads(parse_bundle(stored.read_bytes(), "cp").payload)["predicate"]["hash"]


def test_an_earlier_checkpoint_catches_a_rewrite_of_older_records(tmp_path, keys, trust):
    log = _trail(tmp_path, n=3)
    assert _sign(log, keys["signer"], now=T1)[0] == 0
    sink = FileAuditSink(log)
    for i in range(3):
        sink.append({"decision_id": f"later{i}", "result": "allow"})
    assert _sign(log, keys["signer"], now=T1 + dt.timedelta(hours=1))[0] == 0
    code, result, _ = _verify(log, trust)
    assert code == 0 and [c["sequence"] for c in result["checkpoints"]] == [3, 6]

    _rewrite(log, lambda recs: recs[0].update(result="allow"))
    code, result, _ = _verify(log, trust)
    assert code == 1 and result["sequence"] == 3  # the earliest contradiction is reported
    assert [c["status"] for c in result["checkpoints"]] == ["contradicted", "contradicted"]


def test_cut_tail_with_a_rewritten_head_is_caught_by_the_checkpoint(tmp_path, keys, trust):
    log = _trail(tmp_path)
    assert _sign(log, keys["signer"])[0] == 0
    lines = log.read_bytes().splitlines(keepends=True)[:4]
    log.write_bytes(b"".join(lines))
    head_path(log).write_bytes(canonical_json({"sequence": 4, "hash": json.loads(lines[-1])["hash"]}) + b"\n")
    assert verify_trail(FileTrail(log)).ok
    code, result, _ = _verify(log, trust)
    assert code == 1 and result["status"] == "truncated" and (result["expected"], result["found"]) == (6, 4)
    assert "attests sequence 6, but the trail ends at sequence 4" in result["problem"]


def test_deleted_stored_checkpoints_are_still_caught_by_a_copy_held_elsewhere(tmp_path, keys, trust):
    log = _trail(tmp_path)
    assert _sign(log, keys["signer"])[0] == 0
    (stored,) = checkpoint_dir(log).iterdir()
    copy = tmp_path / "auditor-copy.sigstore.json"
    shutil.copy(stored, copy)
    shutil.rmtree(checkpoint_dir(log))
    _rewrite(log, lambda recs: recs[4].update(result="allow"))
    code, result, _ = _verify(log, trust)
    assert code == 0 and any("no signed checkpoints" in n for n in result["notes"])
    code, result, _ = _verify(log, trust, "--checkpoint", copy)
    assert code == 1 and result["status"] == "tampered" and result["checkpoints"][0]["where"].endswith("auditor-copy.sigstore.json")


def test_checkpoints_without_trusted_signers_cannot_be_verified_exit_2(tmp_path, keys):
    log = _trail(tmp_path)
    assert _sign(log, keys["signer"])[0] == 0
    bare = tmp_path / "no-checkpointers.yaml"  # the examples' trust policy without its checkpointSigners
    bare.write_text((REPO / "examples" / "trust.yaml").read_text().split("\ncheckpointSigners:")[0].rstrip("\n") + "\n")
    code, out, err = run(["audit", "verify", "--audit", f"file:{log}", "--trust", bare])
    assert code == 2 and "1 checkpoint(s) cannot be verified" in err and "lists no checkpointSigners" in err


def test_checkpoint_by_an_unlisted_key_fails_closed(tmp_path, keys, trust):
    log = _trail(tmp_path)
    assert _sign(log, keys["stranger"])[0] == 0  # without --trust, signing does not check who signs
    code, result, _ = _verify(log, trust)
    assert code == 1 and result["status"] == "tampered" and result["field"] == "checkpoint"
    assert "is not signed by a checkpoint signer" in result["problem"] and "unknown key hint" in result["problem"]
    code, _out, err = _sign(log, keys["stranger"], "--trust", trust)
    assert code == 1 and "is not a checkpoint signer in the trust policy" in err


def test_approver_key_is_not_a_checkpoint_key(tmp_path, trust):
    # Jane Roe's approval key signs a checkpoint: the same bytes, but the wrong identity.
    log = _trail(tmp_path)
    assert _sign(log, REPO / "examples" / "keys" / "jane.roe.key")[0] == 0
    code, result, _ = _verify(log, trust)
    assert code == 1 and result["checkpoints"][0]["status"] == "untrusted"


def test_no_mutated_byte_of_a_checkpoint_verifies(tmp_path, keys, trust):
    log = _trail(tmp_path)
    assert _sign(log, keys["signer"])[0] == 0
    (stored,) = checkpoint_dir(log).iterdir()
    original = stored.read_bytes()
    doc = json.loads(original)
    payload = base64.b64decode(doc["dsseEnvelope"]["payload"])
    # A forged claim, correctly encoded, keeping the real signature.
    forged = payload.replace(b'"sequence":6', b'"sequence":5')
    doc["dsseEnvelope"]["payload"] = base64.b64encode(forged).decode()
    variants = [json.dumps(doc).encode()]
    step = max(1, len(original) // 60)
    for i in range(0, len(original), step):
        variants.append(original[:i] + bytes([original[i] ^ 0x01]) + original[i + 1:])
    policy = CheckpointPolicy(trust_path=trust)
    for data in variants:
        stored.write_bytes(data)
        result = verify_trail(FileTrail(log), checkpoints=policy)
        assert not result.ok and result.checkpoints[0]["status"] in ("invalid", "untrusted"), data[:80]
    stored.write_bytes(original)
    assert verify_trail(FileTrail(log), checkpoints=policy).ok


def test_checkpoint_refuses_a_broken_chain_and_an_empty_trail(tmp_path, keys):
    log = _trail(tmp_path)
    lines = log.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"result":"deny"', b'"result":"allow"')
    log.write_bytes(b"".join(lines))
    code, _out, err = _sign(log, keys["signer"])
    assert code == 1 and "refusing to sign it: tampered: sequence 3" in err and not checkpoint_dir(log).exists()
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    code, _out, err = _sign(empty, keys["signer"])
    assert code == 2 and "no records; nothing to checkpoint" in err
    code, _out, err = _sign(tmp_path / "missing.jsonl", keys["signer"])
    assert code == 2 and "missing.jsonl" in err


def test_checkpoint_refuses_to_sign_over_a_chain_that_contradicts_a_stored_checkpoint(tmp_path, keys):
    log = _trail(tmp_path)
    assert _sign(log, keys["signer"])[0] == 0
    _rewrite(log, lambda recs: recs[0].update(result="allow"))
    code, _out, err = _sign(log, keys["signer"], now=T1 + dt.timedelta(days=1))
    assert code == 1 and "which the chain contradicts; refusing to sign" in err
    assert len(list(checkpoint_dir(log).iterdir())) == 1


def test_create_checkpoint_is_deterministic_and_never_overwrites(tmp_path, keys, trust):
    log = _trail(tmp_path)
    key = load_private_key_pem(keys["signer"].read_bytes(), "k")
    a = create_checkpoint(FileTrail(log), key, now=T1)
    b = create_checkpoint(FileTrail(log), key, now=T1)  # the same bytes again: one file
    assert a == b and len(list(checkpoint_dir(log).iterdir())) == 1
    c = create_checkpoint(FileTrail(log), key, now=T1 + dt.timedelta(seconds=1))
    assert c.location != a.location and len(list(checkpoint_dir(log).iterdir())) == 2
    assert a.key_id == key_id(key.public_key())
    with pytest.raises(CheckpointRefused):
        create_checkpoint(FileTrail(log), load_private_key_pem(keys["stranger"].read_bytes(), "k"), now=T1,
                          trust=load_checkpoint_trust(trust))


def test_verify_without_checkpoints_notes_it(tmp_path, trust):
    log = _trail(tmp_path)
    code, out, _ = run(["audit", "verify", "--audit", f"file:{log}", "--trust", trust])
    assert code == 0 and "no signed checkpoints: a rewritten chain cannot be detected" in out


@pytest.mark.parametrize("entry, field, message", [
    ("  - {id: a, name: A, keys: [{path: jane.pub}]}\n", "checkpointSigners[0].keys[0]", "already listed for approver 'jane.roe@hospital.example'"),
    ("  - {id: a, name: A, keys: []}\n", "checkpointSigners[0].keys", "non-empty"),
    ("  - {id: a, name: A, role: x, keys: [{path: signer.pub}]}\n", "checkpointSigners[0]", "unexpected field"),
    ("  - {id: a, name: A, keys: [{path: ../signer.pub}]}\n", "checkpointSigners[0].keys[0].path", "leaves the release directory"),
    ("  - {id: a, name: A, keys: [{path: signer.pub, keyId: '" + "0" * 64 + "'}]}\n", "checkpointSigners[0].keys[0].keyId", "does not match the key"),
    ("  - {id: a, name: A, keys: [{path: signer.pub}]}\n  - {id: a, name: B, keys: [{path: stranger.pub}]}\n", "checkpointSigners[1].id",
     "duplicate checkpoint signer id"),
])
def test_trust_reader_errors_name_the_file_and_field(tmp_path, keys, entry, field, message):
    shutil.copy(REPO / "examples" / "keys" / "jane.roe.pub", tmp_path / "jane.pub")
    path = tmp_path / "trust.yaml"
    path.write_text((REPO / "examples" / "trust.yaml").read_text().split("\ncheckpointSigners:")[0].rstrip("\n") + "\ncheckpointSigners:\n" + entry)
    with pytest.raises(InputError) as info:
        load_checkpoint_trust(path)
    assert info.value.field == field and message in info.value.message and "trust.yaml" in info.value.file


def test_trust_reader_still_validates_the_rest_of_the_trust_policy(tmp_path, keys):
    path = tmp_path / "trust.yaml"
    path.write_text("apiVersion: mlgate.dev/v1\nkind: TrustPolicy\napprovers: [{id: x}]\n"
                    "checkpointSigners: [{id: a, name: A, keys: [{path: signer.pub}]}]\n")
    with pytest.raises(InputError) as info:
        load_checkpoint_trust(path)
    assert info.value.field.startswith("approvers[0]")
    code, _out, err = run(["audit", "verify", "--audit", f"file:{_trail(tmp_path)}", "--trust", path])
    assert code == 0  # no checkpoints: the trust policy is not needed
    assert _sign(tmp_path / "audit.jsonl", keys["signer"])[0] == 0
    code, _out, err = run(["audit", "verify", "--audit", f"file:{tmp_path / 'audit.jsonl'}", "--trust", path])
    assert code == 2 and "approvers[0]" in err and err.count("\n") == 1


def test_real_decisions_then_checkpoint_then_verify(tmp_path, keys, trust):
    log = tmp_path / "audit.jsonl"
    for example, env in (("readmission-risk", "production"), ("chest-xray", "staging")):
        run(["check", REPO / "examples" / example, "--env", env, "--audit-log", log], now=EXAMPLES_NOW)
    assert _sign(log, keys["signer"], "--trust", trust)[0] == 0
    code, result, _ = _verify(log, trust)
    assert code == 0 and result["checkpoints"][0]["sequence"] == 2


def _trust_has_validity():
    from mlgate.signing import trust as _trust

    return "checkpoint_signers" in getattr(_trust.TrustPolicy, "__dataclass_fields__", {}) and hasattr(_trust, "Validity")


@pytest.mark.skipif(not _trust_has_validity(), reason="this mlgate.signing.trust has no key validity windows or revocation yet")
def test_checkpoint_signed_after_its_key_was_revoked_does_not_count(tmp_path, keys):
    log = _trail(tmp_path)
    assert _sign(log, keys["signer"], now=T1)[0] == 0  # signed before the revocation: still counts
    assert _sign(log, keys["signer"], now=T1 + dt.timedelta(days=2))[0] == 0  # after it: does not
    path = tmp_path / "trust.yaml"
    path.write_text((REPO / "examples" / "trust.yaml").read_text().split("\ncheckpointSigners:")[0].rstrip("\n") + "\ncheckpointSigners:\n"
                    "  - id: cp@hospital.example\n    name: CP\n    keys:\n      - path: signer.pub\n"
                    "        revoked: {at: '2026-12-02T00:00:00Z', reason: keyCompromise}\n")
    code, result, _ = _verify(log, path)
    assert code == 1 and [c["status"] for c in result["checkpoints"]] == ["ok", "untrusted"]
    assert "revoked" in result["checkpoints"][1]["reason"] and "is not signed by a checkpoint signer" in result["problem"]
