"""Group commit: many concurrent appends share one durable write (one fsync, one transaction).

Leader/follower, as databases do it: each caller queues its record and waits. Whoever finds
no flush in progress becomes the leader, takes everything queued (up to ``max_batch``), and
calls ``flush(records) -> receipts`` once for the whole batch; the backend seals the batch
under its lock, in queue order, so the batch extends the one chain contiguously. Every waiter
returns only after the flush that holds its record finished, and gets that flush's error if it
failed: durability is per record, exactly as without batching. A flush may also return an
exception in one record's place (that record could not be sealed): only its caller gets it,
the others of the batch were written. When the leader is done it
wakes the others; one of the still-waiting callers leads the next batch.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Sequence


class _Slot:
    __slots__ = ("record", "done", "result", "error")

    def __init__(self, record: Any):
        self.record = record
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


class GroupCommit:
    def __init__(self, flush: Callable[[Sequence[Any]], Sequence[Any]], *, max_batch: int = 1024):
        self._flush = flush
        self._max_batch = max_batch
        self._cv = threading.Condition(threading.Lock())
        self._pending: list[_Slot] = []
        self._busy = False

    def submit(self, record: Any) -> Any:
        slot = _Slot(record)
        with self._cv:
            self._pending.append(slot)
            while not slot.done:
                if self._busy:
                    self._cv.wait()
                    continue
                self._busy = True
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                self._cv.release()
                try:
                    self._run(batch)
                finally:
                    self._cv.acquire()
                    self._busy = False
                    self._cv.notify_all()
        if slot.error is not None:
            raise slot.error
        return slot.result

    def _run(self, batch: list[_Slot]) -> None:
        try:
            results = self._flush([s.record for s in batch])
            if len(results) != len(batch):  # pragma: no cover - a backend bug
                raise RuntimeError("group commit: flush returned the wrong number of receipts")
            for s, r in zip(batch, results):
                if isinstance(r, BaseException):  # this record alone failed (e.g. it could not be sealed)
                    s.error = r
                else:
                    s.result = r
        except BaseException as exc:  # noqa: BLE001 - handed to every caller of the batch
            for s in batch:
                s.error = exc
        for s in batch:
            s.done = True
