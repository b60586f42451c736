"""The file backend (``file:PATH``): JSONL, one canonical-JSON record per line, fsync'd.

One chain across processes and threads:

* Across processes, writers serialise on an exclusive ``flock`` of the log file; under the lock
  they read the tail (the last line: its ``sequence`` and ``hash``), seal, append, fsync, and
  only then release it. Two CI jobs on one runner cannot fork the chain.
* Within a process, appends go through :class:`~mlgate.audit.group.GroupCommit`: concurrent
  callers' records are sealed as one batch under one lock, written with one ``write`` and made
  durable with one ``fsync``. Every caller still returns only after its record is on disk.

Nothing already written is damaged by a failed write: the batch is written at the end of the
file, and if the write or the fsync fails (disk full, file size limit, I/O error) the file is
truncated back to its length before the batch, still under the lock. A log whose last line is
torn (a crash mid-write) is not appended to: the write fails, so the decision fails closed,
until ``mlgate audit repair`` moves the fragment aside and records that (:mod:`mlgate.audit.repair`;
``mlgate audit recover-head`` rebuilds a lost head file the same way).

Beside the log, ``PATH.head`` holds the last sequence and hash written (rewritten in place
after each batch, after the fsync of the log, as one padded write of :data:`HEAD_BYTES`
within one disk sector). It lets ``verify`` detect a truncated tail
(whole records cut from the end), which a hash chain alone cannot. A head that is behind the
log is normal after a crash between the two writes; a head ahead of the log is a truncation,
and the writer refuses to extend such a log rather than overwrite the evidence. A sink that
finds the log exactly as its own last batch left it (same file, same size) does not read the
tail and the head again.

Retained evidence lives beside the log in ``evidence/sha256/<2 hex>/<64 hex>``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

from mlgate.audit.group import GroupCommit
from mlgate.audit.record import GENESIS_HASH, AuditOptions, AuditReceipt, prepare, seal_batch
from mlgate.canonical import canonical_json, record_json
from mlgate.errors import AuditError


def _last_line(fh) -> bytes | None:
    """The last line of an open binary file (with its newline, if any), read backwards from the end."""
    end = fh.seek(0, os.SEEK_END)
    if end == 0:
        return None
    pos, tail = end, b""
    while pos > 0:
        step = min(65536 if tail else 8192, pos)
        pos -= step
        fh.seek(pos)
        tail = fh.read(step) + tail
        newline = tail.endswith(b"\n")
        body = tail[:-1] if newline else tail
        if b"\n" in body:
            return body[body.rindex(b"\n") + 1 :] + (b"\n" if newline else b"")
    return tail


def head_path(log: Path) -> Path:
    return log.with_name(log.name + ".head")


def read_head(log: Path) -> tuple[int, str] | None:
    """The head file's (sequence, hash); None when there is none. Raises ValueError if unreadable."""
    try:
        raw = head_path(log).read_bytes()
    except FileNotFoundError:
        return None
    doc = json.loads(raw)
    seq, h = doc["sequence"], doc["hash"]
    if not isinstance(seq, int) or not isinstance(h, str):
        raise ValueError("sequence must be an integer and hash a string")
    return seq, h


#: The head record is written in place, padded to this many bytes: one small write within one
#: disk sector, so it is never seen half old and half new, and never leaves the tail of a longer
#: earlier record behind. JSON allows the padding (trailing whitespace); older heads, written
#: unpadded by rename, read the same.
HEAD_BYTES = 256


