"""Reading an audit trail back: its records (file lines or PostgreSQL rows), parsed, with where
each lies, and the result a verification reports. Used by ``mlgate audit verify``
(:mod:`mlgate.audit.verify`) and by the checkpoints (:mod:`mlgate.audit.checkpoint`), so
neither imports the other's reading code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field as _field
from pathlib import Path
from typing import Any, Iterator

from mlgate.audit.record import GENESIS_HASH
from mlgate.errors import AuditError

try:  # a C JSON parser about twice as fast as the standard library's on these lines
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - orjson is a declared dependency
    _fast_loads = None


def _reject_constant(value: str) -> Any:
    raise ValueError(f"non-standard JSON constant {value}")


def parse_record(raw: bytes) -> Any:
    """Parse one record; ValueError if it is not JSON."""
    if _fast_loads is not None:
        try:
            return _fast_loads(raw)
        except ValueError:
            pass  # e.g. an integer beyond 64 bits: let the standard parser decide
    return json.loads(raw, parse_constant=_reject_constant)


# -- trails ------------------------------------------------------------------------------


class FileTrail:
    """A file trail opened for reading: items are (where, raw line, complete?, row key None)."""

    kind = "file"

    def __init__(self, path: Path):
        self.path = Path(path)
        self.location = f"file:{self.path}"
        from mlgate.audit.file import FileEvidenceStore

        self.evidence = FileEvidenceStore(self.path.parent / "evidence")

    def check_readable(self) -> None:
        try:
            with open(self.path, "rb"):
                pass
        except FileNotFoundError:
            raise AuditError("cannot read the audit log: no such file", file=str(self.path)) from None
        except IsADirectoryError:
            raise AuditError("cannot read the audit log: it is a directory", file=str(self.path)) from None
        except OSError as exc:
            raise AuditError(f"cannot read the audit log: {exc.strerror or exc}", file=str(self.path)) from None

    def items(self) -> Iterator[tuple[str, bytes, bool, int | None]]:
        from mlgate.audit.file import iter_lines

        self.check_readable()
        try:
            for number, raw, complete in iter_lines(self.path):
                yield f"line {number}", raw, complete, None
        except OSError as exc:
            raise AuditError(f"cannot read the audit log: {exc.strerror or exc}", file=str(self.path)) from None

    def head(self) -> tuple[int, str] | None:
        from mlgate.audit.file import head_path, read_head

        try:
            return read_head(self.path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{head_path(self.path)} is unreadable ({exc})") from None

    def close(self) -> None:
        pass


class PostgresTrail:
    kind = "postgresql"

    def __init__(self, dsn: str, timeout: float = 5.0):
        from mlgate.audit.postgres import PostgresAuditSink

        self.sink = PostgresAuditSink(dsn, timeout=timeout)
        self.location = self.sink.location
        self.evidence = self.sink.evidence

    def check_readable(self) -> None:
        self.sink.head()

    def items(self) -> Iterator[tuple[str, bytes, bool, int | None]]:
        for seq, raw in self.sink.iter_rows():
            yield f"row {seq}", raw, True, seq

    def head(self) -> tuple[int, str] | None:
        return self.sink.head()

    def close(self) -> None:
        self.sink.close()


def open_trail(url: str, *, timeout: float = 5.0):
    from mlgate.audit.url import parse_audit_url

    target = parse_audit_url(url)
    if target.kind == "file":
        return FileTrail(target.path)
    return PostgresTrail(target.dsn, timeout=timeout)


def iter_records(trail) -> Iterator[tuple[str, bytes, dict[str, Any]]]:
    """Every whole record (where, raw bytes, parsed), for show and export. A torn last line
    is skipped (``verify`` reports it); any other unparsable record is an error."""
    for where, raw, complete, _key in trail.items():
        if not complete:
            return
        try:
            rec = parse_record(raw)
        except ValueError:
            rec = None
        if not isinstance(rec, dict):
            raise AuditError(f"{where} is not a valid audit record (run mlgate audit verify)", file=trail.location)
        yield where, raw, rec


# -- verify ------------------------------------------------------------------------------


@dataclass
class VerifyResult:
    location: str
    status: str  # intact | tampered | truncated | torn | unreadable | unverifiable (checkpoints, no signers trusted)
    records: int = 0  # records that verify, from the first
    head_sequence: int = 0
    head_hash: str = GENESIS_HASH
    problem: str | None = None
    sequence: int | None = None
    where: str | None = None
    field: str | None = None
    expected: Any = None
    found: Any = None
    notes: list[str] = _field(default_factory=list)
    checkpoints: list[dict[str, Any]] | None = None  # None: not checked (see mlgate.audit.checkpoint)

    @property
    def ok(self) -> bool:
        return self.status == "intact"

    @property
    def exit_code(self) -> int:
        return {"intact": 0, "unreadable": 2, "unverifiable": 2}.get(self.status, 1)

    def as_dict(self) -> dict[str, Any]:
        out = {"apiVersion": "mlgate.dev/audit-verify/v1", "location": self.location, "status": self.status, "intact": self.ok,
               "records_verified": self.records, "head": {"sequence": self.head_sequence, "hash": self.head_hash},
               "problem": self.problem, "sequence": self.sequence, "where": self.where, "field": self.field,
               "expected": self.expected, "found": self.found, "notes": self.notes}
        if self.checkpoints is not None:
            out["checkpoints"] = self.checkpoints
        return out


def _fail(result: VerifyResult, status: str, problem: str, **kw: Any) -> VerifyResult:
    result.status, result.problem = status, problem
    for k, v in kw.items():
        setattr(result, k, v)
    return result
