"""The core gate: one call from a release to a recorded decision (design.md section 2).

Both front doors call :func:`check`. :func:`decide` is the only place that can allow.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlgate.audit import AuditReceipt, AuditSink
from mlgate.canonical import escape_surrogates, escape_text, explain, sha256_hex
from mlgate.clock import Clock, IdFactory, SystemClock, rfc3339, uuid4_ids
from mlgate.errors import AuditError, MlgateError, PolicyError
from mlgate.inputdoc import FACT_KEYS, Request, build_input, canonical_input

if TYPE_CHECKING:  # pragma: no cover
    from mlgate.evidence import Facts
    from mlgate.manifest import Release

SEVERITIES = ("low", "medium", "high", "critical")

log = logging.getLogger("mlgate.gate")


@dataclass(frozen=True)
class Finding:
    id: str
    message: str
    severity: str = "high"
    controls: tuple[str, ...] = ()
    remediation: str | None = None
    subject: str | None = None
    waiver: dict[str, Any] | None = field(default=None, compare=False)  # a violation a signed waiver turned into a warning

    def as_dict(self) -> dict[str, Any]:
        out = {"id": self.id, "message": self.message, "severity": self.severity, "controls": list(self.controls),
               "remediation": self.remediation, "subject": self.subject}
        if self.waiver is not None:
            out["waiver"] = dict(self.waiver)
        return out


@dataclass(frozen=True)
class Decision:
    decision_id: str
    result: str  # allow | deny | error
    environment: str
    evaluated_at: dt.datetime
    release: dict[str, Any] | None = None
    model_digest: str | None = None
    violations: tuple[Finding, ...] = ()
    warnings: tuple[Finding, ...] = ()
    error: str | None = None
    input_digest: str | None = None
    policy_revision: str | None = None
    # What the policy revision digests (policy, data overrides, trust policy and its files,
    # settings file, engine): the audit record shows an auditor which of them were used.
    revision_inputs: dict[str, Any] | None = field(default=None, compare=False)
    engine: str | None = None
    engine_version: str | None = None
    engine_decision_id: str | None = None  # the engine's own id for this decision (OPA's decision_id)
    evidence_digests: dict[str, str] = field(default_factory=dict)
    approvals: tuple[dict[str, Any], ...] = ()  # 11.50 manifestation: name, role, meaning, time, verified
    waivers: tuple[dict[str, Any], ...] = ()  # every waiver the release carries: applied or not, and why not
    manifest_path: str | None = None
    audit: AuditReceipt | None = None
    exempt: str | None = None  # why the request was recorded without an evaluation (admission only)
    # The facts the policy saw; kept for `--audit-input store`, never rendered.
    input_document: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    # The canonical JSON of its collected facts, serialised once per Facts: what the store keeps, content-addressed.
    input_blobs: dict[str, bytes] | None = field(default=None, repr=False, compare=False)
    # The time split (mlgate.policy.timesplit): {key, policy, findings (JSON), summary (the record of a
    # verification summary they came from, else None)}; None when the engine evaluated the whole decision.
    static: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def allowed(self) -> bool:
        return self.result == "allow"

    @property
    def exit_code(self) -> int:
        return {"allow": 0, "deny": 1}.get(self.result, 2)

    def as_dict(self) -> dict[str, Any]:
        return {
            "apiVersion": "mlgate.dev/decision/v1",
            "decision_id": self.decision_id,
            "allowed": self.allowed,
            "result": self.result,
            "environment": self.environment,
            "evaluated_at": rfc3339(self.evaluated_at),
            "release": self.release,
            "model_digest": self.model_digest,
            "violations": [v.as_dict() for v in self.violations],
            "warnings": [w.as_dict() for w in self.warnings],
            "error": self.error,
            "input_digest": self.input_digest,
            "policy_revision": self.policy_revision,
            "engine": {"name": self.engine, "version": self.engine_version},
            "evidence_digests": self.evidence_digests,
            "approvals": list(self.approvals),
            "waivers": [dict(w) for w in self.waivers],
            "audit": None if self.audit is None else {"location": self.audit.location, "sequence": self.audit.sequence, "hash": self.audit.hash},
        }


def _findings(raw: Any, where: str) -> tuple[Finding, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise PolicyError(f"decision.{where} must be a list, got {type(raw).__name__}")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not isinstance(item.get("message"), str):
            raise PolicyError(f"decision.{where}[{i}] must be an object with string id and message")
        severity = item.get("severity") if item.get("severity") in SEVERITIES else "high"
        controls = tuple(str(c) for c in item.get("controls") or [] if isinstance(c, (str, int)))
        remediation = item.get("remediation") if isinstance(item.get("remediation"), str) else None
        subject = item.get("subject") if isinstance(item.get("subject"), str) else None
        waiver = _waiver_of(item.get("waiver"), f"decision.{where}[{i}].waiver") if where == "warnings" else None
        out.append(Finding(item["id"], " ".join(item["message"].split()), severity, controls, remediation, subject, waiver))
    return tuple(sorted(out, key=lambda f: (f.id, f.message)))


_WAIVER_KEYS = ("path", "signer_id", "printed_name", "role", "signed_at", "expires_at", "justification")
_WAIVER_REPORT_KEYS = ("path", "signer_id", "printed_name", "role", "expires_at", "justification", "reason")


def _waiver_of(raw: Any, where: str) -> dict[str, Any] | None:
    """The waiver a policy attached to a warning (who waived the violation, until when, why)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise PolicyError(f"{where} must be an object, got {type(raw).__name__}")
    return {k: raw.get(k) if isinstance(raw.get(k), str) else None for k in _WAIVER_KEYS}


