"""Recovery that leaves a trace: ``mlgate audit repair`` and ``mlgate audit recover-head`` (file trails).

Both run under the log's exclusive lock (writers wait), verify first, refuse when the
verification fails before the part they mend, and end by appending a record to the chain
that says what they did. Neither rewrites a record, so neither can hide one.

``repair`` -- a torn last line (a crash mid-write: bytes without an end of line, which stops
every later decision). Every whole record must verify, the head must not lie beyond them
(else records were cut: tampering, not a crash), and every signed checkpoint found must hold.
The fragment is then copied to ``PATH.torn-<sequence>-<sha256 prefix>`` beside the log
(fsync'd), cut off the log, and a ``kind: repair`` record is appended naming the quarantine
file, the fragment's sha256, size and byte offset, and the last verified record.

``recover-head`` -- the head file (``PATH.head``) deleted or unreadable, so a truncated tail
could no longer be detected. The whole trail must verify as ``mlgate audit verify`` does
(chain, and every signed checkpoint against the trust policy); the head is then rebuilt by
appending a ``kind: recover-head`` record (what the head was, the verified sequence and hash),
which writes the head at the new record. A head that is present and readable is left alone.

``recover-head`` for PostgreSQL -- the head row (``mlgate_audit_head``) deleted, which stops every
decision ("head row is missing"). Only the tables' owner may insert a head row (the writer of
``mlgate audit init-db`` cannot), so it runs as the owner. The whole trail must verify without
a head (chain, and every signed checkpoint); then, in one transaction, the head row is put back
at the last verified record (the head guard checks it is the last record, and no record can be
committed while the head is missing) and a ``kind: recover-head`` record is appended after it.

Refusals raise :class:`RepairRefused` (exit 1): a tampered, truncated or contradicted trail is
for ``mlgate audit verify`` and a person, never for a tool that would extend it.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mlgate.audit.file import _fsync_dir, append_locked, head_path, read_head
from mlgate.audit.trail import FileTrail
from mlgate.errors import AuditError


class RepairRefused(AuditError):
    """The trail does not verify before the part to mend: nothing was changed."""


@dataclass
class RepairResult:
    location: str
    action: str  # repaired | recovered | nothing
    message: str
    sequence: int | None = None  # the sequence of the record that says what was done
    hash: str | None = None
    record: dict[str, Any] | None = None
    quarantine: str | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"apiVersion": "mlgate.dev/audit-repair-result/v1", "location": self.location, "action": self.action,
                "message": self.message, "sequence": self.sequence, "hash": self.hash, "quarantine": self.quarantine,
                "record": self.record, "notes": self.notes}


def _actor(actor: str | None) -> str:
    if actor:
        return actor
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in this environment (a container with an unknown uid)
        return f"uid:{os.getuid()}"


def _locked(path: Path):
    """The log opened read-write and locked exclusively, as writers lock it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise AuditError("cannot open the audit log: no such file", file=str(path)) from None
    except OSError as exc:
        raise AuditError(f"cannot open the audit log: {exc.strerror or exc}", file=str(path)) from None
    fh = os.fdopen(fd, "r+b", buffering=0)
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
    return fh


def _verify(path: Path, checkpoints: Any):
    from mlgate.audit.verify import verify_trail

    return verify_trail(FileTrail(path), checkpoints=checkpoints)


def _checkpoint_problem(result) -> str | None:
    """The first signed checkpoint that does not hold, for a trail whose chain was verified up to
    ``result.records`` (``verify`` itself only fails on them when the whole chain verified)."""
    for cp in result.checkpoints or []:
        if cp.get("status") != "ok":
            where = f"sequence {cp['sequence']}" if cp.get("sequence") is not None else cp.get("where")
            reason = cp.get("reason") or cp.get("status")
            if cp.get("status") == "unchecked":
                reason = f"it attests sequence {cp['sequence']}, beyond the {result.records} record(s) that verify: records were cut"
            return f"checkpoint {where}: {reason}"
    return None


def _event(kind: str, *, now, ids: Callable[[], str], actor: str | None, **fields: Any) -> dict[str, Any]:
    from mlgate import __version__
    from mlgate.clock import rfc3339

    return {"kind": kind, "event_id": ids(), "timestamp": rfc3339(now), "actor": _actor(actor), "action": kind, "source": "cli",
            "mlgate_version": __version__, **fields}


