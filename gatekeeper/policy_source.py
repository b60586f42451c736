"""The webhook's policy from an OCI registry (``policy: oci://...``), kept fresh.

:class:`OciPolicySource` holds what the webhook knows about its ``oci://`` policy: the reference,
the digest and revision in use, and how the last refresh went. Its blocking work
(:meth:`~OciPolicySource.fetch`: ask the registry, pull, verify) runs on a thread of its own,
never on the event loop; the app (:mod:`mlgate.gatekeeper.app`) then swaps the policy on every
gate thread and writes the :func:`change_record`.

- At start-up the bundle is pulled (or taken from the digest cache), its digests checked and its
  signature verified with the bundle key. If that fails the webhook serves, not ready: every
  admission is a recorded deny (``MLG-ADM-005``) and ``/readyz`` answers 503 naming the error,
  until a retry succeeds.
- A tag is resolved again every refresh interval (only its manifest is read). A new digest is
  pulled and verified before any gate thread sees it; a registry that is down, or a bundle that
  does not verify, leaves the last verified bundle in use, and ``/readyz`` (still 200) and
  ``/metrics`` say the policy is stale and why.
- A digest never moves: it is loaded once (and retried only while it is not loaded).

The tag is pinned: every gate thread loads ``oci://REPO:TAG@sha256:...`` (from the digest cache,
re-checked against the digest and the key), so all of them evaluate the same bundle.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from mlgate.gatekeeper.config import DEFAULT_POLICY_REFRESH_S

from mlgate.clock import Clock, SystemClock, rfc3339

#: While no policy is loaded (start-up failed), retry at least this often.
NOT_LOADED_RETRY_S = 10.0
POLICY_CHANGE = "policy-change"


class OciPolicySource:
    def __init__(self, source: Any, *, refresh_s: float | None = None, key: Path | None = None,
                 data_overrides: tuple[Path, ...] = (), clock: Clock | None = None):
        from mlgate.policy.oci import parse_ref

        self.ref = parse_ref(source)
        self.source = str(self.ref)
        #: None for a digest (it never moves); a tag defaults to DEFAULT_POLICY_REFRESH_S.
        self.refresh_s = None if self.ref.digest is not None else float(refresh_s or DEFAULT_POLICY_REFRESH_S)
        self.key, self.data_overrides = key, tuple(data_overrides)
        self.clock = clock or SystemClock()
        self._lock = threading.Lock()  # the state below is written by the app's refresh, read by /readyz and /metrics
        self.digest: str | None = None  # of the bundle the gate threads evaluate
        self.revision: str | None = None  # the policy revision their decisions record
        self.last_success: float | None = None  # epoch seconds of the last refresh that reached the registry and verified
        self.last_error: str | None = None  # of the last refresh, None when it succeeded
        self.failures = 0  # refreshes failed in a row
        #: every digest this process has evaluated: a switch back to one of them is a rollback (an older
        #: signed bundle, re-tagged: still verified, but recorded and counted as such, never a quiet change)
        self.seen: list[str] = []

    # ------------------------------------------------------------------ blocking work (a policy thread)
    def pinned(self, digest: str) -> str:
        """The reference every gate thread loads: the tag (if any) and the digest it resolved to."""
        return str(self.ref.at(digest))

    def fetch(self) -> str | None:
        """The digest of a verified bundle to switch to, or None when the one in use is still current.

        Reads the tag's manifest only; a new digest is pulled into the digest cache, its manifest and
        layer digests checked, and its signature verified with the bundle key (so the gate threads,
        which load it from the cache, never see a bundle that does not verify). Raises MlgateError."""
        from mlgate.policy.oci import load_oci_policy, resolve

        digest = resolve(self.ref)
        if digest == self.digest:
            return None
        load_oci_policy(self.pinned(digest), key=self.key, data_overrides=list(self.data_overrides))
        return digest

    # ------------------------------------------------------------------ state
    @property
    def loaded(self) -> bool:
        return self.digest is not None

    @property
    def stale(self) -> bool:
        """A bundle is in use but the last refresh failed."""
        return self.loaded and self.last_error is not None

    def next_refresh_s(self) -> float | None:
        """Seconds to the next refresh: the interval for a tag, a short retry while nothing is loaded, None: never."""
        if not self.loaded:
            return min(self.refresh_s or NOT_LOADED_RETRY_S, NOT_LOADED_RETRY_S)
        return self.refresh_s

    def succeeded(self, digest: str | None = None, revision: str | None = None) -> None:
        with self._lock:
            if digest is not None:
                self.digest, self.revision = digest, revision
                if digest not in self.seen:
                    self.seen.append(digest)
            self.last_success = self.clock.now().timestamp()
            self.last_error, self.failures = None, 0

    def failed(self, error: str) -> None:
        with self._lock:
            self.last_error = " ".join(str(error).split())[:500]
            self.failures += 1

    def not_loaded_reason(self) -> str:
        return f"policy {self.source} not loaded: {self.last_error or 'not pulled yet'}"

    def status(self) -> dict[str, Any]:
        """What ``/readyz`` says about the policy."""
        with self._lock:
            state = "not-loaded" if not self.loaded else "stale" if self.last_error is not None else "current"
            out: dict[str, Any] = {"source": self.source, "state": state, "digest": self.digest, "revision": self.revision,
                                   "refreshSeconds": self.refresh_s,
                                   "lastSuccess": rfc3339_epoch(self.last_success) if self.last_success is not None else None}
            if self.last_error is not None:
                out["lastError"], out["failures"] = self.last_error, self.failures
            return out


def rfc3339_epoch(seconds: float) -> str:
    import datetime as dt

    return rfc3339(dt.datetime.fromtimestamp(seconds, dt.UTC))


def change_record(source: str, old: dict[str, Any], new: dict[str, Any], *, clock: Clock, ids: Any, inputs: dict[str, Any] | None) -> dict[str, Any]:
    """The audit record of a policy change (``kind``/``action`` ``policy-change``; never a decision):
    which source, the digest and policy revision before and after, and what the new revision digests.
    Decisions recorded after it carry the new revision. Names the replica and process that switched
    (each webhook process switches, and records, on its own)."""
    import os
    import socket

    from mlgate import __version__

    return {
        "kind": POLICY_CHANGE, "action": POLICY_CHANGE, "event_id": ids(), "timestamp": rfc3339(clock.now()),
        "actor": "mlgate-webhook", "source": "webhook", "mlgate_version": __version__,
        "policy_source": source, "old": old, "new": new, "revision_inputs": inputs,
        "replica": {"host": socket.gethostname(), "pid": os.getpid()},
    }
