"""The PostgreSQL backend (``postgresql://...``): one trail for several webhook replicas and CI runners.

How the chain stays single, gap-free and totally ordered under concurrent writers
-------------------------------------------------------------------------------
A one-row table ``mlgate_audit_head`` holds the last sequence and hash. Every append batch is
one transaction::

    SELECT sequence, hash FROM mlgate_audit_head WHERE id FOR UPDATE   -- the chain's lock
    -- seal the batch: sequence+1.., prev_hash = head hash, hash = sha256(canonical JSON)
    INSERT INTO mlgate_audit_records ...                                -- the sealed records
    UPDATE mlgate_audit_head SET sequence = .., hash = ..
    COMMIT

The row lock serialises writers (any process, any host): the second writer's ``SELECT ... FOR
UPDATE`` waits until the first commits, then reads the head the first one wrote (READ
COMMITTED re-reads the locked row's newest version). A writer that fails rolls back as a whole:
no record without the head moving, no head moving without its records, so no gaps. The table
constraints are a second line of defence: ``sequence`` is the primary key and ``prev_hash`` is
unique, so even a writer that skipped the lock could not insert a fork. Sealing happens in
Python (the same :func:`mlgate.audit.record.seal` as the file backend), so one ``verify``
serves both. Within a process, concurrent appends share one transaction
(:class:`~mlgate.audit.group.GroupCommit`), which keeps the lock's hold time per record low.

Each record is stored as the exact canonical-JSON text that was hashed (``record``; a jsonb
column would normalise it), plus a few columns copied out of it for ``audit show`` filters.
Triggers refuse UPDATE, DELETE and TRUNCATE of records: the trail is append-only for
everyone but a superuser who drops the trigger, and ``verify`` catches what they change.

A commit whose outcome is unknown (the connection dropped during COMMIT) is reported as an
error, so the decision is an error; the record may nevertheless have been written: the
trail then shows one more record than the front door reported, never one fewer.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

from mlgate.audit.group import GroupCommit
from mlgate.audit.record import GENESIS_HASH, AuditOptions, AuditReceipt, prepare, seal_batch
from mlgate.canonical import record_json
from mlgate.errors import AuditError

HEAD, RECORDS, EVIDENCE = "mlgate_audit_head", "mlgate_audit_records", "mlgate_audit_evidence"

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {HEAD} (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    sequence bigint NOT NULL,
    hash text NOT NULL
);
INSERT INTO {HEAD} (id, sequence, hash) VALUES (true, 0, '{GENESIS_HASH}') ON CONFLICT DO NOTHING;
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
CREATE OR REPLACE FUNCTION mlgate_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'mlgate audit trail is append-only: % on % refused', TG_OP, TG_TABLE_NAME;
END $$;
CREATE OR REPLACE TRIGGER {RECORDS}_append_only BEFORE UPDATE OR DELETE ON {RECORDS}
    FOR EACH ROW EXECUTE FUNCTION mlgate_audit_append_only();
CREATE OR REPLACE TRIGGER {RECORDS}_no_truncate BEFORE TRUNCATE ON {RECORDS}
    FOR EACH STATEMENT EXECUTE FUNCTION mlgate_audit_append_only();
CREATE OR REPLACE TRIGGER {EVIDENCE}_append_only BEFORE UPDATE OR DELETE ON {EVIDENCE}
    FOR EACH ROW EXECUTE FUNCTION mlgate_audit_append_only();
"""
_SCHEMA_LOCK = 0x6D6C67617465  # pg_advisory_xact_lock key ("mlgate"): one schema creator at a time

INSERT = (f"INSERT INTO {RECORDS} (sequence, hash, prev_hash, decision_id, timestamp, environment, result, subject_digest, "
          f"release_name, release_version, record) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")

# The pool logs every failed connection attempt at WARNING; without a handler Python prints
# those to stderr, which would break the CLI's one-line errors. Applications that configure
# logging still see them through the root logger.
logging.getLogger("psycopg.pool").addHandler(logging.NullHandler())


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class PostgresEvidenceStore:
    def __init__(self, sink: "PostgresAuditSink"):
        self.sink = sink

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
        import psycopg

        try:
            row = conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname = %s", (f"{EVIDENCE}_append_only",)).fetchone()
            if row and row[0]:
                return
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                conn.execute(SCHEMA)
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
                    cur.execute(f"SELECT sequence, hash FROM {HEAD} WHERE id FOR UPDATE")
                    row = cur.fetchone()
                    if row is None:
                        raise AuditError(f"the {HEAD} row is missing: the trail's head was deleted; refusing to start a second chain", file=self.location)
                    sequence, prev_hash = int(row[0]), str(row[1])
                    results, sequence, prev_hash = seal_batch(records, sequence=sequence, prev_hash=prev_hash)
                    rows = []
                    for s in results:
                        if not isinstance(s, dict):  # a record that cannot be sealed fails alone
                            continue
                        release = s.get("release") if isinstance(s.get("release"), dict) else {}
                        rows.append((s["sequence"], s["hash"], s["prev_hash"], s.get("decision_id"), s.get("timestamp"), s.get("environment"),
                                     s.get("result"), s.get("subject_digest"), release.get("name"), release.get("version"),
                                     record_json(s).decode("utf-8")))
                    if rows:
                        cur.executemany(INSERT, rows)
                        cur.execute(f"UPDATE {HEAD} SET sequence = %s, hash = %s WHERE id", (sequence, prev_hash))
            return results

        results = self._run(write, "write the audit record")
        return [AuditReceipt(location=self.location, sequence=s["sequence"], hash=s["hash"]) if isinstance(s, dict) else s for s in results]

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
