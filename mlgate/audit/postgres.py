"""The PostgreSQL backend (``postgresql://...``): one trail for several webhook replicas and CI runners.

How the chain stays single, gap-free and totally ordered under concurrent writers
-------------------------------------------------------------------------------
A one-row table ``mlgate_audit_head`` holds the last sequence and hash. Every append batch is
one transaction::

    SELECT * FROM mlgate_audit_lock_head()           -- SELECT .. FOR UPDATE: the chain's lock
    -- seal the batch: sequence+1.., prev_hash = head hash, hash = sha256(canonical JSON)
    INSERT INTO mlgate_audit_records ...              -- the sealed records
    SELECT mlgate_audit_advance_head(sequence, hash)  -- the head moves, checked against the records
    COMMIT

The row lock serialises writers (any process, any host): the second writer's lock waits until
the first commits, then reads the head the first one wrote (READ COMMITTED re-reads the locked
row's newest version). A writer that fails rolls back as a whole: no record without the head
moving, no head moving without its records, so no gaps. The table constraints are a second
line of defence: ``sequence`` is the primary key and ``prev_hash`` is unique, so even a writer
that skipped the lock could not insert a fork. Sealing happens in Python (the same
:func:`mlgate.audit.record.seal` as the file backend), so one ``verify`` serves both. Within a
process, concurrent appends share one transaction (:class:`~mlgate.audit.group.GroupCommit`),
which keeps the lock's hold time per record low.

Each record is stored as the exact canonical-JSON text that was hashed (``record``; a jsonb
column would normalise it), plus a few columns copied out of it for ``audit show`` filters.

Least privilege (``mlgate audit init-db``, :func:`init_db`)
-----------------------------------------------------------
An owner role creates the schema (:func:`schema_sql`) and owns it; the writer role that
``mlgate check`` and ``mlgate serve`` connect as gets SELECT and INSERT on the records, evidence
and checkpoints, SELECT on the head, and EXECUTE on the two SECURITY DEFINER functions above
(owned by the owner, fixed ``search_path``): no UPDATE, DELETE or TRUNCATE, and, not owning
the tables, no ALTER and no trigger control. Triggers refuse UPDATE, DELETE and TRUNCATE on
every table (the owner too, unless it disables them first; ``verify`` and signed checkpoints
catch what a superuser or owner changes that way). The head guard lets the head move only
forward over records that are all present and linked (``prev_hash`` of each the ``hash`` of the
one before, the last one's ``hash`` the new head's), never be deleted, and be inserted only at
the last record (``mlgate audit recover-head``, as the owner, after a full verify). A deferred
constraint trigger refuses to commit a record the head was not moved over, so nobody can leave
an orphan that would block every later decision; evidence rows must hash to their key.
A sink finds the schema's mark on the head table and then runs no DDL; without it, it creates
(or upgrades) the schema when its role may (a single-role development setup), else it fails
with one line naming ``mlgate audit init-db``.

A commit whose outcome is unknown (the connection dropped during COMMIT) is reported as an
error, so the decision is an error; the record may nevertheless have been written: the
trail then shows one more record than the front door reported, never one fewer.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from mlgate.audit.group import GroupCommit
from mlgate.audit.record import GENESIS_HASH, AuditOptions, AuditReceipt, prepare, seal_batch
from mlgate.canonical import record_json
from mlgate.errors import AuditError

HEAD, RECORDS, EVIDENCE = "mlgate_audit_head", "mlgate_audit_records", "mlgate_audit_evidence"
CHECKPOINTS = "mlgate_audit_checkpoints"  # signed checkpoints (mlgate.audit.checkpoint.PostgresCheckpointStore reads and writes it)
LOCK_HEAD, ADVANCE_HEAD = "mlgate_audit_lock_head", "mlgate_audit_advance_head"
# Written as the head table's comment by the DDL below; a sink that finds it runs no DDL at all.
SCHEMA_MARK = "mlgate audit schema 2: append-only, head moved only through mlgate_audit_advance_head"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def schema_sql(schema: str) -> str:
    """The whole audit schema, idempotent (``IF NOT EXISTS``, ``OR REPLACE``), for the tables in
    ``schema``: what ``mlgate audit init-db`` runs as the owner role, and what a single-role
    (development) sink runs on first use. Every function has a fixed ``search_path`` (the
    schema, then pg_temp), so no session can shadow a table the checks read."""
    path = f"{_ident(schema)}, pg_temp"
    return f"""
