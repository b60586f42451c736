"""The audit trail: append-only, hash-chained decision records (design.md section 8).

Each record is one line of canonical JSON. ``hash`` is the sha256 of the canonical JSON of the
record without ``hash``; ``prev_hash`` is the previous record's ``hash`` (64 zeros for the
first), ``sequence`` counts from 1. Editing, deleting or reordering a record breaks the chain.

Writers serialise on an exclusive ``flock`` of the log file, read the tail under the lock,
append, flush and fsync before the lock is released: two CI jobs on one runner cannot fork the
chain. A log whose last line is torn (a crash mid-write) is not appended to: the write fails,
so the decision fails closed, and nothing already recorded is touched.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mlgate.canonical import canonical_json, sha256_hex
from mlgate.errors import AuditError

RECORD_VERSION = "mlgate.dev/audit/v1"
GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class AuditReceipt:
    location: str
    sequence: int
    hash: str


class AuditSink(Protocol):
    def append(self, record: dict[str, Any]) -> AuditReceipt:
        """Chain and durably store ``record``; raise AuditError if it cannot."""
        ...


def decision_record(decision: Any, request: Any) -> dict[str, Any]:
    """The audit record of one decision (design.md section 8), before chaining.

    Digests only: no keys, no signatures, no evidence contents."""
    from mlgate import __version__
    from mlgate.clock import rfc3339

    return {
        "decision_id": decision.decision_id,
        "timestamp": rfc3339(decision.evaluated_at),
        "actor": request.user,
        "action": request.operation,
        "source": request.source,
        "namespace": request.namespace,
        "dry_run": request.dry_run,
        "release": decision.release,
        "subject_digest": decision.model_digest,
        "environment": decision.environment,
        "policy_revision": decision.policy_revision,
        "engine": decision.engine,
        "engine_version": decision.engine_version,
        "mlgate_version": __version__,
        "input_digest": decision.input_digest,
        "evidence_digests": decision.evidence_digests,
        "result": decision.result,
        "violations": [{"id": v.id, "message": v.message} for v in decision.violations],
        "warnings": [{"id": w.id, "message": w.message} for w in decision.warnings],
        "error": decision.error,
    }


def seal(record: dict[str, Any], *, sequence: int, prev_hash: str) -> dict[str, Any]:
    body = {k: v for k, v in record.items() if k != "hash"}
    body.update(apiVersion=RECORD_VERSION, sequence=sequence, prev_hash=prev_hash)
    body["hash"] = sha256_hex(canonical_json(body))
    return body


def _last_line(fh) -> bytes | None:
    """The last line of an open binary file (with its newline, if any), read backwards from the end."""
    end = fh.seek(0, os.SEEK_END)
    if end == 0:
        return None
    pos, tail = end, b""
    while pos > 0:
        step = min(65536, pos)
        pos -= step
        fh.seek(pos)
        tail = fh.read(step) + tail
        newline = tail.endswith(b"\n")
        body = tail[:-1] if newline else tail
        if b"\n" in body:
            return body[body.rindex(b"\n") + 1 :] + (b"\n" if newline else b"")
    return tail


class FileAuditSink:
    def __init__(self, path: Path | str):
        self.path = Path(path)

    def append(self, record: dict[str, Any]) -> AuditReceipt:
        name = str(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o640)
        except OSError as exc:
            raise AuditError(f"cannot open the audit log: {exc.strerror or exc}", file=name) from None
        try:
            with os.fdopen(fd, "r+b", buffering=0) as fh:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
                sequence, prev_hash = self._tail(fh, name)
                sealed = seal(record, sequence=sequence + 1, prev_hash=prev_hash)
                line = canonical_json(sealed) + b"\n"
                fh.seek(0, os.SEEK_END)
                written = 0
                while written < len(line):
                    written += fh.write(line[written:])
                os.fsync(fh.fileno())
            if created:
                dir_fd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        except AuditError:
            raise
        except OSError as exc:
            raise AuditError(f"cannot write the audit record: {exc.strerror or exc}", file=name) from None
        return AuditReceipt(location=name, sequence=sealed["sequence"], hash=sealed["hash"])

    @staticmethod
    def _tail(fh, name: str) -> tuple[int, str]:
        last = _last_line(fh)
        if last is None:
            return 0, GENESIS_HASH
        if not last.endswith(b"\n"):
            raise AuditError("the audit log ends with a torn record (a crash mid-write?); refusing to append until it is repaired", file=name)
        try:
            prev = json.loads(last)
            return int(prev["sequence"]), str(prev["hash"])
        except (ValueError, KeyError, TypeError):
            raise AuditError("the last audit record is not a valid mlgate record; refusing to extend a broken chain", file=name) from None
