"""The webhook relying on signed verification summaries (issue 20 part 3; settings ``acceptSummaries``).

``mlgate check --attest KEY`` in CI writes, next to the release, a SLSA Verification Summary
(:mod:`mlgate.signing.summary`) that carries the decision's *time-independent* findings, the
input's static key (:func:`mlgate.policy.timesplit.static_key`) and the policy's revision. With
``acceptSummaries: {maxAge: 24h}`` the webhook takes those findings instead of evaluating the
rules that produce them, when, and only when, the summary

- verifies with a ``summarySigners`` key of the webhook's trust policy (valid at its time),
- is for this model digest and this environment, no older than ``maxAge``, PASSED,
- names exactly the evidence files the webhook reads now, with the same digests,
- was made for the same input (its static key is the one the webhook computes: same release,
  same evidence, the same verification results under the webhook's own trust policy), and
- under the same policy (the policy revision the webhook evaluates).

The rules that read the time (approval and waiver expiry, evidence age, a signing time in the
future, key validity) and the waivers are always evaluated by the webhook itself, at admission.
Every decision that took a summary's findings names it in its audit record (``summary``: path,
sha256, signer, key id, decision id, time verified). A summary that does not apply is never an
error: the webhook evaluates everything itself (and logs why, once per summary file state).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlgate.clock import Clock

log = logging.getLogger("mlgate.gatekeeper")

#: a summary is a few kilobytes; anything much larger is not read
MAX_SUMMARY_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class _Seen:
    stat: tuple[int, int, int, int, int]
    check: Any  # mlgate.signing.summary.SummaryCheck, verified without the age (checked at each use)
    trust: Any  # the trust policy it was verified under (compared by identity: the object is kept alive here)


class SummarySource:
    """``GateOptions.static_source`` for the webhook: (findings, record) of a release's summary, or None."""

    def __init__(self, max_age_s: float, clock: Clock):
        self.max_age = dt.timedelta(seconds=max_age_s)
        self.clock = clock
        self._seen: dict[str, _Seen] = {}  # summary path -> what it held when last read
        self.used = 0
        self.refused = 0

    def __call__(self, release: Any, facts: Any, environment: str, key: str, prepared: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
        from mlgate.signing.summary import default_path

        path = default_path(Path(release.manifest_path).parent, environment)
        check = self._check(path, prepared.trust, facts, environment)
        if check is None:
            return None
        now = self.clock.now()
        why = None
        verified = dt.datetime.fromisoformat(check.time_verified.replace("Z", "+00:00")) if check.time_verified else None
        static = check.static or {}
        if not check.ok:
            why = check.reason
        elif verified is None or now - verified > self.max_age:
            why = f"verified at {check.time_verified}, older than acceptSummaries.maxAge"
        elif now < verified:
            why = f"timeVerified {check.time_verified} is in the future"
        elif check.key_valid_until and now >= dt.datetime.fromisoformat(check.key_valid_until.replace("Z", "+00:00")):
            why = f"the summary signer's key counts only until {check.key_valid_until}"
        elif not static:
            why = "it carries no time-independent findings (made by an mlgate before the time split)"
        elif static.get("key") != key:
            why = "it was made for another input (its static key differs: evidence, verification results or release changed)"
        elif static.get("policyRevision") != prepared.policy.revision:
            why = f"it was made under policy revision {str(static.get('policyRevision'))[:12]}, the webhook evaluates {prepared.policy.revision[:12]}"
        elif static.get("split") != getattr(getattr(prepared.engine, "split", None), "digest", None):
            why = ("its time-independent findings were told apart from the timed ones differently (another mlgate or "
                   "engine version): the webhook evaluates them itself")
        if why is not None:
            self.refused += 1
            log.info("verification summary %s not relied on: %s", path, why)
            return None
        self.used += 1
        return static["findings"], check.as_record()

    def _check(self, path: Path, trust: Any, facts: Any, environment: str) -> Any:
        """The summary at ``path`` verified (signature, digest, environment, evidence; not its age),
        remembered per file state and trust policy; None when there is none."""
        from mlgate.signing.summary import verify_summary

        import stat as stat_mod

        # The file itself, never a link (its target could change, or be large): opened without following one,
        # its state taken from the open descriptor, at most MAX_SUMMARY_BYTES read from it.
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat_mod.S_ISREG(st.st_mode) or st.st_size > MAX_SUMMARY_BYTES:
                return None
            stat = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
            seen = self._seen.get(str(path))
            if seen is not None and seen.stat == stat and seen.trust is trust and seen.check.model_digest == facts.model.get("digest"):
                return self._evidence_still(seen.check, facts)
            with os.fdopen(os.dup(fd), "rb") as fh:
                data = fh.read(MAX_SUMMARY_BYTES + 1)
        except OSError:
            return None
        finally:
            os.close(fd)
        if len(data) > MAX_SUMMARY_BYTES:
            return None
        check = verify_summary(data, str(path), trust, now=self.clock.now(), model_digest=facts.model.get("digest"),
                               environment=environment, max_age=None, inputs=dict(facts.all_digests))
        if len(self._seen) > 4096:
            self._seen.clear()
        if check.ok:  # a refusal is not remembered: what refused it may be the time (a clock a little ahead), verified again
            self._seen[str(path)] = _Seen(stat, check, trust)
        else:
            self._seen.pop(str(path), None)
        if not check.ok:
            log.info("verification summary %s not relied on: %s", path, check.reason)
        return check

    @staticmethod
    def _evidence_still(check: Any, facts: Any) -> Any:
        """A remembered check holds only for the evidence it was checked against."""
        import dataclasses

        if check.ok and dict(check.inputs) != dict(facts.all_digests):
            return dataclasses.replace(check, ok=False, reason="the evidence changed since the summary was verified")
        return check