CREATE TABLE IF NOT EXISTS {HEAD} (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    sequence bigint NOT NULL,
    hash text NOT NULL
);
CREATE TABLE IF NOT EXISTS {RECORDS} (
    sequence bigint PRIMARY KEY CHECK (sequence > 0),
    hash text NOT NULL UNIQUE,
    prev_hash text NOT NULL UNIQUE,
    decision_id text,
    timestamp text,
    environment text,
    result text,
    subject_digest text,
    release_name text,
    release_version text,
    record text NOT NULL
);
CREATE INDEX IF NOT EXISTS {RECORDS}_subject ON {RECORDS} (subject_digest);
CREATE INDEX IF NOT EXISTS {RECORDS}_release ON {RECORDS} (release_name, release_version);
CREATE TABLE IF NOT EXISTS {EVIDENCE} (
    sha256 text PRIMARY KEY,
    size bigint NOT NULL,
    content bytea NOT NULL
);
DO $do$ BEGIN
    -- content-addressed: nobody can store other bytes under a digest before the decision that read them
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = '{EVIDENCE}_content' AND conrelid = '{EVIDENCE}'::regclass) THEN
        ALTER TABLE {EVIDENCE} ADD CONSTRAINT {EVIDENCE}_content
            CHECK (sha256 = encode(sha256(content), 'hex') AND size = length(content)) NOT VALID;
    END IF;
END $do$;

CREATE OR REPLACE FUNCTION mlgate_audit_append_only() RETURNS trigger LANGUAGE plpgsql SET search_path = {path} AS $$
BEGIN
    RAISE EXCEPTION 'mlgate audit trail is append-only: % on % refused', TG_OP, TG_TABLE_NAME;
END $$;

-- The head row: never deleted; inserted only naming the last record (genesis for an empty
-- trail: mlgate audit recover-head); updated only forward, over records that continue the chain.
CREATE OR REPLACE FUNCTION mlgate_audit_head_guard() RETURNS trigger LANGUAGE plpgsql SET search_path = {path} AS $$
DECLARE
    last_seq bigint;
    last_hash text;
    n bigint;
    broken bigint;
    end_hash text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'mlgate audit trail is append-only: DELETE on % refused (the head row is the chain''s end)', TG_TABLE_NAME;
    END IF;
    IF TG_OP = 'INSERT' THEN
        SELECT r.sequence, r.hash INTO last_seq, last_hash FROM {RECORDS} r ORDER BY r.sequence DESC LIMIT 1;
        IF last_seq IS NULL THEN
            last_seq := 0;
            last_hash := '{GENESIS_HASH}';
        END IF;
        IF NEW.sequence IS DISTINCT FROM last_seq OR NEW.hash IS DISTINCT FROM last_hash THEN
            RAISE EXCEPTION 'mlgate audit trail: a new head must name the last record (sequence %, hash %), not sequence % hash %',
                last_seq, last_hash, NEW.sequence, NEW.hash;
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.id IS DISTINCT FROM OLD.id OR NEW.sequence IS NULL OR NEW.sequence <= OLD.sequence THEN
        RAISE EXCEPTION 'mlgate audit trail: the head only moves forward: sequence % to % refused', OLD.sequence, NEW.sequence;
    END IF;
    SELECT count(*), count(*) FILTER (WHERE NOT t.linked), max(t.hash) FILTER (WHERE t.sequence = NEW.sequence)
      INTO n, broken, end_hash
      FROM (SELECT r.sequence, r.hash, r.prev_hash = coalesce(lag(r.hash) OVER (ORDER BY r.sequence), OLD.hash) AS linked
              FROM {RECORDS} r WHERE r.sequence > OLD.sequence AND r.sequence <= NEW.sequence) t;
    IF n <> NEW.sequence - OLD.sequence OR broken <> 0 OR end_hash IS DISTINCT FROM NEW.hash THEN
        RAISE EXCEPTION 'mlgate audit trail: the new head (sequence %, hash %) does not continue the chain from sequence % (hash %): % of % record(s) present, % not linked',
            NEW.sequence, NEW.hash, OLD.sequence, OLD.hash, n, NEW.sequence - OLD.sequence, broken;
    END IF;
    RETURN NEW;
