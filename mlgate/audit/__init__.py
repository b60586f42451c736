"""The audit trail: append-only, hash-chained decision records (design.md section 8).

One :class:`AuditSink` protocol, two backends chosen by a URL (:func:`open_sink`):

* ``file:PATH`` (default ``file:.mlgate/audit.jsonl``; a bare path means the same): JSONL,
  fsync'd, group commit (:mod:`mlgate.audit.file`).
* ``postgresql://...`` (or ``postgres://``): one trail shared by several webhook replicas and
  CI runners, psycopg 3 with a connection pool (:mod:`mlgate.audit.postgres`).

Modules: :mod:`~mlgate.audit.record` (the record format ``mlgate.dev/audit/v1``, sealing),
:mod:`~mlgate.audit.url` (audit URLs), :mod:`~mlgate.audit.file` and :mod:`~mlgate.audit.postgres`
(the sinks), :mod:`~mlgate.audit.group` (group commit), :mod:`~mlgate.audit.trail` (reading a
trail back), :mod:`~mlgate.audit.verify` (``mlgate audit verify``), :mod:`~mlgate.audit.checkpoint`
(checkpoint format, stores, checks), :mod:`~mlgate.audit.anchor` (``mlgate audit checkpoint``:
sign the verified head), :mod:`~mlgate.audit.export` (``mlgate audit export``). Heavy modules
(psycopg, GitPython) are imported only when a backend or option needs them.

May import: the basics (errors, safeio, canonical, clock), :mod:`mlgate.signing` (checkpoint
signatures) and :mod:`mlgate.policy` (the policy's git facts). Never the gate, the input
document, the stores or the front doors: the gate hands a sink a finished record. Modules
inside this package import each other directly, never through this ``__init__``.
"""

from __future__ import annotations

from typing import Any

from mlgate.audit.file import FileAuditSink, FileEvidenceStore
from mlgate.audit.record import (
    GENESIS_HASH,
    INPUT_MODES,
    RECORD_VERSION,
    AuditOptions,
    AuditReceipt,
    AuditSink,
    DecisionRecord,
    UnsealableRecord,
    decision_record,
    seal,
)
from mlgate.audit.url import DEFAULT_AUDIT_URL, AuditTarget, parse_audit_url, redact_url
from mlgate.errors import AuditError

__all__ = [
    "GENESIS_HASH", "INPUT_MODES", "RECORD_VERSION", "AuditOptions", "AuditReceipt", "AuditSink", "DecisionRecord", "UnsealableRecord",
    "FileAuditSink", "FileEvidenceStore", "decision_record", "seal", "AuditTarget", "parse_audit_url", "open_sink",
    "redact_url", "DEFAULT_AUDIT_URL",
]


def open_sink(url: str, options: AuditOptions | None = None, **backend: Any):
    """The sink for an audit URL. Close it when done (``with open_sink(...) as sink``)."""
    if options is not None and options.input_mode not in INPUT_MODES:
        raise AuditError(f"input mode {options.input_mode!r} is not one of {', '.join(INPUT_MODES)}", field="input_mode")
    target = parse_audit_url(url)
    if target.kind == "file":
        return FileAuditSink(target.path, options)
    from mlgate.audit.postgres import PostgresAuditSink

    return PostgresAuditSink(target.dsn, options, **backend)
