"""Least privilege on PostgreSQL (issue 16 part 3), against the real server: ``mlgate audit init-db``
creates the tables as an owner role; the writer role that mlgate check and serve connect as can
only append. Every attack the issue names is tried as the writer and must be refused, while
decisions (the gate through the sink, concurrent writers) still work and verify says intact.

Each test creates its own roles (unique names) and a database owned by the owner role, and drops
them afterwards. The server is ``MLGATE_TEST_PG`` as in test_audit_pg.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
from urllib.parse import urlsplit, urlunsplit

import pytest

from mlgate.audit import open_sink
from mlgate.audit.verify import PostgresTrail, verify_trail
from mlgate.errors import AuditError

from cli_helpers import run
from conftest import EXAMPLES
from test_audit_checkpoint import keys, trust  # noqa: F401 - fixtures
from test_audit_pg import BASE, _admin

TABLES = ("mlgate_audit_records", "mlgate_audit_evidence", "mlgate_audit_head", "mlgate_audit_checkpoints")


def _url(user: str, db: str) -> str:
    parts = urlsplit(BASE)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{user}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, f"/{db}", "", ""))


class Setup:
    def __init__(self, tag: str):
        self.db = f"mlgate_test_{tag}"
        self.owner, self.writer, self.reader = (f"mlgate_{k}_{tag}" for k in ("owner", "writer", "reader"))
        self.superuser = _url(urlsplit(BASE).username or "postgres", self.db)

    def url(self, role: str) -> str:
        return _url(role, self.db)


@pytest.fixture
def pg():
    s = Setup(secrets.token_hex(5))
    with _admin() as conn:
        for role in (s.owner, s.writer, s.reader):
            conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute(f'CREATE DATABASE "{s.db}" OWNER "{s.owner}"')  # the owner may create in its schema public (PostgreSQL 15+)
    try:
        yield s
    finally:
        with _admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{s.db}" WITH (FORCE)')
            for role in (s.owner, s.writer, s.reader):
                conn.execute(f'DROP ROLE IF EXISTS "{role}"')


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


def _init(pg, *extra):
    code, out, err = run(["audit", "init-db", "--audit", pg.url(pg.owner), "--writer", pg.writer, "--reader", pg.reader, *extra])
    assert code == 0, err
    return out


def _append(url, n, tag="d"):
    with open_sink(url) as sink:
        return [sink.append({"decision_id": f"{tag}{i}", "result": "deny"}) for i in range(n)]


def _refused(url, statement, match):
    import psycopg

    with pytest.raises(psycopg.Error, match=match):
        _sql(url, statement)


# ------------------------------------------------------------------ init-db and the writer
def test_init_db_creates_the_schema_as_the_owner(pg):
    out = _init(pg)
    assert f"owned by {pg.owner}" in out and f"writer {pg.writer}: may append" in out
    owners = _sql(pg.superuser, "SELECT tablename, tableowner FROM pg_tables WHERE tablename LIKE 'mlgate_audit_%' ORDER BY 1")
    assert owners == sorted((t, pg.owner) for t in TABLES)
    privs = {}
    for table in TABLES:
        for priv in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "TRIGGER", "REFERENCES"):
            if _sql(pg.superuser, f"SELECT has_table_privilege('{pg.writer}', '{table}', '{priv}')")[0][0]:
                privs.setdefault(table, []).append(priv)
    assert privs == {"mlgate_audit_records": ["SELECT", "INSERT"], "mlgate_audit_evidence": ["SELECT", "INSERT"],
                     "mlgate_audit_head": ["SELECT"], "mlgate_audit_checkpoints": ["SELECT", "INSERT"]}
    for table in TABLES:
        assert not any(_sql(pg.superuser, f"SELECT has_table_privilege('{pg.reader}', '{table}', '{p}')")[0][0] for p in ("INSERT", "UPDATE", "DELETE", "TRUNCATE"))
    # SECURITY DEFINER functions with a fixed search_path, owned by the owner; nobody else may call them
    funcs = _sql(pg.superuser, "SELECT p.proname, pg_get_userbyid(p.proowner), p.prosecdef, p.proconfig FROM pg_proc p "
                               "WHERE p.proname IN ('mlgate_audit_lock_head', 'mlgate_audit_advance_head') ORDER BY 1")
    assert [(f[0], f[1], f[2]) for f in funcs] == [("mlgate_audit_advance_head", pg.owner, True), ("mlgate_audit_lock_head", pg.owner, True)]
    assert all(f[3] == ['search_path="public", pg_temp'] or f[3] == ["search_path=public, pg_temp"] for f in funcs), funcs
    assert not _sql(pg.superuser, f"SELECT has_function_privilege('{pg.reader}', 'mlgate_audit_advance_head(bigint, text)', 'EXECUTE')")[0][0]
    # idempotent: a second run changes nothing and still succeeds
    assert f"owned by {pg.owner}" in _init(pg)


def test_writer_appends_without_ddl_and_cannot_tamper(pg, keys, trust):  # noqa: F811
    """The reproduction: as the role mlgate writes with, every attack of the issue (triggers off
    and rewrite, TRUNCATE, DELETE of the head) succeeded; as the init-db writer each is refused."""
    _init(pg)
    w = pg.url(pg.writer)
    # the gate appends through the sink as the writer (evidence retained), with no DDL rights
    for example in ("readmission-risk", "triage-acuity"):
        code, out, err = run(["check", EXAMPLES / example, "--env", "production", "--audit", w, "--retain-evidence"])
        assert code in (0, 1) and "error" not in err.lower(), err
    _append(w, 4)
    assert _sql(w, "SELECT count(*) FROM mlgate_audit_evidence")[0][0] > 0
    code, out, err = run(["audit", "checkpoint", "--audit", w, "--key", keys["signer"], "--trust", trust])  # the writer may checkpoint
    assert code == 0 and "checkpoint row 1" in out, err

    for table in TABLES:
        _refused(w, f"ALTER TABLE {table} DISABLE TRIGGER USER", "must be owner")
        _refused(w, f"ALTER TABLE {table} ADD COLUMN x int", "must be owner")
        _refused(w, f"TRUNCATE {table}", "permission denied")
        _refused(w, f"DELETE FROM {table}", "permission denied")
    _refused(w, "UPDATE mlgate_audit_records SET result = 'allow'", "permission denied")
    _refused(w, "UPDATE mlgate_audit_evidence SET size = 0", "permission denied")
    _refused(w, "UPDATE mlgate_audit_head SET sequence = 0", "permission denied")
    _refused(w, "UPDATE mlgate_audit_checkpoints SET sequence = 0", "permission denied")
    _refused(w, "DROP TABLE mlgate_audit_records", "must be owner")
    _refused(w, "CREATE TRIGGER t BEFORE INSERT ON mlgate_audit_records FOR EACH ROW EXECUTE FUNCTION mlgate_audit_append_only()",
             "permission denied|must be owner")
    _refused(w, "INSERT INTO mlgate_audit_head VALUES (true, 0, 'x')", "permission denied")

    # the head function refuses a head that does not continue the chain
    seq, head_hash = _sql(w, "SELECT sequence, hash FROM mlgate_audit_head")[0]
    _refused(w, f"SELECT mlgate_audit_advance_head({seq + 3}, 'f' || repeat('0', 63))", "does not continue the chain")
    _refused(w, f"SELECT mlgate_audit_advance_head({seq - 1}, 'x')", "only moves forward")
    _refused(w, f"SELECT mlgate_audit_advance_head({seq}, 'x')", "only moves forward")
    # a forged record that does not link to the head, then the head moved over it
    forged = "a" * 64
    _refused(w, f"BEGIN; INSERT INTO mlgate_audit_records (sequence, hash, prev_hash, record) VALUES ({seq + 1}, '{forged}', '{'b' * 64}', '{{}}'); "
                f"SELECT mlgate_audit_advance_head({seq + 1}, '{forged}'); COMMIT", "does not continue the chain")
    # a record inserted without moving the head cannot be committed (it would block every later decision)
    _refused(w, f"INSERT INTO mlgate_audit_records (sequence, hash, prev_hash, record) VALUES ({seq + 1}, '{forged}', '{head_hash}', '{{}}')",
             "without moving the head")
    # evidence is content-addressed: other bytes under a digest are refused
    _refused(w, f"INSERT INTO mlgate_audit_evidence VALUES ('{'c' * 64}', 3, 'abc')", "mlgate_audit_evidence_content")
    # even the owner cannot edit or empty a table without first disabling the triggers
    for table in TABLES:
        _refused(pg.url(pg.owner), f"TRUNCATE {table}", "append-only")
        _refused(pg.url(pg.owner), f"DELETE FROM {table}", "append-only")

    assert _sql(w, "SELECT sequence, hash FROM mlgate_audit_head")[0] == (seq, head_hash)
    result = _verify(pg.url(pg.reader))
    assert result.ok and result.records == seq == 6
    code, out, _ = run(["audit", "verify", "--audit", pg.url(pg.reader), "--trust", trust])
    assert code == 0 and "intact: 6 record(s)" in out and ": OK" in out


def test_concurrent_writers_as_the_writer_role(pg):
    _init(pg)
    w = pg.url(pg.writer)
    code = ("import sys, threading\n"
            "from mlgate.audit import open_sink\n"
            "sink = open_sink(sys.argv[1])\n"
            "def f(t):\n"
            "    for i in range(20): sink.append({'decision_id': f'{sys.argv[2]}-{t}-{i}'})\n"
            "ts = [threading.Thread(target=f, args=(t,)) for t in range(3)]\n"
            "[t.start() for t in ts]; [t.join() for t in ts]\n"
            "sink.close()\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, w, f"p{p}"]) for p in range(3)]
    own = open_sink(w)
    threads = [threading.Thread(target=lambda t=t: [own.append({"decision_id": f"t{t}-{i}"}) for i in range(20)]) for t in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    own.close()
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    rows = _sql(pg.url(pg.reader), "SELECT sequence FROM mlgate_audit_records ORDER BY sequence")
    assert [r[0] for r in rows] == list(range(1, 241))
    result = _verify(pg.url(pg.reader))
    assert result.ok and result.records == 240


def test_writer_without_the_schema_names_init_db(pg):
    """The writer has no CREATE: it must not try DDL, and says what to run instead."""
    w = pg.url(pg.writer)
    with pytest.raises(AuditError, match=f"do not exist and role {pg.writer} cannot create them: run mlgate audit init-db"):
        _append(w, 1)
    code, out, err = run(["check", EXAMPLES / "triage-acuity", "--env", "production", "--audit", w])
    assert code != 0 and "ERROR (denied)" in out  # the decision fails closed
    assert err.strip().splitlines() == [err.strip()] and "cannot create them: run mlgate audit init-db" in err, err
    assert _sql(pg.superuser, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'mlgate_audit_%'")[0][0] == 0


def test_init_db_refuses_a_writer_that_could_act_as_owner(pg):
    code, _, err = run(["audit", "init-db", "--audit", pg.url(pg.owner), "--writer", pg.owner])
    assert code == 2 and "could disable the triggers" in err and len(err.strip().splitlines()) == 1
    _sql(pg.superuser, f'GRANT "{pg.owner}" TO "{pg.writer}"')
    code, _, err = run(["audit", "init-db", "--audit", pg.url(pg.owner), "--writer", pg.writer])
    assert code == 2 and f"is a member of the owner role {pg.owner}" in err
    _sql(pg.superuser, f'REVOKE "{pg.owner}" FROM "{pg.writer}"')
    code, _, err = run(["audit", "init-db", "--audit", pg.url(pg.owner), "--writer", "mlgate_no_such_role_x"])
    assert code == 2 and "does not exist" in err
    code, _, err = run(["audit", "init-db", "--audit", "file:audit.jsonl", "--writer", pg.writer])
    assert code == 2 and "PostgreSQL" in err


def test_single_role_setup_still_creates_its_schema(pg):
    """A development setup with one role: the sink creates the tables on first use, with the same
    triggers (its owner could still disable them: hence init-db for production)."""
    o = pg.url(pg.owner)
    _append(o, 3)
    for statement in ("TRUNCATE mlgate_audit_evidence", "DELETE FROM mlgate_audit_head", "TRUNCATE mlgate_audit_checkpoints"):
        _refused(o, statement, "append-only")
    assert _verify(o).ok
    # init-db later takes over the same tables (same owner) and grants a writer
    _init(pg)
    _append(pg.url(pg.writer), 2, tag="w")
    assert _verify(o).records == 5


# ------------------------------------------------------------------ recover-head
def _delete_head(pg):
    """What a superuser (or a pre-init-db owner) could do: triggers off, head row deleted."""
    _sql(pg.superuser, "ALTER TABLE mlgate_audit_head DISABLE TRIGGER USER", "DELETE FROM mlgate_audit_head",
         "ALTER TABLE mlgate_audit_head ENABLE TRIGGER USER")


def test_recover_head_after_a_full_verify(pg):
    _init(pg)
    w = pg.url(pg.writer)
    _append(w, 6)
    _delete_head(pg)
    with pytest.raises(AuditError, match="head row is missing.*mlgate audit recover-head"):
        _append(w, 1)
    # the writer cannot rebuild it
    code, _, err = run(["audit", "recover-head", "--audit", w])
    assert code == 2 and f"role {pg.writer} may not insert the head row" in err
    code, out, err = run(["audit", "recover-head", "--audit", pg.url(pg.owner), "--actor", "dba@hospital.example", "-o", "json"])
    assert code == 0, err
    result = json.loads(out)
    assert result["action"] == "recovered" and result["sequence"] == 7
    rec = result["record"]
    assert rec["kind"] == "recover-head" and rec["head_before"] == "missing" and rec["verified"]["records"] == 6
    assert rec["actor"] == "dba@hospital.example"
    stored = json.loads(_sql(w, "SELECT record FROM mlgate_audit_records WHERE sequence = 7")[0][0])
    assert stored == rec
    assert _sql(w, "SELECT sequence FROM mlgate_audit_head")[0][0] == 7
    assert [r.sequence for r in _append(w, 2, tag="after")] == [8, 9]
    assert _verify(pg.url(pg.reader)).ok
    code, out, _ = run(["audit", "recover-head", "--audit", pg.url(pg.owner)])
    assert code == 0 and "the head row is present (sequence 9); nothing to recover" in out


def test_recover_head_refuses_a_tampered_trail(pg):
    _init(pg)
    _append(pg.url(pg.writer), 6)
    _sql(pg.superuser, "ALTER TABLE mlgate_audit_records DISABLE TRIGGER USER",
         "UPDATE mlgate_audit_records SET record = replace(record, '\"result\":\"deny\"', '\"result\":\"allow\"') WHERE sequence = 3",
         "ALTER TABLE mlgate_audit_records ENABLE TRIGGER USER")
    _delete_head(pg)
    code, _out, err = run(["audit", "recover-head", "--audit", pg.url(pg.owner)])
    assert code == 1 and "refusing to rebuild the head: the trail is tampered: sequence 3" in err
    assert len(err.strip().splitlines()) == 1
    assert _sql(pg.superuser, "SELECT count(*) FROM mlgate_audit_head")[0][0] == 0
    assert _sql(pg.superuser, "SELECT max(sequence) FROM mlgate_audit_records")[0][0] == 6


def test_recover_head_refuses_a_cut_tail_a_checkpoint_attests(pg, keys, trust):  # noqa: F811
    _init(pg)
    _append(pg.url(pg.writer), 6)
    code, out, err = run(["audit", "checkpoint", "--audit", pg.url(pg.owner), "--key", keys["signer"], "--trust", trust])
    assert code == 0, err
    _sql(pg.superuser, "ALTER TABLE mlgate_audit_records DISABLE TRIGGER USER", "DELETE FROM mlgate_audit_records WHERE sequence > 4",
         "ALTER TABLE mlgate_audit_records ENABLE TRIGGER USER")
    _delete_head(pg)
    code, out, err = run(["audit", "recover-head", "--audit", pg.url(pg.owner), "--trust", trust])
    assert code == 1 and "refusing to rebuild the head" in err and "sequence 6" in err, err
    assert _sql(pg.superuser, "SELECT count(*) FROM mlgate_audit_head")[0][0] == 0
    # without the trust policy the stored checkpoint cannot be checked: refused too
    code, _out, err = run(["audit", "recover-head", "--audit", pg.url(pg.owner)])
    assert code == 1 and "refusing to rebuild the head" in err
