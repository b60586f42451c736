"""Checkpoints of a PostgreSQL trail: stored in the append-only table mlgate_audit_checkpoints;
a superuser who rewrites the whole chain (triggers off, every hash recomputed, head moved) is
caught by the signed checkpoint. Real server, as in test_audit_pg."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from mlgate.audit import GENESIS_HASH, open_sink, seal
from mlgate.audit.verify import PostgresTrail, verify_trail
from mlgate.canonical import canonical_json

from cli_helpers import run
from test_audit_checkpoint import keys, trust  # noqa: F401 - fixtures
from test_audit_pg import _sql, pg_url  # noqa: F401 - fixtures

T1 = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.timezone.utc)


def _verify(url, trust_path):
    code, out, err = run(["audit", "verify", "--audit", url, "--trust", trust_path, "-o", "json"])
    return code, json.loads(out), err


def test_pg_checkpoint_detects_a_superuser_rewrite(pg_url, keys, trust):  # noqa: F811
    with open_sink(pg_url) as sink:
        for i in range(5):
            sink.append({"decision_id": f"d{i}", "result": "deny"})
    code, out, err = run(["audit", "checkpoint", "--audit", pg_url, "--key", keys["signer"], "--trust", trust], now=T1)
    assert code == 0 and "checkpoint row 1" in out, err
    rows = _sql(pg_url, "SELECT sequence, hash, signed_at FROM mlgate_audit_checkpoints")
    assert rows == [(5, _sql(pg_url, "SELECT hash FROM mlgate_audit_head")[0][0], "2026-12-01T08:00:00Z")]
    code, result, _ = _verify(pg_url, trust)
    assert code == 0 and result["checkpoints"][0]["status"] == "ok" and result["checkpoints"][0]["where"] == "checkpoint row 1"

    with pytest.raises(Exception, match="append-only"):
        _sql(pg_url, "DELETE FROM mlgate_audit_checkpoints")

    # The rewrite: decision 2 becomes an allow, every later hash recomputed, the head moved along.
    recs = [json.loads(t) for (t,) in _sql(pg_url, "SELECT record FROM mlgate_audit_records ORDER BY sequence")]
    recs[1]["result"] = "allow"
    prev, statements = GENESIS_HASH, ["ALTER TABLE mlgate_audit_records DISABLE TRIGGER USER", "DELETE FROM mlgate_audit_records"]
    for i, rec in enumerate(recs, start=1):
        sealed = seal({k: v for k, v in rec.items() if k not in ("apiVersion", "sequence", "prev_hash", "hash")}, sequence=i, prev_hash=prev)
        prev = sealed["hash"]
        text = canonical_json(sealed).decode().replace("'", "''")
        statements.append(f"INSERT INTO mlgate_audit_records (sequence, hash, prev_hash, record) VALUES ({i}, '{prev}', '{sealed['prev_hash']}', '{text}')")
    statements += ["ALTER TABLE mlgate_audit_head DISABLE TRIGGER USER", f"UPDATE mlgate_audit_head SET sequence = 5, hash = '{prev}'",
                   "ALTER TABLE mlgate_audit_head ENABLE TRIGGER USER", "ALTER TABLE mlgate_audit_records ENABLE TRIGGER USER"]
    _sql(pg_url, *statements)

    trail = PostgresTrail(pg_url)
    try:
        assert verify_trail(trail).ok  # the chain alone cannot tell
    finally:
        trail.close()
    code, result, _ = _verify(pg_url, trust)
    assert code == 1 and result["status"] == "tampered" and result["checkpoints"][0]["status"] == "contradicted"
    assert result["found"] == prev
