"""Judge one AdmissionReview with the core gate (kopf's ``serve_admission_request``: no HTTP here).

:class:`Gatekeeper` is synchronous and owns the policy engine, so it lives on one thread (the
server's gate thread, which builds it): a regorus ``Engine`` is unsendable between threads. Each
model reference in the admitted object is one :func:`mlgate.gate.check_loaded` call, so one
audit record; a request that names no model, a DELETE or a scale is one :func:`mlgate.gate.exempt`
record. The admission outcome follows the environment's mode:

- ``enforce``: allowed only if every reference is allowed; a deny is 403, an internal failure 500;
- ``warn``: allowed, with each violation (and failure) as an admission warning;
- ``audit``: allowed silently; the record holds the gate's real decision.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlgate.gatekeeper.config import Settings
from mlgate.gatekeeper.refs import find_refs, is_scale_only
from mlgate.gatekeeper.review import MAX_MESSAGE_CHARS, Review, one_line, response

from mlgate.clock import Clock, IdFactory, SystemClock, uuid4_ids
from mlgate.errors import EngineError, MlgateError
from mlgate.gate import (
    SEVERITIES,
    Decision,
    Finding,
    GateOptions,
    Prepared,
    check_loaded,
    exempt,
    prepare,
    refuse,
)
from mlgate.inputdoc import Request
from mlgate.store import FactsCache, ModelRef, StoreError, open_store

#: A remote evidence store must answer this long before the request's own deadline.
STORE_MARGIN_S = 0.1
#: OPA must answer this long before the request's deadline: time left to write the audit record (an fsync)
#: and answer. 0.1 s was too little on a loaded CI machine: the last-resort deadline answer won.
ENGINE_MARGIN_S = 0.2
#: Less time than this left for OPA: do not ask it (the answer could not arrive in time).
MIN_ENGINE_S = 0.02


class UnknownEnvironment(MlgateError):
    """The URL names an environment neither the policy nor the settings define (HTTP 404)."""


@dataclass
class Outcome:
    body: dict[str, Any]
    result: str  # allow | deny | error | exempt (what the gate recorded; several references: the worst)
    model_kind: str
    decisions: list[Decision] = field(default_factory=list)


def open_audit_sink(settings: Settings):
    """The foundation's sink for the audit URL (``file:PATH``, ``file:///abs``, a path, ``postgresql://``),
    told which policy directory is evaluated so records carry its git commit."""
    from mlgate.audit import AuditOptions, open_sink

    return open_sink(settings.audit, AuditOptions(policy_dir=settings.policy_dir))


class Gatekeeper:
    def __init__(self, settings: Settings, *, clock: Clock | None = None, ids: IdFactory | None = None, sink: Any = None,
                 store: Any = None, on_cache: Callable[[str], None] | None = None, monotonic: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.clock = clock or SystemClock()
        self.ids = ids or uuid4_ids
        self.sink = sink if sink is not None else open_audit_sink(settings)
        cache = FactsCache(max_entries=settings.cache_entries, ttl_s=settings.cache_ttl_s, on_result=on_cache)
        self.store = store if store is not None else open_store(settings.evidence_store, cache=cache, ca_file=settings.evidence_store_ca,
                                                                cache_dir=settings.evidence_cache_dir)
        self.monotonic = monotonic
        self.prepared: Prepared | None = None
        self.environments: frozenset[str] = frozenset()

    # ------------------------------------------------------------------ lifecycle (gate thread)
    def start(self) -> None:
        """Load the policy, build the engine (on this thread) and index the store; raise MlgateError if any fails."""
        self.prepared = self._prepare()
        policy_envs = ((self.prepared.policy.data.get("mlgate") or {}).get("environments") or {})
        self.environments = frozenset(policy_envs) | frozenset(self.settings.environments)
        try:
            self.store.scan()
        except StoreError:
            # A remote store that is down at start-up: serve anyway (each request then denies,
            # naming the store, and /readyz says why); a local directory that is missing is fatal.
            if not getattr(self.store, "remote", False):
                raise

    def sibling(self) -> Gatekeeper:
        """Another gatekeeper for another gate thread: its own engine (built here, on the calling
        thread), the same settings, clock, ids, evidence store (and facts cache) and audit sink."""
        other = Gatekeeper(self.settings, clock=self.clock, ids=self.ids, sink=self.sink, store=self.store, monotonic=self.monotonic)
        other.prepared = other._prepare()
        if other.prepared.revision != (self.prepared.revision if self.prepared else None):
            raise MlgateError("the policy changed while the gate threads were starting; restart the webhook")
        other.environments = self.environments
        return other

    def _prepare(self) -> Prepared:
        """The policy, its engine (built on the calling thread) and the trust policy."""
        # timeout_s=0: no fork per evaluation. Forking a threaded server is unsafe and costs
        # milliseconds; the request deadline is kept by the event loop instead (app.py), and an
        # OPA engine's own deadline is cut to each request's (DeadlineBoundEngine).
        options = GateOptions(environment="-", policy_dir=self.settings.policy_dir, data_overrides=list(self.settings.data_overrides),
                              trust_policy=self.settings.trust_policy, timeout_s=0, engine=self.settings.engine, opa=self.settings.opa)
        prepared = prepare(options)
        if self.settings.engine == "opa":
            prepared = dataclasses.replace(prepared, engine=DeadlineBoundEngine(prepared.engine, self.monotonic))
        return prepared

    def close(self) -> None:
        """Release the engine (on the thread that built it): an OPA engine closes its connection pool."""
        prepared, self.prepared = self.prepared, None
        close = getattr(prepared.engine, "close", None) if prepared is not None else None
        if close is not None:
            close()

    def ready(self) -> list[str]:
        """Reasons the webhook is not ready ([] when it is). Safe to call from any thread: reads only."""
        import os

        problems = []
        if self.prepared is None:
            problems.append("policy not loaded")
        store = self.store.ready()
        if store:
            problems.append(store)
        path = getattr(self.sink, "path", None)
        if path is not None:
            target = path if path.exists() else path.parent
            if not os.access(target, os.W_OK):
                problems.append(f"{path}: audit log not writable")
        return problems

    # ------------------------------------------------------------------ one review
    def admit(self, review: Review, environment: str, *, deadline: float | None = None) -> Outcome:
        if environment not in self.environments:
            raise UnknownEnvironment(f"unknown environment {environment!r} (known: {', '.join(sorted(self.environments)) or 'none'})")
        env = self.settings.environment(environment)
        request = Request(source="admission", user=review.user, namespace=review.namespace, operation=review.operation, dry_run=review.dry_run,
                          mode=env.mode, groups=review.groups)
        options = GateOptions(environment=environment, clock=self.clock, ids=self.ids, request=request, timeout_s=0)
        kind = review.kind["kind"]

        if review.operation in ("DELETE", "CONNECT"):
            return self._exempt(review, env.mode, f"{review.operation} of {kind} {review.name or ''}: nothing is promoted", options, "other")
        if is_scale_only(kind, review.sub_resource, review.operation, review.obj, review.old_obj):
            return self._exempt(review, env.mode, f"scale of {kind} {review.name or ''}: the model is unchanged", options, "other")

        try:
            found = find_refs(review.kind["group"], kind, review.obj)
        except StoreError as exc:
            error = exc

            def bad_reference(_: Prepared):
                raise error

            decision = check_loaded(bad_reference, options, self.sink, prepared=self.prepared)
            return self._answer(review, env.mode, environment, [decision], "other", denial_code=403)

        if not found.refs:
            if env.require_model_reference and found.model_kind != "other":
                finding = Finding("MLG-ADM-001", f"{kind} {review.name or ''} names no model (annotation mlgate.dev/release or "
                                  f"mlgate.dev/model-digest, or a storage URI), and {environment} requires every workload to name one", "high")
                decision = refuse(finding, options, self.sink, prepared=self.prepared)
                return self._answer(review, env.mode, environment, [decision], found.model_kind, denial_code=403)
            return self._exempt(review, env.mode, f"{kind} {review.name or ''} names no model", options, found.model_kind)

        decisions, codes = [], []
        for ref in found.refs:
            decision, failure = self._judge(ref, options, deadline)
            decisions.append(decision)
            codes.append(failure)
        # A reference the store cannot resolve is a deny (no evidence), not an internal failure.
        internal = any(d.result == "error" and code == 500 for d, code in zip(decisions, codes))
        return self._answer(review, env.mode, environment, decisions, found.model_kind, denial_code=500 if internal else 403)

    def _judge(self, ref: ModelRef, options: GateOptions, deadline: float | None) -> tuple[Decision, int]:
        failure = {"code": 500}
        revision = self.prepared.revision if self.prepared else ""

        def load(prepared: Prepared):
            if deadline is not None and self.monotonic() > deadline:
                raise StoreError(f"deadline passed before {ref.describe()} was resolved; refusing")
            try:
                # The store gives up a little before the request does, so the deny names the store.
                store_deadline = None if deadline is None else deadline - STORE_MARGIN_S
                return self.store.load(ref, prepared.trust, trust_key=revision, deadline=store_deadline)
            except StoreError:
                failure["code"] = 403
                raise

        engine = self.prepared.engine if self.prepared else None
        if isinstance(engine, DeadlineBoundEngine):
            engine.deadline = deadline
        return check_loaded(load, options, self.sink, prepared=self.prepared), failure["code"]

    # ------------------------------------------------------------------ answers
    def _exempt(self, review: Review, mode: str, reason: str, options: GateOptions, model_kind: str) -> Outcome:
        decision = exempt(" ".join(reason.split()), options, self.sink, prepared=self.prepared)
        outcome = self._answer(review, mode, options.environment, [decision], model_kind, denial_code=500)
        if decision.allowed:
            outcome.result = "exempt"
        return outcome

    def _answer(self, review: Review, mode: str, environment: str, decisions: list[Decision], model_kind: str, *, denial_code: int) -> Outcome:
        allowed = all(d.allowed for d in decisions)
        worst = "error" if any(d.result == "error" for d in decisions) else ("deny" if not allowed else "allow")
        annotations = {
            "decision-id": ",".join(d.decision_id for d in decisions),
            "policy-revision": self.prepared.revision if self.prepared else "",
            "result": worst,
            "mode": mode,
            "environment": environment,
        }
        releases = [f"{d.release['name']}@{d.release['version']}" for d in decisions if d.release]
        if releases:
            annotations["releases"] = ",".join(releases)
        if review.dry_run:
            annotations["dry-run"] = "true"
        warnings = [f"mlgate [{w.id}] {w.message}" for d in decisions for w in d.warnings if d.exempt is None]
        if allowed:
            return Outcome(response(review.api_version, review.uid, allowed=True, warnings=warnings, audit_annotations=annotations), worst, model_kind, decisions)
        failing = [d for d in decisions if not d.allowed]
        if mode == "audit":
            return Outcome(response(review.api_version, review.uid, allowed=True, audit_annotations=annotations), worst, model_kind, decisions)
        if mode == "warn":
            extra = [f"mlgate (warn mode, would deny) {line}" for d in failing for line in _lines(d)]
            return Outcome(response(review.api_version, review.uid, allowed=True, warnings=extra + warnings, audit_annotations=annotations), worst, model_kind, decisions)
        code = 500 if worst == "error" and denial_code == 500 else 403
        message = " | ".join(deny_message(d) for d in failing)
        return Outcome(response(review.api_version, review.uid, allowed=False, code=code, message=message, warnings=warnings,
                                audit_annotations=annotations), worst, model_kind, decisions)


class DeadlineBoundEngine:
    """An OPA engine whose deadline, for each decision, is the shorter of its own
    (``--opa-timeout``, ``engine.opa.timeoutSeconds``) and the time left before the admission
    deadline minus :data:`ENGINE_MARGIN_S`: OPA down, slow or silent is a recorded deny (500)
    that names OPA and reaches the apiserver in time, never the webhook's own deadline answer.

    Used only on the gate thread that built it (like every engine here), so setting
    :attr:`deadline` per request and the inner engine's ``timeout_s`` per decision is not racy."""

    def __init__(self, inner: Any, monotonic: Callable[[], float]):
        self.inner = inner
        self.name, self.version = inner.name, inner.version
        self.takes_input_json = getattr(inner, "takes_input_json", False)
        self.timeout_s = float(inner.timeout_s)  # the configured one
        self.monotonic = monotonic
        self.deadline: float | None = None  # monotonic; set by Gatekeeper for each request

    def decide(self, input_doc: dict[str, Any], input_json: bytes | None = None) -> Any:
        return self.decide_with_id(input_doc, input_json)[0]

    def decide_with_id(self, input_doc: dict[str, Any], input_json: bytes | None = None) -> tuple[Any, str | None]:
        timeout = self.timeout_s
        if self.deadline is not None:
            left = self.deadline - self.monotonic() - ENGINE_MARGIN_S
            if left < MIN_ENGINE_S:
                raise EngineError(f"no time left to ask OPA before the admission deadline ({max(left, 0) * 1000:.0f} ms); denied")
            timeout = min(timeout, round(left, 3))
        self.inner.timeout_s = timeout
        return self.inner.decide_with_id(input_doc, input_json) if input_json is not None else self.inner.decide_with_id(input_doc)

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()


def _rank(finding: Finding) -> tuple[int, str, str]:
    return (-SEVERITIES.index(finding.severity) if finding.severity in SEVERITIES else 0, finding.id, finding.message)


def _lines(decision: Decision) -> list[str]:
    if decision.result == "error":
        return [f"error: {decision.error}"]
    return [f"[{v.id}] {v.message}" for v in sorted(decision.violations, key=_rank)]


def deny_message(decision: Decision, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``mlgate: NAME@VERSION denied for ENV (decision ID): [ID] message; ...``, most severe first, bounded."""
    what = f"{decision.release['name']}@{decision.release['version']}" if decision.release else "the model"
    verb = "could not be judged" if decision.result == "error" else "denied"
    head = f"mlgate: {what} {verb} for {decision.environment} (decision {decision.decision_id}): "
    lines = _lines(decision)
    text = head
    for i, line in enumerate(lines):
        candidate = text + ("; " if i else "") + line
        rest = len(lines) - i - 1
        tail = f" (+{rest} more)" if rest else ""
        if len(one_line(candidate, 10**6)) + len(tail) > limit - 16:
            return one_line(text + f" (+{len(lines) - i} more)", limit)
        text = candidate
    return one_line(text, limit)