def _waivers(raw: Any) -> tuple[dict[str, Any], ...]:
    """decision.waivers: per waiver shipped, whether it applied, to which rules, and why not."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise PolicyError(f"decision.waivers must be a list, got {type(raw).__name__}")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("applied"), bool):
            raise PolicyError(f"decision.waivers[{i}] must be an object with a boolean applied")
        entry: dict[str, Any] = {k: item.get(k) if isinstance(item.get(k), str) else None for k in _WAIVER_REPORT_KEYS}
        entry["applied"] = item["applied"]
        for key in ("rules", "waived"):
            values = item.get(key)
            entry[key] = [v for v in values if isinstance(v, str)] if isinstance(values, list) else []
        out.append(entry)
    return tuple(out)


def decide(raw: Any) -> tuple[bool, tuple[Finding, ...], tuple[Finding, ...]]:
    """Turn the policy's raw decision into (allowed, violations, warnings).

    A violation a signed waiver covers arrives as a warning (the policy applies waivers,
    ``policies/mlgate/waivers.rego``); nothing here can waive anything.

    Fail closed (OPA's ``ResultSet.Allowed()`` pitfall): only the JSON literal ``true`` allows;
    ``"true"``, ``1``, a missing key or a non-object all deny. An ``allow: true`` that comes
    with violations is a contradictory policy and denies too.
    """
    if not isinstance(raw, dict):
        raise PolicyError(f"data.mlgate.decision must be an object, got {type(raw).__name__}")
    violations = _findings(raw.get("violations"), "violations")
    warnings = _findings(raw.get("warnings"), "warnings")
    allowed = raw.get("allow") is True and not violations
    if raw.get("allow") is True and violations:
        violations = violations + (Finding("MLG-CORE-001", "the policy answered allow: true together with violations; denied as contradictory", "critical"),)
    if not allowed and not violations:
        violations = (Finding("MLG-CORE-002", f"the policy did not allow (allow is {raw.get('allow')!r}) and gave no violation; denied", "high"),)
    return allowed, violations, warnings


@dataclass
class GateOptions:
    environment: str
    # The policy: a directory, an OPA bundle or an oci:// reference, or several of them in order (the
    # layers of mlgate.policy.layers); None: `policy` of the settings file, else the bundled library.
    policy_dir: Path | str | tuple[Path | str, ...] | None = None
    data_overrides: list[Path] = field(default_factory=list)
    trust_policy: Path | None = None
    engine: str = "embedded"  # embedded | rego-cpp | opa (mlgate.policy.engine.ENGINES)
    opa: Any = None  # mlgate.policy.engine.opa.OpaSettings, for engine="opa"
    bundle_key: Path | None = None  # public key verifying each OPA bundle (or oci:// artifact) of policy_dir
    settings: Any = None  # mlgate.settings.Settings; None: read .mlgate.yaml in the working directory
    timeout_s: float = 10.0
    clock: Clock = field(default_factory=SystemClock)
    ids: IdFactory = uuid4_ids
    request: Request = field(default_factory=Request)
    time_split: bool = False  # cache the findings that do not depend on the time (the webhook; mlgate.policy.timesplit)
    # With the time split: (release, facts, environment, static key, prepared) -> (findings, record) | None, where
    # time-independent findings may come from instead of the engine (the webhook's acceptSummaries).
    static_source: Callable[..., Any] | None = None


@dataclass(frozen=True)
class Prepared:
    """What a long-running front door loads once: the policy, its engine and the trust policy.

    The engine is bound to the thread that built it (a regorus ``Engine`` is unsendable): a
    server builds and uses its :class:`Prepared` from one dedicated thread.

    ``revision`` is the policy revision recorded with every decision (design.md section 10,
    invariant 2): the sha256 over every input to the decision other than the release, namely the
    policy's own files, each data override, the trust policy used and every file it names, the
    settings file, and the engine with its version. ``inputs`` says what those were, for the record.
    """

    policy: Any
    engine: Any
    trust: Any
    revision: str = ""
    inputs: dict[str, Any] = field(default_factory=dict, compare=False)


def decision_revision(policy: Any, trust: Any, engine: Any, settings: Any, *, trust_from: str, policy_source: str) -> tuple[str, dict[str, Any]]:
    """(revision, inputs): the revision digests content only (never where a file lies), so the
    same inputs give the same revision from any working directory."""
    from mlgate.canonical import digest_json

    expected = getattr(engine, "expected_revision", None)  # the remote OPA: the bundle it must serve
    engine_facts = {"name": engine.name, "version": engine.version, **({"bundle_revision": expected} if expected else {})}
    revision = digest_json({
        "policy": policy.bundle_revision,
        "data_overrides": [digest for _name, digest in policy.overrides],
        "trust_policy": trust.revision,
        "settings": settings.digest,
        "engine": engine_facts,
    })
    inputs = {
        "policy": {"path": policy_source, "revision": policy.bundle_revision, **({"oci": policy.origin} if getattr(policy, "origin", None) else {}),
                   # a layered policy (mlgate.policy.layers): each layer in order, its own revision, "beneath" for the library mlgate put there
                   **({"layers": [layer.record() for layer in policy.layers]} if getattr(policy, "layers", None) else {})},
        "data_overrides": [{"path": name, "digest": digest} for name, digest in policy.overrides],
        "trust_policy": {**trust.as_record(), "from": trust_from},
        "settings": settings.as_record(),
        "engine": engine_facts,
    }
    return revision, inputs


def prepare(options: GateOptions) -> Prepared:
    """Load the policy, build its engine and load the trust policy; raise MlgateError if any fails.

    The settings file (``options.settings``, else ``.mlgate.yaml`` in the working directory) gives
    the policy and the trust policy when the options do not. There is no default trust policy:
    without one the decision is an error (mlgate trusts no signer it was not told to).

    The policy may be several sources, layered (:func:`mlgate.policy.layers.load_layers`); one
    source that defines no ``data.mlgate.decision`` (an organisation's package alone) is layered on
    the bundled library. The record's ``revision_inputs.policy.layers`` lists the layers."""
    from mlgate.policy.engine import create_engine
    from mlgate.policy.layers import load_layers, source_label
    from mlgate.settings import find_settings, trust_policy_path
    from mlgate.signing.trust import load_trust_policy

    timeout = options.timeout_s
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) or timeout < 0:
        # nan passes every comparison and inf never expires: refused before any engine starts. 0 is the webhook's:
        # no fork per evaluation, each request's deadline kept by its event loop (gatekeeper/service.py).
        raise PolicyError(f"the evaluation timeout must be a finite number of seconds, 0 or above, got {timeout!r}", field="timeout")
    settings = options.settings if options.settings is not None else find_settings()
    policy_dir = options.policy_dir if options.policy_dir is not None else settings.policy
    policy = load_layers(policy_dir, data_overrides=options.data_overrides, bundle_key=options.bundle_key)
    engine = create_engine(options.engine, policy, timeout_s=options.timeout_s, opa=options.opa, time_split=options.time_split)
    trust_path, trust_from = trust_policy_path(options.trust_policy, settings, policy.trust_policy_path)
    trust = load_trust_policy(trust_path)
    revision, inputs = decision_revision(policy, trust, engine, settings, trust_from=trust_from,
                                         policy_source=source_label(policy_dir, policy))
    return Prepared(policy=policy, engine=engine, trust=trust, revision=revision, inputs=inputs)


# A loader turns the prepared gate into (release, facts); the CLI loads a directory, the
# admission webhook resolves a model reference through its evidence store and cache.
Loader = Callable[[Prepared], "tuple[Release, Facts]"]


def check(release_dir: Path | str, options: GateOptions, sink: AuditSink, *, prepared: Prepared | None = None,
          fetch: Callable[[], Path] | None = None) -> Decision:
    """Evaluate one release directory for one environment and record the decision, on every path.

    ``fetch``, when given, produces the release directory first (e.g. a download from a model
    registry); it runs inside the recorded path, so a failed fetch is an error decision too."""

    def load(p: Prepared):
        from mlgate import evidence
        from mlgate.manifest import load_release

        release = load_release(fetch() if fetch is not None else Path(release_dir))
        return release, evidence.collect(release, p.trust)

    return check_loaded(load, options, sink, prepared=prepared)


def check_loaded(load: Loader, options: GateOptions, sink: AuditSink, *, prepared: Prepared | None = None) -> Decision:
    """Like :func:`check`, with the release and its facts coming from ``load`` (already resolved,
    possibly cached). Every failure, in ``load`` too, is an error decision, recorded."""
    decision_id = options.ids()
    now = options.clock.now()
    base: dict[str, Any] = {"decision_id": decision_id, "environment": options.environment, "evaluated_at": now}
    state: dict[str, Any] = {}
    try:
        decision = _evaluate(load, options, now, base, state, prepared)
    except MlgateError as exc:
        decision = Decision(result="error", error=exc.diagnostics(), **base, **state)
    except Exception as exc:  # noqa: BLE001 - a bug or an unforeseen input: still a recorded error decision (deny)
        # Logged with its traceback (the bug stays visible to whoever runs mlgate); the decision
        # itself fails closed and is recorded like any other (design.md section 8: every path).
        log.exception("internal error while deciding %s", decision_id)
        decision = Decision(result="error", error=f"internal error: {_one_line(exc)}; denied", **base, **state)
    return _record(decision, options, sink)


def exempt(reason: str, options: GateOptions, sink: AuditSink, *, prepared: Prepared | None = None) -> Decision:
    """Record a request that is not a model promotion (a DELETE, a scale, an object naming no
    model): no release to judge, so nothing for the policy to see. Still one record per request.

    The allow goes through :func:`decide` on a literal ``allow: true``, so decide() stays the only
    place that can allow; the reason is kept as a low-severity warning in the record.
    """
    now = options.clock.now()
    allowed, violations, warnings = decide({"allow": True, "violations": [], "warnings": [
        {"id": "MLG-ADM-000", "message": reason, "severity": "low"}]})
    decision = Decision(
        decision_id=options.ids(), result="allow" if allowed else "deny", environment=options.environment, evaluated_at=now,
        violations=violations, warnings=warnings, exempt=reason,
        policy_revision=prepared.revision if prepared is not None else None,
        revision_inputs=prepared.inputs if prepared is not None else None,
    )
    return _record(decision, options, sink)


def refuse(finding: Finding, options: GateOptions, sink: AuditSink, *, prepared: Prepared | None = None) -> Decision:
    """Record a deny that needs no policy evaluation (e.g. an environment that requires every
    workload to name its model, and this one names none)."""
    decision = Decision(
        decision_id=options.ids(), result="deny", environment=options.environment, evaluated_at=options.clock.now(),
        violations=(finding,), policy_revision=prepared.revision if prepared is not None else None,
        revision_inputs=prepared.inputs if prepared is not None else None,
    )
    return _record(decision, options, sink)


def _evaluate(load: Loader, options: GateOptions, now: dt.datetime, base: dict[str, Any], state: dict[str, Any],
              prepared: Prepared | None) -> Decision:
    if prepared is None:
        prepared = prepare(options)
    state["policy_revision"] = prepared.revision
    state["revision_inputs"] = prepared.inputs
    state["engine"], state["engine_version"] = prepared.engine.name, prepared.engine.version

    release, facts = load(prepared)
    state["release"] = {"name": release.name, "version": release.version, "owner": release.owner,
                        "manifest_digest": release.manifest_digest}
    state["manifest_path"] = str(release.manifest_path)
    state["model_digest"] = facts.model["digest"]
    state["evidence_digests"] = facts.all_digests
    state["approvals"] = tuple(
        {k: r.get(k) for k in ("printed_name", "signer_id", "role", "meaning", "environment", "signed_at", "verified", "reason", "path")}
        for r in facts.evidence["approvals"]["records"]
    )
    input_doc = build_input(release=release, facts=facts, environment=options.environment, now=now, request=options.request)
    try:
        texts: dict[str, bytes] = {}  # the canonical JSON of each part that is not a cached fact (the time split's key)
        input_json = canonical_input(input_doc, facts, texts)  # serialised once: its digest, and what the engine reads
    except ValueError as exc:  # a non-finite number, a lone surrogate, a value JSON cannot carry: never evaluate it
        raise PolicyError(f"the input document is not canonical JSON: {explain(input_doc, exc)}") from None
    state["input_digest"] = sha256_hex(input_json)
    state["input_document"] = input_doc
    state["input_blobs"] = {k: facts.canonical(k) for k in FACT_KEYS if input_doc.get(k) is getattr(facts, k)}

    from mlgate.policy.engine import evaluate

    keyed: list[str] = []

    def static_key() -> str:  # the time split's cache key: the input less its per-decision keys, the facts digested once
        from mlgate.policy.timesplit import static_key as key

        parts = {k: sha256_hex(text) for k, text in texts.items()}
        parts.update({k: facts.digest(k) for k in FACT_KEYS if input_doc.get(k) is getattr(facts, k)})
        k = key(input_doc, parts)
        keyed.append(k)
        engine = prepared.engine
        # A summary's findings are taken while it applies; the source is asked again at each decision that would
        # rely on them (its age, its key's validity, the evidence), and the engine evaluates them itself once it does not.
        if options.static_source is not None and (engine.static_findings(k) is None or engine.static_origin(k) is not None):
            found = options.static_source(release, facts, options.environment, k, prepared)
            if found is not None:
                engine.seed_static(k, *found)
            elif engine.static_origin(k) is not None:
                engine.drop_static(k)
        return k

    raw = evaluate(prepared.engine, input_doc, state, input_json=input_json, static_key=static_key)  # keeps the engine's decision id in state, on error too
    if keyed:  # the time split: the static findings this decision used, and whose they were (a summary, or this engine's)
        engine = prepared.engine
        whole = getattr(engine, "decided_whole", False)  # the tree-walker decided it all: nothing cached (or summarised) was used
        state["static"] = {"key": keyed[0], "policy": prepared.policy.revision, "split": engine.split.digest,
                           "findings": engine.static_findings(keyed[0]), "summary": None if whole else engine.static_origin(keyed[0])}
    allowed, violations, warnings = decide(raw)
    waivers = _waivers(raw.get("waivers"))
    return Decision(result="allow" if allowed else "deny", violations=violations, warnings=warnings, waivers=waivers, **base, **state)


def _record(decision: Decision, options: GateOptions, sink: AuditSink) -> Decision:
    """Append the decision's record. When the record itself cannot be sealed (a value with no
    JSON form that got past the input checks), the decision becomes an error and a reduced
    record is written instead: the ids, digests and the reason, none of the release's values.
    When the sink cannot write at all, the decision is an error with no record (no record, no allow)."""
    from mlgate.audit import UnsealableRecord, decision_record

    decision = _text_safe(decision)

    def fail(reason: str, receipt: AuditReceipt | None = None) -> Decision:
        return dataclasses.replace(decision, result="error", audit=receipt, error="; ".join(filter(None, [decision.error, reason])))

    try:
        try:
            receipt = sink.append(decision_record(decision, options.request))
        except AuditError:
            raise
        except Exception as exc:  # noqa: BLE001 - building the record failed: an unsealable record, told apart below
            log.exception("cannot build the audit record of %s", decision.decision_id)
            raise UnsealableRecord(f"the decision record could not be built: {_one_line(exc)}") from None
    except UnsealableRecord as exc:
        reason = f"{exc.message}; recorded without the release's values"
        reduced = Decision(decision_id=decision.decision_id, result="error", environment=decision.environment,
                           evaluated_at=decision.evaluated_at, model_digest=_text(decision.model_digest),
                           input_digest=_text(decision.input_digest), policy_revision=_text(decision.policy_revision),
                           engine=_text(decision.engine), engine_version=_text(decision.engine_version),
                           error="; ".join(filter(None, [_text(decision.error), reason])))
        try:
            receipt = sink.append(decision_record(reduced, Request(source=options.request.source, mode=options.request.mode)))
        except AuditError as again:
            return fail(f"{reason}; audit record not written: {again.diagnostics()}")
        return fail(reason, receipt)
    except AuditError as exc:
        # No record, no allow: the write failed, so the decision is an error (deny).
        return fail(f"audit record not written: {exc.diagnostics()}")
    return dataclasses.replace(decision, audit=receipt)


def _text_safe(decision: Decision) -> Decision:
    """The decision with every lone surrogate in its texts written as ``\\udXXX`` (see
    :mod:`mlgate.audit.record`): what is recorded is what the front doors print, and both can
    be encoded. The input document is not touched (it was refused if it held one)."""
    def finding(f: Finding) -> Finding:
        return dataclasses.replace(f, id=escape_text(f.id), message=escape_text(f.message),
                                   remediation=escape_surrogates(f.remediation), subject=escape_surrogates(f.subject),
                                   waiver=escape_surrogates(f.waiver))

    return dataclasses.replace(
        decision, release=escape_surrogates(decision.release), error=escape_surrogates(decision.error),
        evidence_digests=escape_surrogates(decision.evidence_digests),
        approvals=tuple(escape_surrogates(list(decision.approvals))), waivers=tuple(escape_surrogates(list(decision.waivers))),
        violations=tuple(map(finding, decision.violations)), warnings=tuple(map(finding, decision.warnings)),
        exempt=escape_surrogates(decision.exempt), manifest_path=decision.manifest_path)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
