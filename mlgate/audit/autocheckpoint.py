"""Checkpoints signed by the writer itself, every N records or T seconds (issue 16 part 2).

``mlgate check --checkpoint-key KEY --checkpoint-every 100,1h`` and ``mlgate serve`` (the same
flags, or ``auditCheckpoints`` in its settings file) wrap their audit sink in a
:class:`CheckpointingSink`: after the records are durable, a :class:`Checkpointer` signs the
trail's head when N records were appended since the newest checkpoint, or T seconds passed since
it was signed, and anchors it (an RFC 3161 timestamp, copies in anchor sinks; see
:mod:`mlgate.audit.anchor`). The CLI signs when its sink closes (after the decision is recorded,
before the report is printed); the webhook signs on a background thread, so no admission waits
for a TSA.

What is signed is always a verified prefix, at a cost that does not grow with the trail:

* the first checkpoint of a process is :func:`mlgate.audit.anchor.create_checkpoint`: the whole
  chain, its head, and every stored and anchored checkpoint are verified before the head is signed;
* later ones (file trails) verify only the records appended since the last head this process
  signed: each record's hash, its sequence, and its link to the previous one, read under a shared
  lock of the log so that a batch a writer is rolling back is never signed. Their chain starts
  at a head this process verified and signed, so the whole signed prefix was verified once.

Re-verifying the whole chain for every checkpoint would cost O(trail) per checkpoint (seconds per
million records, on the webhook's request threads' CPU); the incremental walk is O(records since).
A PostgreSQL trail is verified in full for each checkpoint (its rows are read in one query; a
trail shared by replicas is appended by writers this process cannot see).

A checkpoint that cannot be signed (the chain no longer verifies, the TSA is down, a full disk)
never changes a decision that is already recorded: the error is kept in :attr:`Checkpointer.errors`
(the CLI prints it, the webhook logs it), and ``mlgate audit verify --require-anchor`` reports
the records it leaves unanchored.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from mlgate.audit.checkpoint import CheckpointRefused, CheckpointTrust, anchor_store, checkpoint_store
from mlgate.errors import InputError, MlgateError

log = logging.getLogger("mlgate.audit.checkpoint")

_EVERY = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DEFAULT_EVERY = "1h"


@dataclass(frozen=True)
class Every:
    records: int | None = None
    seconds: float | None = None

    def __str__(self) -> str:
        return ",".join(p for p in ((str(self.records) if self.records else ""), (f"{self.seconds:g}s" if self.seconds else "")) if p)


def parse_every(text: Any, *, field: str = "--checkpoint-every") -> Every:
    """``100`` (records), ``30s``/``15m``/``1h``/``1d`` (time), or both: ``100,1h`` (whichever comes first)."""
    records = seconds = None
    parts = [p for p in str(text).split(",")] if text is not None else []
    if not parts or len(parts) > 2:
        raise InputError(f"expected N (records), a time such as 30s, 15m, 1h, or both as N,T; got {text!r}", field=field)
    for part in parts:
        m = _EVERY.match(part)
        if m is None or int(m.group(1)) < 1:
            raise InputError(f"expected N (records, at least 1), a time such as 30s, 15m, 1h, or both as N,T; got {text!r}", field=field)
        if m.group(2):
            if seconds is not None:
                raise InputError(f"two times in {text!r}", field=field)
            seconds = float(int(m.group(1)) * _UNITS[m.group(2)])
        else:
            if records is not None:
                raise InputError(f"two record counts in {text!r}", field=field)
            records = int(m.group(1))
    return Every(records=records, seconds=seconds)


@dataclass(frozen=True)
class CheckpointSettings:
    """What a writer signs checkpoints with (flags or the webhook's ``auditCheckpoints``)."""

    key: Path
    every: Every
    anchors: tuple[str, ...] = ()
    tsa: str | None = None


def checkpoint_settings(key: Path | None, every: str | None, anchors: Sequence[str] = (), tsa: str | None = None,
                        *, prefix: str = "--checkpoint-") -> CheckpointSettings | None:
    """Validated settings, or None without a key (then ``every``, ``anchors`` and ``tsa`` are refused)."""
    if key is None:
        given = [n for n, v in (("every", every), ("anchor", anchors), ("tsa", tsa)) if v]
        if given:
            raise InputError(f"{prefix}{given[0]} needs {prefix}key (the checkpoint signer's private key)", field=f"{prefix}{given[0]}")
        return None
    for url in anchors:
        anchor_store(url, field=f"{prefix}anchor")
    if tsa is not None and not re.match(r"^https?://[^/\s]+", tsa):
        raise InputError(f"{tsa!r} is not an http(s) URL of a timestamping authority", field=f"{prefix}tsa")
    return CheckpointSettings(key=Path(key), every=parse_every(every or DEFAULT_EVERY, field=f"{prefix}every"), anchors=tuple(anchors), tsa=tsa)


class Checkpointer:
    """Signs the head of one trail when a checkpoint is due (see the module docstring)."""

    def __init__(self, audit_url: str, private_key: Any, every: Every, *, clock: Any, trust: CheckpointTrust | None = None,
                 anchors: Sequence[str] = (), timestamper: Callable[[bytes], bytes] | None = None):
        from mlgate.audit.verify import open_trail

        self.trail = open_trail(audit_url)
        self.key, self.every, self.clock, self.trust = private_key, every, clock, trust
        self.anchors, self.timestamper = tuple(anchors), timestamper
        self.errors: list[str] = []
        self.signed: list[Any] = []  # SignedCheckpoint, in order
        self.head = 0  # the highest sequence this process saw appended
        self._lock = threading.Lock()
        self._last: tuple[int, dt.datetime | None] | None = None  # newest checkpoint (sequence, time), loaded once
        self._verified: tuple[int, str, int, int] | None = None  # file trails: (sequence, hash, offset after it, inode)

    @classmethod
    def from_settings(cls, audit_url: str, settings: CheckpointSettings, *, clock: Any, trust_path: Path | None) -> Checkpointer:
        """Load the key and the trust policy; refuse (InputError, CheckpointRefused) a key the trust
        policy does not list as a checkpoint signer, before any decision is made."""
        from mlgate.audit.anchor import _signer
        from mlgate.signing.keys import load_private_key

        key = load_private_key(settings.key)
        trust = None
        if trust_path is not None:
            from mlgate.audit.checkpoint import load_checkpoint_trust

            trust = load_checkpoint_trust(trust_path)
            _signer(key, trust)
        timestamper = None
        if settings.tsa is not None:
            from mlgate.signing.timestamp import request_timestamp

            url = settings.tsa
            timestamper = lambda signature: request_timestamp(url, signature)  # noqa: E731
        return cls(audit_url, key, settings.every, clock=clock, trust=trust, anchors=settings.anchors, timestamper=timestamper)

    # ------------------------------------------------------------------ when
    def noted(self, sequence: int) -> None:
        self.head = max(self.head, sequence)

    def _newest(self) -> tuple[int, dt.datetime | None]:
        if self._last is None:
            try:
                found = checkpoint_store(self.trail).latest()
            except MlgateError:
                found = None
            self._last = found if found is not None else (0, None)
        return self._last

    def due(self) -> bool:
        last_seq, last_time = self._newest()
        if self.head <= last_seq:
            return False
        if self.every.records is not None and self.head - last_seq >= self.every.records:
            return True
        if self.every.seconds is not None:
            return last_time is None or (self.clock.now() - last_time).total_seconds() >= self.every.seconds
        return False

    # ------------------------------------------------------------------ sign
    def run_if_due(self) -> Any:
        with self._lock:
            if not self.due():
                return None
            return self._checkpoint()

    def checkpoint(self) -> Any:
        with self._lock:
            return self._checkpoint()

    def _checkpoint(self) -> Any:
        from mlgate.audit.anchor import create_checkpoint, sign_head

        now = self.clock.now()
        try:
            if self._verified is not None and self.trail.kind == "file":
                sequence, digest = self._extend()
                if sequence <= self._last[0]:
                    return None
                signed = sign_head(self.trail, self.key, sequence=sequence, digest=digest, now=now, trust=self.trust,
                                   timestamper=self.timestamper, anchors=self.anchors)
            else:
                signed = create_checkpoint(self.trail, self.key, now=now, trust=self.trust, timestamper=self.timestamper, anchors=self.anchors)
                if self.trail.kind == "file":
                    self._verified = (signed.sequence, signed.hash, *_offset_after(self.trail.path, signed.sequence))
        except MlgateError as exc:
            message = f"checkpoint not signed: {exc.diagnostics()}"
            self.errors.append(message)
            log.error("%s", message)
            return None
        self._last = (signed.sequence, now)
        self.signed.append(signed)
        log.info("checkpoint of sequence %d signed (%s)", signed.sequence, ", ".join(signed.anchors) or "not anchored")
        return signed

    def _extend(self) -> tuple[int, str]:
        """Verify the records appended after the verified head; the new (sequence, hash)."""
        from mlgate.audit.trail import parse_record
        from mlgate.canonical import record_json

        sequence, prev, offset, inode = self._verified
        path = self.trail.path
        with open(path, "rb") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH)  # no writer is half-way through (or rolling back) a batch
            st = os.fstat(fh.fileno())
            if st.st_ino != inode or st.st_size < offset:
                raise CheckpointRefused(f"the audit log was replaced or cut below sequence {sequence} since this process signed it; "
                                        f"refusing to sign (run mlgate audit verify)", file=str(path))
            fh.seek(offset)
            data = fh.read()
        lines = data.split(b"\n")
        lines.pop()  # b"" after the last newline, or a torn line (verify reports it)
        for raw in lines:
            where = f"line {sequence + 1}"
            try:
                rec = parse_record(raw)
                seq, digest, prev_hash = rec["sequence"], rec["hash"], rec["prev_hash"]
            except (ValueError, KeyError, TypeError):
                raise CheckpointRefused(f"{where} is not a valid audit record; refusing to sign", file=str(path)) from None
            if seq != sequence + 1 or prev_hash != prev or not isinstance(digest, str):
                raise CheckpointRefused(f"{where}: the chain does not continue from sequence {sequence} (found sequence {seq}, "
                                        f"prev_hash {prev_hash}); refusing to sign", file=str(path))
            body = raw.replace(b',"hash":"' + digest.encode() + b'"', b"", 1)
            if hashlib.sha256(body).hexdigest() != digest and \
                    hashlib.sha256(record_json({k: v for k, v in rec.items() if k != "hash"})).hexdigest() != digest:
                raise CheckpointRefused(f"{where}: the record does not hash to its hash field; refusing to sign", file=str(path))
            sequence, prev, offset = seq, digest, offset + len(raw) + 1
        self._verified = (sequence, prev, offset, inode)
        return sequence, prev

    def close(self) -> None:
        self.trail.close()