END $$;

-- No record is committed beyond the head: whoever inserts records must move the head over them
-- in the same transaction (checked at commit), so nobody can leave an orphan that blocks the chain.
CREATE OR REPLACE FUNCTION mlgate_audit_covered() RETURNS trigger LANGUAGE plpgsql SET search_path = {path} AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM {HEAD} h WHERE h.id AND h.sequence >= NEW.sequence) THEN
        RAISE EXCEPTION 'mlgate audit trail: record % was inserted without moving the head over it (append through {ADVANCE_HEAD})', NEW.sequence;
    END IF;
    RETURN NULL;
END $$;

-- What a writer calls: lock the head (the chain's lock), then move it. Owned by the owner role;
-- the writer has no UPDATE on the head, so these are its only way to take the lock and move it.
CREATE OR REPLACE FUNCTION {LOCK_HEAD}(OUT head_sequence bigint, OUT head_hash text)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = {path} AS $$
BEGIN
    SELECT h.sequence, h.hash INTO head_sequence, head_hash FROM {HEAD} h WHERE h.id FOR UPDATE;
END $$;
CREATE OR REPLACE FUNCTION {ADVANCE_HEAD}(new_sequence bigint, new_hash text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = {path} AS $$
BEGIN
    -- mlgate_audit_head_guard checks that (new_sequence, new_hash) continues the chain
    UPDATE {HEAD} SET sequence = new_sequence, hash = new_hash WHERE id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'mlgate audit trail: the head row is missing (mlgate audit recover-head rebuilds it after a full verify)';
    END IF;
END $$;
REVOKE ALL ON FUNCTION {LOCK_HEAD}() FROM PUBLIC;
REVOKE ALL ON FUNCTION {ADVANCE_HEAD}(bigint, text) FROM PUBLIC;

CREATE OR REPLACE TRIGGER {HEAD}_guard BEFORE INSERT OR UPDATE OR DELETE ON {HEAD}
    FOR EACH ROW EXECUTE FUNCTION mlgate_audit_head_guard();
CREATE OR REPLACE TRIGGER {HEAD}_no_truncate BEFORE TRUNCATE ON {HEAD}
    FOR EACH STATEMENT EXECUTE FUNCTION mlgate_audit_append_only();
CREATE OR REPLACE TRIGGER {RECORDS}_append_only BEFORE UPDATE OR DELETE ON {RECORDS}
    FOR EACH ROW EXECUTE FUNCTION mlgate_audit_append_only();
CREATE OR REPLACE TRIGGER {RECORDS}_no_truncate BEFORE TRUNCATE ON {RECORDS}
    FOR EACH STATEMENT EXECUTE FUNCTION mlgate_audit_append_only();
DO $do$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = '{RECORDS}_covered' AND tgrelid = '{RECORDS}'::regclass) THEN
        CREATE CONSTRAINT TRIGGER {RECORDS}_covered AFTER INSERT ON {RECORDS} DEFERRABLE INITIALLY DEFERRED
            FOR EACH ROW EXECUTE FUNCTION mlgate_audit_covered();
    END IF;
END $do$;
CREATE OR REPLACE TRIGGER {EVIDENCE}_append_only BEFORE UPDATE OR DELETE ON {EVIDENCE}
    FOR EACH ROW EXECUTE FUNCTION mlgate_audit_append_only();
CREATE OR REPLACE TRIGGER {EVIDENCE}_no_truncate BEFORE TRUNCATE ON {EVIDENCE}
    FOR EACH STATEMENT EXECUTE FUNCTION mlgate_audit_append_only();
CREATE TABLE IF NOT EXISTS {CHECKPOINTS} (
    id bigserial PRIMARY KEY,
    sequence bigint NOT NULL,
    hash text NOT NULL,
    signed_at text NOT NULL,
    key_id text NOT NULL,
    bundle text NOT NULL UNIQUE
);
CREATE OR REPLACE TRIGGER {CHECKPOINTS}_append_only BEFORE UPDATE OR DELETE ON {CHECKPOINTS}
    FOR EACH ROW EXECUTE FUNCTION mlgate_audit_append_only();
CREATE OR REPLACE TRIGGER {CHECKPOINTS}_no_truncate BEFORE TRUNCATE ON {CHECKPOINTS}
    FOR EACH STATEMENT EXECUTE FUNCTION mlgate_audit_append_only();
-- the head of an empty trail (a trail whose head was lost keeps none: mlgate audit recover-head)
INSERT INTO {HEAD} (id, sequence, hash) SELECT true, 0, '{GENESIS_HASH}'
    WHERE NOT EXISTS (SELECT 1 FROM {HEAD}) AND NOT EXISTS (SELECT 1 FROM {RECORDS});
REVOKE ALL ON TABLE {HEAD}, {RECORDS}, {EVIDENCE}, {CHECKPOINTS} FROM PUBLIC;
COMMENT ON TABLE {HEAD} IS '{SCHEMA_MARK}';
"""


_SCHEMA_LOCK = 0x6D6C67617465  # pg_advisory_xact_lock key ("mlgate"): one schema creator at a time
# (schema mark, head table exists, current user, current schema, may create there, owns the head table)
_SCHEMA_STATE = """
SELECT obj_description(to_regclass(%s), 'pg_class'), to_regclass(%s) IS NOT NULL, current_user, current_schema(),
       current_schema() IS NOT NULL AND has_schema_privilege(current_schema(), 'CREATE'),
       coalesce((SELECT pg_has_role(current_user, c.relowner, 'USAGE') FROM pg_class c WHERE c.oid = to_regclass(%s)), false)
"""

INSERT = (f"INSERT INTO {RECORDS} (sequence, hash, prev_hash, decision_id, timestamp, environment, result, subject_digest, "
          f"release_name, release_version, record) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")

# The pool logs every failed connection attempt at WARNING; without a handler Python prints
# those to stderr, which would break the CLI's one-line errors. Applications that configure
# logging still see them through the root logger.
logging.getLogger("psycopg.pool").addHandler(logging.NullHandler())


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _row(s: dict[str, Any]) -> tuple:
    """The INSERT parameters of one sealed record."""
    release = s.get("release") if isinstance(s.get("release"), dict) else {}
    return (s["sequence"], s["hash"], s["prev_hash"], s.get("decision_id"), s.get("timestamp"), s.get("environment"),
            s.get("result"), s.get("subject_digest"), release.get("name"), release.get("version"), record_json(s).decode("utf-8"))


class PostgresEvidenceStore:
    def __init__(self, sink: "PostgresAuditSink"):
        self.sink = sink
        self._known: set[str] = set()  # digests this process stored (put_bytes skips them)

    def put(self, digest: str, source: Path, rel: str) -> None:
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise AuditError(f"cannot retain evidence {rel}: {exc.strerror or exc}", file=str(source)) from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise AuditError(f"cannot retain evidence {rel}: its sha256 is now {actual}, the decision read {digest} (changed since?)", file=str(source))
        self.sink._execute(f"INSERT INTO {EVIDENCE} (sha256, size, content) VALUES (%s, %s, %s) ON CONFLICT (sha256) DO NOTHING",
                           (digest, len(data), data), what="retain evidence")

    def put_bytes(self, digest: str, data: bytes, what: str) -> None:
        """Store ``data`` under its sha256 (the caller's) once; skipped when this process already did."""
        if digest in self._known:
            return
        self.sink._execute(f"INSERT INTO {EVIDENCE} (sha256, size, content) VALUES (%s, %s, %s) ON CONFLICT (sha256) DO NOTHING",
                           (digest, len(data), data), what=f"store the {what}")
        self._known.add(digest)

    def has(self, digest: str) -> bool:
        return bool(self.sink._query(f"SELECT 1 FROM {EVIDENCE} WHERE sha256 = %s", (digest,), what="read evidence"))

    def read(self, digest: str) -> bytes | None:
        rows = self.sink._query(f"SELECT content FROM {EVIDENCE} WHERE sha256 = %s", (digest,), what="read evidence")
        return bytes(rows[0][0]) if rows else None


class PostgresAuditSink:
    def __init__(self, dsn: str, options: AuditOptions | None = None, *, timeout: float = 5.0, max_pool: int = 4):
        from mlgate.audit.url import redact_url

        self.dsn = dsn
        self.options = options or AuditOptions()
        self.timeout = timeout
        self.max_pool = max_pool
        self.location = redact_url(dsn)
        self.evidence = PostgresEvidenceStore(self)
        self._pool = None
        self._pool_lock = threading.Lock()
        self._group = GroupCommit(self._flush)

    # -- connections ---------------------------------------------------------------------

    def _probe(self):
        """One direct connection: fails fast with the server's own reason (refused, unknown
        database, authentication), which a pool waiting for its timeout cannot tell."""
        import psycopg

        try:
            return psycopg.connect(self.dsn, autocommit=True, connect_timeout=max(1, math.ceil(self.timeout)))
        except psycopg.Error as exc:
            raise AuditError(f"cannot connect to PostgreSQL: {_reason(exc)}", file=self.location) from None
        except Exception as exc:  # noqa: BLE001 - libpq rejects a malformed URL with ProgrammingError/ValueError
            raise AuditError(f"invalid PostgreSQL URL: {_reason(exc)}", file=self.location) from None

    def _get_pool(self):
        with self._pool_lock:
            if self._pool is None:
                from psycopg_pool import ConnectionPool

                conn = self._probe()
                try:
                    self._ensure_schema(conn)
                finally:
                    conn.close()
                pool = ConnectionPool(self.dsn, min_size=1, max_size=self.max_pool, open=False, timeout=self.timeout,
                                      kwargs={"autocommit": True}, check=ConnectionPool.check_connection, name="mlgate-audit")
                pool.open(wait=False)
                self._pool = pool
            return self._pool

    def _ensure_schema(self, conn) -> None:
        """Run no DDL when the schema is in place (its mark is on the head table): the writer of a
        two-role setup has no right to create anything. Otherwise create or upgrade it when this
        role can (a single-role development setup), else fail naming ``mlgate audit init-db``."""
        import psycopg

        try:
            mark, exists, user, schema, can_create, owns = conn.execute(_SCHEMA_STATE, (HEAD, HEAD, HEAD)).fetchone()
            if mark == SCHEMA_MARK:
                return
            if schema is None:
                raise AuditError(f"cannot create the audit tables: role {user} has no schema on its search_path", file=self.location)
            if not can_create or (exists and not owns):
                what = "are from an older mlgate" if exists else "do not exist"
                raise AuditError(f"the audit tables {what} and role {user} cannot create them: run mlgate audit init-db "
                                 f"--audit postgresql://OWNER@HOST/DB --writer {user} as the role that is to own them", file=self.location)
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                conn.execute(schema_sql(schema))
        except psycopg.Error as exc:
            raise AuditError(f"cannot create the audit tables: {_reason(exc)}", file=self.location) from None

    def _run(self, fn, what: str):
        import psycopg
        import psycopg_pool

        try:
            with self._get_pool().connection(timeout=self.timeout) as conn:
                return fn(conn)
        except psycopg_pool.PoolTimeout:
            conn = self._probe()  # raises with the server's reason when it is unreachable
            conn.close()
            raise AuditError(f"cannot {what}: no PostgreSQL connection within {self.timeout:g} s", file=self.location) from None
        except psycopg.Error as exc:
            raise AuditError(f"cannot {what} in PostgreSQL: {_reason(exc)}", file=self.location) from None

    def _execute(self, sql: str, params: Sequence[Any], *, what: str) -> None:
        self._run(lambda conn: conn.execute(sql, params), what)

    def _query(self, sql: str, params: Sequence[Any], *, what: str) -> list[tuple]:
        return self._run(lambda conn: conn.execute(sql, params).fetchall(), what)

    # -- the sink ------------------------------------------------------------------------

    def append(self, record: dict[str, Any]) -> AuditReceipt:
        return self._group.submit(prepare(record, self.options, self.evidence))

    def _flush(self, records: Sequence[dict[str, Any]]) -> list[AuditReceipt]:
        def write(conn) -> list[dict[str, Any]]:
            with conn.transaction():
                with conn.cursor() as cur:
                    cur.execute(f"SELECT head_sequence, head_hash FROM {LOCK_HEAD}()")  # the chain's lock
                    row = cur.fetchone()
                    if row is None or row[0] is None:
                        raise AuditError(f"the {HEAD} row is missing: the trail's head was deleted; refusing to start a second chain "
                                         f"(mlgate audit recover-head, run as the tables' owner, rebuilds it after a full verify)", file=self.location)
                    sequence, prev_hash = int(row[0]), str(row[1])
                    results, sequence, prev_hash = seal_batch(records, sequence=sequence, prev_hash=prev_hash)
                    rows = [_row(s) for s in results if isinstance(s, dict)]  # a record that cannot be sealed fails alone
                    if rows:
                        cur.executemany(INSERT, rows)
                        cur.execute(f"SELECT {ADVANCE_HEAD}(%s, %s)", (sequence, prev_hash))
            return results

        results = self._run(write, "write the audit record")
        return [AuditReceipt(location=self.location, sequence=s["sequence"], hash=s["hash"]) if isinstance(s, dict) else s for s in results]

    # -- recovery (mlgate audit recover-head) -------------------------------------------

    def may_restore_head(self) -> tuple[str, bool]:
        """(this role, whether it may insert a head row: only the tables' owner may)."""
        rows = self._query("SELECT current_user, has_table_privilege(to_regclass(%s), 'INSERT')", (HEAD,), what="read the audit head")
        return str(rows[0][0]), bool(rows[0][1])

    def restore_head(self, verified: tuple[int, str], record: dict[str, Any]) -> dict[str, Any]:
        """One transaction: put back the head row at ``verified`` (the last record, just verified
        by the caller; the head guard checks it is the last record), then append ``record`` after
        it. Nothing changes unless both succeed."""
        def write(conn) -> dict[str, Any]:
            with conn.transaction():
                with conn.cursor() as cur:
                    cur.execute(f"LOCK TABLE {HEAD} IN SHARE ROW EXCLUSIVE MODE")  # one recovery at a time
                    cur.execute(f"SELECT sequence FROM {HEAD}")
                    if cur.fetchone() is not None:
                        raise AuditError(f"the {HEAD} row came back while the trail was verified; nothing was changed", file=self.location)
                    cur.execute(f"SELECT sequence, hash FROM {RECORDS} ORDER BY sequence DESC LIMIT 1")
                    row = cur.fetchone()
                    last = (int(row[0]), str(row[1])) if row else (0, GENESIS_HASH)
                    if last != tuple(verified):
                        raise AuditError(f"the last record changed while the trail was verified (sequence {verified[0]} verified, "
                                         f"sequence {last[0]} found); nothing was changed", file=self.location)
                    cur.execute(f"INSERT INTO {HEAD} (id, sequence, hash) VALUES (true, %s, %s)", last)
                    results, sequence, prev_hash = seal_batch([record], sequence=last[0], prev_hash=last[1])
                    if not isinstance(results[0], dict):  # pragma: no cover - our own record is always JSON
                        raise results[0]
                    cur.execute(INSERT, _row(results[0]))
                    cur.execute(f"SELECT {ADVANCE_HEAD}(%s, %s)", (sequence, prev_hash))
            return results[0]

        return self._run(write, "rebuild the audit head")

    # -- reading (verify, show, export) -------------------------------------------------

    def head(self) -> tuple[int, str] | None:
        rows = self._query(f"SELECT sequence, hash FROM {HEAD} WHERE id", (), what="read the audit head")
        return (int(rows[0][0]), str(rows[0][1])) if rows else None

    def iter_rows(self, where: str = "", params: Sequence[Any] = ()) -> Iterator[tuple[int, bytes]]:
        """(sequence column, record bytes) in sequence order, streamed with a server-side cursor."""
        import psycopg

        try:
            with self._get_pool().connection(timeout=self.timeout) as conn:
                with conn.transaction():
                    with conn.cursor(name="mlgate_audit_read") as cur:
                        cur.itersize = 20000
                        cur.execute(f"SELECT sequence, record FROM {RECORDS} {where} ORDER BY sequence", params)
                        for seq, text in cur:
                            yield int(seq), text.encode("utf-8")
        except psycopg.Error as exc:
            raise AuditError(f"cannot read the audit trail from PostgreSQL: {_reason(exc)}", file=self.location) from None

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------------------------ mlgate audit init-db
@dataclass
class InitResult:
    location: str
    owner: str
    schema: str
    writers: list[str]
    readers: list[str]
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"apiVersion": "mlgate.dev/audit-init-db-result/v1", "location": self.location, "owner": self.owner, "schema": self.schema,
                "writers": self.writers, "readers": self.readers, "writer_privileges": WRITER_PRIVILEGES, "notes": self.notes}


# What a writer may do, and nothing more (init-db checks the effective privileges afterwards).
WRITER_PRIVILEGES = {HEAD: ["SELECT"], RECORDS: ["SELECT", "INSERT"], EVIDENCE: ["SELECT", "INSERT"],
                     CHECKPOINTS: ["SELECT", "INSERT"], "functions": [f"{LOCK_HEAD}()", f"{ADVANCE_HEAD}(bigint, text)"]}
_FORBIDDEN = ("UPDATE", "DELETE", "TRUNCATE", "TRIGGER", "REFERENCES")


def init_db(dsn: str, *, writers: Sequence[str], readers: Sequence[str] = (), timeout: float = 5.0) -> InitResult:
    """Create (or upgrade) the audit schema as the role of ``dsn``, which owns it, and grant each
    writer only what appending needs and each reader only SELECT. Refuses a writer that is the
    owner, a superuser or a member of the owner role (each could disable the triggers), and
    checks the writers' effective privileges before committing."""
    import psycopg
    from psycopg import sql

    sink = PostgresAuditSink(dsn, timeout=timeout)
    if not writers:
        raise AuditError("name the writer role (--writer ROLE): the role mlgate check and mlgate serve connect as", field="--writer")
    conn = sink._probe()
    try:
        user, schema = conn.execute("SELECT current_user, current_schema()").fetchone()
        if schema is None:
            raise AuditError(f"role {user} has no schema on its search_path to create the audit tables in", file=sink.location)
        for option, roles in (("--writer", writers), ("--reader", readers)):
            for role in roles:
                row = conn.execute("SELECT rolsuper, pg_has_role(oid, (SELECT oid FROM pg_roles WHERE rolname = current_user), 'MEMBER') "
                                   "FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
                if row is None:
                    raise AuditError(f"role {role!r} does not exist (create it first, e.g. CREATE ROLE \"{role}\" LOGIN)", field=option)
                if option == "--writer" and (role == user or row[0] or row[1]):
                    why = ("is the role this command runs as, which owns the tables" if role == user else
                           "is a superuser, which bypasses every privilege and trigger" if row[0] else f"is a member of the owner role {user}")
                    raise AuditError(f"the writer {role!r} {why}: it could disable the triggers and rewrite the trail; "
                                     f"use a separate role that only logs in", field=option)
        tables = sql.SQL(", ").join(sql.Identifier(t) for t in (HEAD, RECORDS, EVIDENCE, CHECKPOINTS))
        functions = sql.SQL(f"FUNCTION {LOCK_HEAD}(), {ADVANCE_HEAD}(bigint, text)")
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            conn.execute(schema_sql(schema))
            seq = conn.execute("SELECT pg_get_serial_sequence(%s, 'id')", (CHECKPOINTS,)).fetchone()[0]
            seq_sql = sql.SQL(seq)  # already quoted by the server
            for role in {*writers, *readers}:
                r = sql.Identifier(role)
                for st in ("REVOKE ALL ON TABLE {t} FROM {r}", "REVOKE ALL ON {f} FROM {r}", "REVOKE ALL ON SEQUENCE {s} FROM {r}",
                           "GRANT USAGE ON SCHEMA {n} TO {r}", "GRANT SELECT ON TABLE {t} TO {r}"):
                    conn.execute(sql.SQL(st).format(t=tables, f=functions, s=seq_sql, n=sql.Identifier(schema), r=r))
            for role in writers:
                r = sql.Identifier(role)
                for st in ("GRANT INSERT ON TABLE {rec}, {ev}, {cp} TO {r}", "GRANT USAGE ON SEQUENCE {s} TO {r}", "GRANT EXECUTE ON {f} TO {r}"):
                    conn.execute(sql.SQL(st).format(rec=sql.Identifier(RECORDS), ev=sql.Identifier(EVIDENCE), cp=sql.Identifier(CHECKPOINTS),
                                                    s=seq_sql, f=functions, r=r))
            for role in writers:  # the effective privileges, roles it belongs to and PUBLIC included
                for table in (HEAD, RECORDS, EVIDENCE, CHECKPOINTS):
                    for priv in _FORBIDDEN + (() if table != HEAD else ("INSERT",)):
                        if conn.execute("SELECT has_table_privilege(%s, to_regclass(%s), %s)", (role, table, priv)).fetchone()[0]:
                            raise AuditError(f"the writer {role!r} still holds {priv} on {table} (granted to a role it belongs to, or to "
                                             f"PUBLIC): revoke it there first; nothing was changed", field="--writer")
        notes = []
        for role in writers:
            if conn.execute("SELECT has_schema_privilege(%s, %s, 'CREATE')", (role, schema)).fetchone()[0]:
                notes.append(f"the writer {role!r} may create objects in schema {schema} (mlgate does not need it: "
                             f"REVOKE CREATE ON SCHEMA {schema} FROM PUBLIC, or from the role)")
        return InitResult(sink.location, str(user), str(schema), list(writers), list(readers), notes)
    except psycopg.Error as exc:
        raise AuditError(f"cannot create the audit tables: {_reason(exc)}", file=sink.location) from None
    finally:
        conn.close()