def repair_torn(path: Path | str, *, now, ids: Callable[[], str], actor: str | None = None, checkpoints: Any = None) -> RepairResult:
    """Move a torn last line aside and record that (see the module docstring)."""
    path = Path(path)
    with _locked(path) as fh:
        result = _verify(path, checkpoints)
        if result.status == "unreadable":
            raise AuditError(result.problem or "cannot read the audit log", file=str(path))
        if result.status != "torn":
            if result.ok:
                return RepairResult(str(path), "nothing", f"the audit log has no torn line: {result.records} record(s) verify; nothing to repair")
            raise RepairRefused(f"refusing to repair: the trail is {result.status} before its end: {result.problem}", file=str(path))
        problem = _checkpoint_problem(result)
        if problem is not None:
            raise RepairRefused(f"refusing to repair: {problem}", file=str(path))
        verified = result.records
        # _walk stops at the torn line without comparing the head: a head beyond the whole
        # records means whole records were cut, and the "torn" fragment may be what is left of one.
        try:
            head = read_head(path)
        except (OSError, ValueError, KeyError, TypeError):
            head = None
            result.notes.append(f"{head_path(path)} is unreadable; it is rewritten by the repair record")
        if head is not None and head[0] > verified:
            raise RepairRefused(f"refusing to repair: the head records sequence {head[0]} but only {verified} whole record(s) "
                                f"verify: records were cut from the end, not torn by a crash", file=str(path))
        size = os.fstat(fh.fileno()).st_size
        fragment = _fragment(fh, size)
        offset = size - len(fragment)
        digest = hashlib.sha256(fragment).hexdigest()
        quarantine = path.with_name(f"{path.name}.torn-{verified + 1}-{digest[:16]}")
        _write_new(quarantine, fragment)
        prev_hash = _chain_end(fh, offset, verified, path)  # verify stops at the torn line before noting the last hash
        try:
            os.ftruncate(fh.fileno(), offset)
            os.fsync(fh.fileno())
        except OSError as exc:
            raise AuditError(f"cannot cut the torn line off the log: {exc.strerror or exc} (its copy is in {quarantine})", file=str(path)) from None
        record = _event("repair", now=now, ids=ids, actor=actor,
                        reason=f"a torn last line ({len(fragment)} bytes without an end of line) was moved out of the log",
                        quarantine={"file": quarantine.name, "sha256": digest, "bytes": len(fragment), "offset": offset,
                                    "line": verified + 1},
                        verified={"records": verified, "hash": prev_hash})
        sealed = _append(fh, path, record, verified, prev_hash)
    return RepairResult(str(path), "repaired",
                        f"moved the torn line ({len(fragment)} bytes, sha256 {digest}) to {quarantine} and recorded it as sequence {sealed['sequence']}",
                        sequence=sealed["sequence"], hash=sealed["hash"], record=sealed, quarantine=str(quarantine), notes=result.notes)


def recover_head(path: Path | str, *, now, ids: Callable[[], str], actor: str | None = None, checkpoints: Any = None) -> RepairResult:
    """Rebuild a lost or unreadable head file after a full verify, and record that."""
    path = Path(path)
    hp = head_path(path)
    with _locked(path) as fh:
        try:
            head = read_head(path)
            before = "missing" if head is None else None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            head, before = None, f"unreadable ({type(exc).__name__}: {' '.join(str(exc).split())})"
        if before is None:
            return RepairResult(str(path), "nothing", f"the head file {hp} is present (sequence {head[0]}); nothing to recover")
        if before != "missing":  # verify an unreadable head as a missing one (verify would only note it)
            try:
                hp.replace(hp.with_name(f"{hp.name}.unreadable-{ids()}"))
            except OSError as exc:
                raise AuditError(f"cannot move the unreadable head file aside: {exc.strerror or exc}", file=str(hp)) from None
        result = _verify(path, checkpoints)
        if result.status == "unreadable":
            raise AuditError(result.problem or "cannot read the audit log", file=str(path))
        if not result.ok:
            raise RepairRefused(f"refusing to rebuild the head: the trail is {result.status}: {result.problem}", file=str(path))
        record = _event("recover-head", now=now, ids=ids, actor=actor,
                        reason=f"the head file was {before}; rebuilt after the whole trail verified",
                        head_before=before, verified={"records": result.records, "hash": result.head_hash},
                        checkpoints=sum(1 for cp in result.checkpoints or [] if cp.get("status") == "ok"))
        sealed = _append(fh, path, record, result.records, result.head_hash)
    notes = [n for n in result.notes if "head file" not in n]
    return RepairResult(str(path), "recovered",
                        f"rebuilt the head file {hp} after {result.records} record(s) verified; recorded as sequence {sealed['sequence']}",
                        sequence=sealed["sequence"], hash=sealed["hash"], record=sealed, notes=notes)