def _write_head(log: Path, sequence: int, digest: str) -> None:
    # Not fsync'd on purpose: the log is already durable, and a head that lags after a crash
    # is tolerated (see the module docstring). Written in place under the log's lock (a file
    # created and renamed for every batch cost 0.3 ms of the webhook's 8 ms per request).
    record = canonical_json({"sequence": sequence, "hash": digest})
    if len(record) >= HEAD_BYTES:  # pragma: no cover - a sequence of 150 digits
        raise AuditError(f"head record longer than {HEAD_BYTES} bytes", file=str(head_path(log)))
    data = record + b" " * (HEAD_BYTES - 1 - len(record)) + b"\n"
    try:
        fd = os.open(head_path(log), os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
        try:
            os.pwrite(fd, data, 0)
            if os.fstat(fd).st_size > HEAD_BYTES:  # an older, longer head file: cut what is beyond
                os.ftruncate(fd, HEAD_BYTES)
        finally:
            os.close(fd)
    except OSError:
        # The records are durable; only truncation detection lags until the next batch.
        pass


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileEvidenceStore:
    """Content-addressed copies of evidence files: ``ROOT/sha256/ab/abcdef...``."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self._known: set[str] = set()  # digests this store wrote or found (put_bytes skips them without a stat)

    def path(self, digest: str) -> Path:
        return self.root / "sha256" / digest[:2] / digest

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def open(self, digest: str):
        return open(self.path(digest), "rb")

    def read(self, digest: str) -> bytes | None:
        """The stored bytes, or None when there are none (or they cannot be read)."""
        try:
            with open(self.path(digest), "rb") as fh:
                return fh.read()
        except OSError:
            return None

    def put_bytes(self, digest: str, data: bytes, what: str) -> None:
        """Store ``data`` (whose sha256 the caller computed) once: a blob already there is not
        written again (content-addressed: the same digest is the same bytes)."""
        if digest in self._known:  # written or found by this store already: no path, no stat, no syscall
            return
        target = self.path(digest)
        tmp = target.with_name(f".{digest}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            if target.is_file():  # is_file raises on a directory it may not search
                self._known.add(digest)
                tmp = None
                return
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as dst:
                dst.write(data)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(tmp, target)
            _fsync_dir(target.parent)
        except OSError as exc:
            raise AuditError(f"cannot store the {what}: {exc.strerror or exc}; nothing was appended", file=str(self.root)) from None
        finally:
            try:
                if tmp is not None:
                    tmp.unlink()
            except OSError:
                pass
        self._known.add(digest)

    def put(self, digest: str, source: Path, rel: str) -> None:
        target = self.path(digest)
        if target.is_file() and target.stat().st_size == source.stat().st_size:
            return  # content-addressed: the same digest is the same bytes
        tmp = target.with_name(f".{digest}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            h = hashlib.sha256()
            with open(source, "rb") as src, open(tmp, "wb") as dst:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    h.update(chunk)
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            if h.hexdigest() != digest:
                raise AuditError(f"cannot retain evidence {rel}: its sha256 is now {h.hexdigest()}, the decision read {digest} (changed since?)",
                                 file=str(source))
            os.replace(tmp, target)
            _fsync_dir(target.parent)
        except OSError as exc:
            raise AuditError(f"cannot retain evidence {rel}: {exc.strerror or exc}", file=str(self.root)) from None
        finally:
            try:
                tmp.unlink()
            except OSError:
                pass


def _roll_back(fh, length: int) -> None:
    """Cut a partly written batch off again (we still hold the lock), so the log ends with a
    whole record, as before the batch."""
    try:
        os.ftruncate(fh.fileno(), length)
        os.fsync(fh.fileno())
    except OSError:
        pass


def append_locked(fh, path: Path, records: Sequence[dict[str, Any]], sequence: int, prev_hash: str):
    """Seal ``records`` after (sequence, prev_hash), append them to the open, locked log ``fh``,
    fsync, and move the head. Returns (sealed record or error per record, last sequence, last
    hash, the log's new size). A record that cannot be sealed fails alone (its place holds the
    error); a failed write or fsync is rolled back and raises AuditError."""
    results, sequence, prev_hash = seal_batch(records, sequence=sequence, prev_hash=prev_hash)
    sealed = [r for r in results if isinstance(r, dict)]
    data = b"".join(record_json(s) + b"\n" for s in sealed)
    start = fh.seek(0, os.SEEK_END)
    try:
        view, written = memoryview(data), 0
        while written < len(data):
            written += fh.write(view[written:])
        os.fsync(fh.fileno())
    except OSError as exc:
        _roll_back(fh, start)
        raise AuditError(f"cannot write the audit record: {exc.strerror or exc}; nothing was appended", file=str(path)) from None
    if sealed:
        _write_head(path, sequence, prev_hash)
    return results, sequence, prev_hash, start + len(data)


class FileAuditSink:
    def __init__(self, path: Path | str, options: AuditOptions | None = None):
        self.path = Path(path)
        self.options = options or AuditOptions()
        self.evidence = FileEvidenceStore(self.path.parent / "evidence")
        self._group = GroupCommit(self._flush)
        # (device, inode, size, sequence, hash) of the log just after this sink's last batch: when
        # the log is still exactly that file at that size, nobody appended, truncated or replaced
        # it since, and its tail need not be read and parsed again. Used by one flush at a time.
        self._known: tuple[int, int, int, int, str] | None = None

    @property
    def location(self) -> str:
        return str(self.path)

    def append(self, record: dict[str, Any]) -> AuditReceipt:
        # Options (input document, evidence copies) are applied in the caller's thread, outside
        # the lock: evidence copies are content-addressed and idempotent.
        return self._group.submit(prepare(record, self.options, self.evidence))

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _flush(self, records: Sequence[dict[str, Any]]) -> list[AuditReceipt]:
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
                st = os.fstat(fh.fileno())
                known, self._known = self._known, None
                if known is not None and known[:3] == (st.st_dev, st.st_ino, st.st_size):
                    sequence, prev_hash = known[3], known[4]
                else:
                    sequence, prev_hash = self._tail(fh, name)
                results, sequence, prev_hash, end = append_locked(fh, self.path, records, sequence, prev_hash)
                self._known = (st.st_dev, st.st_ino, end, sequence, prev_hash)
            if created:
                _fsync_dir(self.path.parent)
        except AuditError:
            raise
        except OSError as exc:
            raise AuditError(f"cannot write the audit record: {exc.strerror or exc}", file=name) from None
        return [AuditReceipt(location=name, sequence=r["sequence"], hash=r["hash"]) if isinstance(r, dict) else r for r in results]

    def _tail(self, fh, name: str) -> tuple[int, str]:
        last = _last_line(fh)
        if last is None:
            sequence, digest = 0, GENESIS_HASH
        elif not last.endswith(b"\n"):
            raise AuditError("the audit log ends with a torn record (a crash mid-write?); refusing to append until it is repaired "
                             "(mlgate audit repair)", file=name)
        else:
            try:
                prev = json.loads(last)
                sequence, digest = int(prev["sequence"]), str(prev["hash"])
            except (ValueError, KeyError, TypeError):
                raise AuditError("the last audit record is not a valid mlgate record; refusing to extend a broken chain", file=name) from None
        try:
            head = read_head(self.path)
        except (OSError, ValueError, KeyError, TypeError):
            head = None  # an unreadable head only weakens truncation detection; verify reports it
        if head is not None and (head[0] > sequence or (head[0] == sequence and head[1] != digest)):
            raise AuditError(f"the audit log ends at sequence {sequence} but its head file records sequence {head[0]}: "
                             "records were cut from the end; refusing to extend it (see mlgate audit verify)", file=name)
        return sequence, digest


def iter_lines(path: Path, *, chunk: int = 1 << 22) -> Iterator[tuple[int, bytes, bool]]:
    """(line number from 1, line without newline, complete?) for every line of the log.
    Only the last line can be incomplete (no trailing newline)."""
    with open(path, "rb") as fh:
        number, rest = 0, b""
        while True:
            block = fh.read(chunk)
            if not block:
                break
            lines = (rest + block).split(b"\n")
            rest = lines.pop()
            for line in lines:
                number += 1
                yield number, line, True
        if rest:
            yield number + 1, rest, False