def _offset_after(path: Path, sequence: int) -> tuple[int, int]:
    """(byte offset just after line ``sequence``, inode): the verified prefix's end, by counting newlines."""
    with open(path, "rb") as fh:
        inode = os.fstat(fh.fileno()).st_ino
        seen, offset = 0, 0
        while True:
            block = fh.read(1 << 22)
            if not block:
                break
            count = block.count(b"\n")
            if seen + count >= sequence:
                index = -1
                for _ in range(sequence - seen):
                    index = block.index(b"\n", index + 1)
                return offset + index + 1, inode
            seen += count
            offset += len(block)
    raise CheckpointRefused(f"the audit log has fewer than {sequence} lines after signing them", file=str(path))


class CheckpointingSink:
    """An audit sink that tells a :class:`Checkpointer` what it appended. ``background=True``
    (the webhook): a daemon thread signs when due, woken by appends and every T seconds;
    otherwise (the CLI) the checkpoint is signed, when due, as the sink closes."""

    def __init__(self, inner: Any, checkpointer: Checkpointer, *, background: bool = False):
        self.inner, self.checkpointer, self.background = inner, checkpointer, background
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._loop, name="mlgate-checkpointer", daemon=True)
            self._thread.start()

    def __getattr__(self, name: str) -> Any:  # location, path, evidence, options...: the inner sink's
        return getattr(self.inner, name)

    def append(self, record: dict[str, Any]) -> Any:
        receipt = self.inner.append(record)
        self.checkpointer.noted(receipt.sequence)
        if self.background and self.checkpointer.every.records is not None:
            self._wake.set()
        return receipt

    def _loop(self) -> None:
        every = self.checkpointer.every.seconds
        while not self._stop:
            self._wake.wait(timeout=min(every, 60.0) if every else None)
            self._wake.clear()
            if self._stop:
                break
            try:
                self.checkpointer.run_if_due()
            except Exception:  # noqa: BLE001 - the checkpointer thread must outlive a bug; decisions are already recorded
                log.exception("checkpoint thread")

    def close(self) -> None:
        if self._thread is not None:
            self._stop = True
            self._wake.set()
            self._thread.join(timeout=30)
        self.checkpointer.run_if_due()
        try:
            self.inner.close()
        finally:
            self.checkpointer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
