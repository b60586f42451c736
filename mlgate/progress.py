"""Progress of long work (hashing a large model, downloading one), as log records.

The core never writes to the terminal: it emits ``INFO`` records on the ``mlgate.progress``
logger, and only when the work is large (:data:`MIN_BYTES`) and someone listens. The command
line attaches a handler to stderr when stderr is a terminal (``mlgate.cli``), so CI logs and
pipes stay clean; the webhook never does.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("mlgate.progress")
#: Work smaller than this reports nothing.
MIN_BYTES = 64 * 1024 * 1024
_MIB = 1024 * 1024


class Progress:
    """``advance(n)`` as ``n`` more bytes of ``total`` are done; a record at most every
    ``every_s`` seconds, and one when done."""

    def __init__(self, what: str, total: int, *, every_s: float = 0.5, clock=time.monotonic):
        self.what, self.total, self.done = what, total, 0
        self.enabled = total >= MIN_BYTES and log.isEnabledFor(logging.INFO)
        self._every, self._clock = every_s, clock
        self._last = clock()

    def advance(self, n: int) -> None:
        if not self.enabled:
            return
        self.done += n
        now = self._clock()
        if self.done >= self.total or now - self._last >= self._every:
            self._last = now
            pct = 100 * self.done // max(self.total, 1)
            log.info("%s: %d of %d MiB (%d%%)", self.what, self.done // _MIB, self.total // _MIB, pct)