def recover_head_pg(dsn: str, *, now, ids: Callable[[], str], actor: str | None = None, checkpoints: Any = None) -> RepairResult:
    """Rebuild a deleted head row of a PostgreSQL trail after a full verify, and record that."""
    from mlgate.audit.trail import PostgresTrail

    trail = PostgresTrail(dsn)
    try:
        location = trail.location
        head = trail.head()
        if head is not None:
            return RepairResult(location, "nothing", f"the head row is present (sequence {head[0]}); nothing to recover")
        user, allowed = trail.sink.may_restore_head()
        if not allowed:
            raise AuditError(f"role {user} may not insert the head row: run mlgate audit recover-head as the role that owns the audit "
                             f"tables (the one mlgate audit init-db ran as)", file=location)
        result = _verify_headless(trail, checkpoints)
        if result.status == "unreadable":
            raise AuditError(result.problem or "cannot read the audit trail", file=location)
        if not result.ok:
            raise RepairRefused(f"refusing to rebuild the head: the trail is {result.status}: {result.problem}", file=location)
        record = _event("recover-head", now=now, ids=ids, actor=actor,
                        reason="the head row was missing; rebuilt after the whole trail verified",
                        head_before="missing", verified={"records": result.records, "hash": result.head_hash},
                        checkpoints=sum(1 for cp in result.checkpoints or [] if cp.get("status") == "ok"))
        sealed = trail.sink.restore_head((result.records, result.head_hash), record)
    finally:
        trail.close()
    notes = [n for n in result.notes if "head" not in n]
    return RepairResult(location, "recovered",
                        f"rebuilt the head row of {location} after {result.records} record(s) verified; recorded as sequence {sealed['sequence']}",
                        sequence=sealed["sequence"], hash=sealed["hash"], record=sealed, notes=notes)


def _verify_headless(trail: Any, checkpoints: Any):
    """``verify_trail`` for a trail whose head is gone: the whole chain, then every checkpoint."""
    from mlgate.audit.verify import VerifyResult, _fail, _walk

    result = VerifyResult(location=trail.location, status="intact")
    try:
        _walk(trail, trail.items(), result, None)
    except AuditError as exc:
        return _fail(result, "unreadable", exc.diagnostics())
    if checkpoints is not None:
        from mlgate.audit.checkpoint import check_checkpoints

        check_checkpoints(trail, result, checkpoints)
    return result


def _append(fh, path: Path, record: dict[str, Any], sequence: int, prev_hash: str) -> dict[str, Any]:
    [sealed], _, _, _ = append_locked(fh, path, [record], sequence, prev_hash)
    if isinstance(sealed, BaseException):  # pragma: no cover - our own record is always JSON
        raise sealed
    return sealed


def _fragment(fh, size: int) -> bytes:
    """The bytes after the last end of line (the torn record)."""
    pos, tail = size, b""
    while pos > 0:
        step = min(1 << 16, pos)
        pos -= step
        fh.seek(pos)
        tail = fh.read(step) + tail
        if b"\n" in tail:
            return tail[tail.rindex(b"\n") + 1 :]
    return tail


def _chain_end(fh, offset: int, verified: int, path: Path) -> str:
    """The hash of the last whole record, which ends just before ``offset`` (GENESIS when none)."""
    from mlgate.audit.record import GENESIS_HASH
    from mlgate.audit.trail import parse_record

    if verified == 0:
        return GENESIS_HASH
    end = pos = offset - 1  # the last record's end of line
    tail = b""
    while pos > 0 and b"\n" not in tail:
        pos = max(0, pos - (1 << 16))
        fh.seek(pos)
        tail = fh.read(end - pos)
    line = tail.rsplit(b"\n", 1)[-1]
    rec = parse_record(line)
    if not isinstance(rec, dict) or rec.get("sequence") != verified or not isinstance(rec.get("hash"), str):  # pragma: no cover - verified just now
        raise AuditError("the last whole record changed while repairing", file=str(path))
    return rec["hash"]


def _write_new(target: Path, data: bytes) -> None:
    """Write ``data`` to a new file ``target`` durably; never overwrite an existing one."""
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
    except FileExistsError:
        if target.read_bytes() == data:  # the same fragment quarantined by an earlier, interrupted repair
            return
        raise AuditError("a different quarantine file of that name already exists", file=str(target)) from None
    except OSError as exc:
        raise AuditError(f"cannot write the quarantine file: {exc.strerror or exc}", file=str(target)) from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        _fsync_dir(target.parent)
    except OSError as exc:
        raise AuditError(f"cannot write the quarantine file: {exc.strerror or exc}", file=str(target)) from None
