"""Reading an audit trail back, and ``mlgate audit verify``: walk the chain, report the first broken link.

For each record, in order: it must be a JSON object with an integer ``sequence`` and string
``hash`` and ``prev_hash``; ``hash`` must be the sha256 of its canonical JSON without
``hash``; ``sequence`` must be the previous one plus 1 (from 1); ``prev_hash`` must be the
previous record's ``hash`` (64 zeros for the first). The first failure is reported precisely:
the sequence and where it lies (line or row), the field, what was expected and what was found,
and what it means (an edited record, a deleted one, records out of order). Then the head (the
file's ``.head`` or the database's head row) must agree with the last record: a head beyond
the last record means whole records were cut from the end (a truncated tail). A last line
without its newline is a torn record from a crash mid-write: reported as such, with every
earlier record verified.

Signed checkpoints (:mod:`mlgate.audit.checkpoint`): with ``checkpoints=`` a policy, every
checkpoint is then checked against the verified chain and the trust policy's checkpoint signers,
which catches a whole rewritten chain (one that verifies on its own).

Exit codes: 0 intact, 1 not intact (tampered, truncated, torn, a checkpoint contradicted, or not
signed by a trusted checkpoint signer), 2 the trail cannot be read, or checkpoints exist but no
checkpoint signer is trusted (``unverifiable``).

Speed: a record written by mlgate is canonical JSON, so its line *is* the canonical JSON of
the record with the ``"hash"`` member inserted; removing that member gives the exact bytes that
were hashed, without re-serialising. Sound: the parsed record must have a top-level ``hash``,
and if the bytes left after removing one occurrence hash to it, they are the sealed body
(which has no top-level ``hash``), so the removed occurrence was the top-level one. Anything
else falls back to re-serialising the parsed record. orjson parses when installed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterator

from mlgate.audit.record import GENESIS_HASH
from mlgate.audit.trail import (  # noqa: F401 - FileTrail, PostgresTrail, open_trail are part of this module's API
    _reject_constant, parse_record, FileTrail, PostgresTrail, open_trail, iter_records, VerifyResult, _fail,
)
from mlgate.canonical import record_json
from mlgate.errors import AuditError

def _later(rest: Iterator, wanted: int) -> str | None:
    """Where a record with sequence ``wanted`` lies among the remaining items, if anywhere."""
    for where, raw, complete, _key in rest:
        if not complete:
            return None
        try:
            rec = parse_record(raw)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("sequence") == wanted:
            return where
    return None


def verify_trail(trail, *, checkpoints: Any = None) -> VerifyResult:
    """Verify the chain; with ``checkpoints`` (a :class:`mlgate.audit.checkpoint.CheckpointPolicy`),
    also every signed checkpoint of the trail against it (a whole rewritten chain)."""
    result = _verify_chain(trail)
    if checkpoints is not None and result.status != "unreadable":
        from mlgate.audit.checkpoint import check_checkpoints

        check_checkpoints(trail, result, checkpoints)
    return result


def _verify_chain(trail) -> VerifyResult:
    result = VerifyResult(location=trail.location, status="intact")
    try:
        trail.check_readable()
        try:
            head = trail.head()
        except ValueError as exc:
            head = None
            result.notes.append(f"{exc}: a truncated tail cannot be detected")
        if head is None and trail.kind == "postgresql":
            return _fail(result, "tampered", "the head row of the trail is missing (mlgate_audit_head was emptied)", field="head")
        if trail.kind == "file":
            fast = _parallel_file_check(trail.path, head)
            if fast is not None:  # every record verified in parallel: only the head is left to check
                result.records, result.head_sequence, result.head_hash = fast[0], fast[0], fast[1]
                return _finish(trail, result, head)
        return _walk(trail, trail.items(), result, head)
    except AuditError as exc:
        return _fail(result, "unreadable", exc.diagnostics())


def _walk(trail, items: Iterator, result: VerifyResult, head: tuple[int, str] | None) -> VerifyResult:
    sha256 = hashlib.sha256
    loads = parse_record
    expected_seq, prev = 1, GENESIS_HASH
    head_seq, head_hash = head if head is not None else (0, None)
    for where, raw, complete, key in items:
        if not complete:
            return _fail(result, "torn",
                         f"{where} is a torn record ({len(raw)} bytes without an end of line: a crash mid-write); the {result.records} "
                         f"record(s) before it verify; mlgate will not append until the torn line is removed",
                         sequence=expected_seq, where=where, field="line")
        try:
            rec = loads(raw)
        except ValueError:
            return _fail(result, "tampered", f"sequence {expected_seq} ({where}): not valid JSON: the record was damaged or edited",
                         sequence=expected_seq, where=where, field="record")
        if not isinstance(rec, dict):
            return _fail(result, "tampered", f"sequence {expected_seq} ({where}): not a JSON object", sequence=expected_seq, where=where, field="record")
        seq, digest, prev_hash = rec.get("sequence"), rec.get("hash"), rec.get("prev_hash")
        for name, value, kind in (("sequence", seq, int), ("hash", digest, str), ("prev_hash", prev_hash, str)):
            if type(value) is not kind:
                return _fail(result, "tampered", f"sequence {expected_seq} ({where}): field {name} is missing or not a{'n integer' if kind is int else ' string'}",
                             sequence=expected_seq, where=where, field=name, expected=kind.__name__, found=value)
        # 1. the record's own hash (an edited record)
        body = raw.replace(b',"hash":"' + digest.encode() + b'"', b"", 1)
        if sha256(body).hexdigest() != digest:
            computed = sha256(record_json({k: v for k, v in rec.items() if k != "hash"})).hexdigest()
            if computed != digest:
                return _fail(result, "tampered",
                             f"sequence {seq} ({where}): field hash: expected {computed} (recomputed from the record), found {digest}: "
                             f"the record was edited after it was written",
                             sequence=seq, where=where, field="hash", expected=computed, found=digest)
        # 2. its place in the chain (deleted or reordered records)
        if key is not None and key != seq:
            return _fail(result, "tampered", f"{where} holds a record whose sequence is {seq}: the record was moved",
                         sequence=key, where=where, field="sequence", expected=key, found=seq)
        if seq != expected_seq:
            if seq > expected_seq:
                later = _later(items, expected_seq)
                if later is not None:
                    what = f"records out of order: sequence {expected_seq} comes later, at {later}"
                elif seq == expected_seq + 1:
                    what = f"record {expected_seq} was deleted"
                else:
                    what = f"records {expected_seq} to {seq - 1} were deleted"
            else:
                what = f"records out of order or duplicated: sequence {seq} again after {expected_seq - 1}"
            return _fail(result, "tampered", f"sequence {expected_seq} ({where}): field sequence: expected {expected_seq}, found {seq}: {what}",
                         sequence=expected_seq, where=where, field="sequence", expected=expected_seq, found=seq)
        # 3. the link to the previous record
        if prev_hash != prev:
            return _fail(result, "tampered",
                         f"sequence {seq} ({where}): field prev_hash: expected {prev} (the hash of sequence {seq - 1}), found {prev_hash}: "
                         f"the record before it was replaced, or the chain was spliced",
                         sequence=seq, where=where, field="prev_hash", expected=prev, found=prev_hash)
        if seq == head_seq and digest != head_hash:
            return _fail(result, "tampered", f"sequence {seq} ({where}): field hash: expected {head_hash} (the trail's head), found {digest}: "
                         f"the chain was rewritten from here on", sequence=seq, where=where, field="hash", expected=head_hash, found=digest)
        prev = digest
        expected_seq += 1
        result.records += 1
    result.head_sequence, result.head_hash = result.records, prev
    return _finish(trail, result, head)


def _finish(trail, result: VerifyResult, head: tuple[int, str] | None) -> VerifyResult:
    """After a whole chain verified: the head must not be beyond the last record."""
    if head is not None:
        head_seq, head_hash = head
        last = result.records
        if head_seq > last:
            missing = f"record {head_seq} was" if head_seq == last + 1 else f"records {last + 1} to {head_seq} were"
            return _fail(result, "truncated",
                         f"the trail ends at sequence {last} but its head records sequence {head_seq} (hash {head_hash}): "
                         f"{missing} cut from the end; all {last} remaining records verify",
                         sequence=last + 1, where="end", field="sequence", expected=head_seq, found=last)
        if head_seq < last and trail.kind == "postgresql":
            return _fail(result, "tampered", f"records after the head (sequence {head_seq}) were inserted without moving it: sequence "
                         f"{head_seq + 1} to {last}", sequence=head_seq + 1, where=f"row {head_seq + 1}", field="sequence", expected=head_seq, found=last)
        if head_seq < last:
            result.notes.append(f"the head file is at sequence {head_seq}, behind the last record {last} (a crash between the two writes)")
    else:
        result.notes.append("no head file: a truncated tail cannot be detected")
    return result


# -- parallel fast path ----------------------------------------------------------------------
#
# A large file is cut at line boundaries into one chunk per CPU; each worker checks its
# records' hashes and the links inside its chunk, and reports its first (sequence, prev_hash)
# and last (sequence, hash); the chunks are then stitched. This path can only say "intact":
# on any doubt it returns None and the sequential walk above finds and describes the first
# broken link.

PARALLEL_MIN_BYTES = 32 * 1024 * 1024


def _chunk_lines(path: str, start: int, end: int, block: int = 1 << 22) -> Iterator[bytes | None]:
    """The lines of [start, end) read in blocks; None for a last line without its newline."""
    with open(path, "rb") as fh:
        fh.seek(start)
        left, rest = end - start, b""
        while left > 0:
            data = fh.read(min(block, left))
            if not data:
                break
            left -= len(data)
            lines = (rest + data).split(b"\n")
            rest = lines.pop()
            yield from lines
        if rest:
            yield None


def _check_chunk(args: tuple[str, int, int, int, str | None]) -> tuple | None:
    path, start, end, head_seq, head_hash = args
    sha256 = hashlib.sha256
    loads = parse_record
    first = None
    seq_expected, prev = None, None
    count = 0
    for raw in _chunk_lines(path, start, end):
        if raw is None:
            return None  # a torn last line: the sequential walk reports it
        try:
            rec = loads(raw)
            seq, digest, prev_hash = rec["sequence"], rec["hash"], rec["prev_hash"]
        except (ValueError, KeyError, TypeError):
            return None
        if type(seq) is not int or type(digest) is not str or type(prev_hash) is not str:
            return None
        i = raw.find(b',"hash":"' + digest.encode() + b'"')
        if i >= 0:
            h = sha256(raw[:i])
            h.update(raw[i + 10 + len(digest):])
        if i < 0 or h.hexdigest() != digest:
            if sha256(record_json({k: v for k, v in rec.items() if k != "hash"})).hexdigest() != digest:
                return None
        if first is None:
            first = (seq, prev_hash)
        elif seq != seq_expected or prev_hash != prev:
            return None
        if seq == head_seq and digest != head_hash:
            return None
        seq_expected, prev = seq + 1, digest
        count += 1
    if first is None:
        return None
    return first[0], first[1], seq_expected - 1, prev, count


def _parallel_file_check(path: Path, head: tuple[int, str] | None) -> tuple[int, str] | None:
    import os

    try:
        size = os.path.getsize(path)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    except OSError:
        return None
    if size < PARALLEL_MIN_BYTES or cpus < 2:
        return None
    bounds = [0]
    with open(path, "rb") as fh:
        for k in range(1, cpus):
            fh.seek(size * k // cpus)
            fh.readline()
            pos = fh.tell()
            if bounds[-1] < pos < size:
                bounds.append(pos)
    bounds.append(size)
    head_seq, head_hash = head if head is not None else (0, None)
    jobs = [(str(path), a, b, head_seq, head_hash) for a, b in zip(bounds, bounds[1:])]
    import multiprocessing
    import threading
    from concurrent.futures import ProcessPoolExecutor

    # fork when this process has no other threads (the CLI): no re-import, no __main__ games;
    # spawn otherwise (forking a threaded process can copy a held lock).
    method = "fork" if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods() else "spawn"
    try:
        with ProcessPoolExecutor(max_workers=len(jobs), mp_context=multiprocessing.get_context(method)) as pool:
            parts = list(pool.map(_check_chunk, jobs))
    except Exception:  # noqa: BLE001 - no worker processes here: the sequential walk still answers
        return None
    expected, prev, total = 1, GENESIS_HASH, 0
    for part in parts:
        if part is None:
            return None
        first_seq, first_prev, last_seq, last_hash, count = part
        if first_seq != expected or first_prev != prev:
            return None
        expected, prev, total = last_seq + 1, last_hash, total + count
    return total, prev
