"""Replay: what a proposed policy would have decided about past decisions (``mlgate audit replay``).

Every decision recorded with its input document (``--audit-input store``, the default) is
evaluated again, on the very input the policy saw (rebuilt from the record and the trail's
evidence store and checked against the recorded ``input_digest``), under the proposed policy
(a directory or an OPA bundle, with ``--data`` overrides), through the same engine factory and
the same :func:`mlgate.gate.decide` as the gate. Each decision whose result would change is a
*flip*: ``allow->deny`` (the change refuses what was promoted) or ``deny->allow`` (the change
lets through what was refused; an original ``error`` counts as a deny, the gate's fail-closed
answer), with the violations the proposed policy adds and removes.

Time: ``at="original"`` evaluates at the recorded evaluation time (the input's ``evaluated_at``);
``at="now"`` replaces it with the injected clock's time (an approval that has lapsed since then
shows up).

Nothing is appended to the trail unless the caller records the outcome (:func:`replay_record`):
such a record has ``kind: "replay"`` and ``action: "replay"``, names the original decision
(``replay_of``), and is never counted as a decision (``mlgate audit show``, ``audit report``).

Records whose input was not kept (``--audit-input erase``, or an error before evaluation) are
listed as not replayable. A stored input that is missing or does not match its digest is an
error (AuditError): a replay that silently skips a decision could hide a deny->allow flip.

Sits above the gate (the tools layer); imports neither click nor the web framework.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable
from typing import Any

from mlgate.errors import MlgateError, PolicyError

REPLAY_VERSION = "mlgate.dev/audit-replay/v1"
AT_CHOICES = ("original", "now")


@dataclass(frozen=True)
class ReplayOptions:
    policy: Path  # a policy directory or an OPA bundle (*.tar.gz)
    data_overrides: tuple[Path, ...] = ()
    bundle_key: Path | None = None
    engine: str = "embedded"
    at: str = "original"
    since: dt.datetime | None = None
    timeout_s: float = 10.0


@dataclass
class Replayed:
    """One decision evaluated again."""

    record: dict[str, Any]  # the original record
    result: str  # allow | deny | error, under the proposed policy
    violations: list[dict[str, str]]
    warnings: list[dict[str, str]]
    error: str | None
    evaluated_at: str

    @property
    def original(self) -> str:
        return str(self.record.get("result"))

    @property
    def flip(self) -> str | None:
        """``allow->deny``, ``deny->allow`` or None (an error counts as a deny on either side)."""
        was, now = self.original == "allow", self.result == "allow"
        if was == now:
            return None
        return "allow->deny" if was else "deny->allow"

    @property
    def added(self) -> list[dict[str, str]]:
        old = {(v.get("id"), v.get("message")) for v in _findings(self.record.get("violations"))}
        return [v for v in self.violations if (v["id"], v["message"]) not in old]

    @property
    def removed(self) -> list[dict[str, str]]:
        new = {(v["id"], v["message"]) for v in self.violations}
        return [v for v in _findings(self.record.get("violations")) if (v.get("id"), v.get("message")) not in new]

    def as_dict(self) -> dict[str, Any]:
        rec = self.record
        return {"decision_id": rec.get("decision_id"), "sequence": rec.get("sequence"), "timestamp": rec.get("timestamp"),
                "release": _release_name(rec), "environment": rec.get("environment"), "subject_digest": rec.get("subject_digest"),
                "original": self.original, "replayed": self.result, "flip": self.flip, "evaluated_at": self.evaluated_at,
                "added": self.added, "removed": self.removed, "error": self.error}


@dataclass
class ReplayResult:
    location: str
    policy: dict[str, Any]
    at: str
    since: str | None
    replayed: list[Replayed] = field(default_factory=list)
    not_replayable: list[dict[str, Any]] = field(default_factory=list)

    @property
    def flips(self) -> list[Replayed]:
        return [r for r in self.replayed if r.flip]

    @property
    def changed(self) -> list[Replayed]:
        """Same result, different violations."""
        return [r for r in self.replayed if not r.flip and (r.added or r.removed)]

    @property
    def exit_code(self) -> int:
        """1 when anything flips from deny to allow (the change would let through what was refused), else 0."""
        return 1 if any(r.flip == "deny->allow" for r in self.replayed) else 0

    def groups(self, items: Iterable[Replayed]) -> list[tuple[str, str, list[Replayed]]]:
        """(release, environment, items) in release/environment order, items in trail order."""
        out: dict[tuple[str, str], list[Replayed]] = {}
        for r in items:
            out.setdefault((_release_name(r.record), str(r.record.get("environment"))), []).append(r)
        return [(rel, env, rs) for (rel, env), rs in sorted(out.items())]

    def as_dict(self) -> dict[str, Any]:
        flips = self.flips
        return {
            "apiVersion": REPLAY_VERSION, "location": self.location, "policy": self.policy, "at": self.at, "since": self.since,
            "summary": {"replayed": len(self.replayed), "flips": len(flips),
                        "allow_to_deny": sum(r.flip == "allow->deny" for r in flips),
                        "deny_to_allow": sum(r.flip == "deny->allow" for r in flips),
                        "changed_findings": len(self.changed), "not_replayable": len(self.not_replayable)},
            "flips": [r.as_dict() for r in flips],
            "changed": [r.as_dict() for r in self.changed],
            "not_replayable": self.not_replayable,
        }


def _findings(raw: Any) -> list[dict[str, Any]]:
    return [v for v in raw or [] if isinstance(v, dict)]


def _release_name(rec: dict[str, Any]) -> str:
    rel = rec.get("release") if isinstance(rec.get("release"), dict) else {}
    return f"{rel.get('name')}@{rel.get('version')}" if rel.get("name") else "-"


def is_decision(rec: dict[str, Any]) -> bool:
    """A real gate decision: not a repair, recover-head or replay record."""
    return "kind" not in rec and rec.get("action") != "replay"


class Replayer:
    """The proposed policy, loaded and compiled once, and its engine."""

    def __init__(self, options: ReplayOptions):
        from mlgate.canonical import digest_json
        from mlgate.policy.engine import create_engine
        from mlgate.policy.layers import load_layers
        from mlgate.safeio import display

        if options.at not in AT_CHOICES:
            raise PolicyError(f"--at must be one of {', '.join(AT_CHOICES)}, got {options.at!r}", field="--at")
        self.options = options
        # layered as mlgate check layers it (an organisation's package alone: the library beneath it)
        self.policy = load_layers(options.policy, data_overrides=list(options.data_overrides), bundle_key=options.bundle_key)
        self.engine = create_engine(options.engine, self.policy, timeout_s=options.timeout_s)
        engine_facts = {"name": self.engine.name, "version": self.engine.version}
        shown = ", ".join(display(p) for p in options.policy) if isinstance(options.policy, (tuple, list)) else display(options.policy)
        self.inputs = {"policy": {"path": shown, "revision": self.policy.bundle_revision},
                       "data_overrides": [{"path": name, "digest": digest} for name, digest in self.policy.overrides],
                       "engine": engine_facts}
        # The proposed policy's revision: its files, the overrides and the engine (no trust policy: the
        # replayed input already holds the verified facts, and nothing is verified again).
        self.revision = digest_json({"policy": self.policy.bundle_revision, "data_overrides": [d for _n, d in self.policy.overrides],
                                     "engine": engine_facts})

    def evaluate(self, rec: dict[str, Any], doc: dict[str, Any], now: dt.datetime) -> Replayed:
        from mlgate.clock import epoch_ns, rfc3339
        from mlgate.gate import decide
        from mlgate.policy.engine import evaluate

        doc = dict(doc)
        if self.options.at == "now":
            doc["evaluated_at"], doc["evaluated_at_ns"] = rfc3339(now), epoch_ns(now)
        state: dict[str, Any] = {}
        try:
            raw = evaluate(self.engine, doc, state)
            allowed, violations, warnings = decide(raw)
        except MlgateError as exc:
            return Replayed(rec, "error", [], [], exc.diagnostics(), str(doc.get("evaluated_at")))
        return Replayed(rec, "allow" if allowed else "deny", [{"id": v.id, "message": v.message} for v in violations],
                        [{"id": w.id, "message": w.message} for w in warnings], None, str(doc.get("evaluated_at")))


def replay(trail: Any, options: ReplayOptions, *, now: dt.datetime, replayer: Replayer | None = None) -> ReplayResult:
    """Evaluate every stored decision of ``trail`` (at or after ``options.since``) again under the
    proposed policy. Raises MlgateError when the policy cannot be loaded or a stored input is
    missing or changed."""
    from mlgate.audit.record import InputNotStored, load_input
    from mlgate.audit.verify import iter_records
    from mlgate.clock import parse_time, rfc3339

    replayer = replayer or Replayer(options)
    result = ReplayResult(location=trail.location, policy={"revision": replayer.revision, **replayer.inputs}, at=options.at,
                          since=rfc3339(options.since) if options.since else None)
    for _where, _raw, rec in iter_records(trail):
        if not is_decision(rec):
            continue
        if options.since is not None:
            try:
                if parse_time(str(rec.get("timestamp"))) < options.since:
                    continue
            except ValueError:
                pass  # an unreadable time: replayed rather than silently left out
        try:
            doc = load_input(rec, trail.evidence)
        except InputNotStored as exc:
            result.not_replayable.append({"decision_id": rec.get("decision_id"), "sequence": rec.get("sequence"),
                                          "release": _release_name(rec), "environment": rec.get("environment"),
                                          "result": rec.get("result"), "reason": exc.message})
            continue
        result.replayed.append(replayer.evaluate(rec, doc, now))
    return result


def replay_record(r: Replayed, replayer: Replayer, *, decision_id: str, now: dt.datetime, actor: str | None, at: str) -> dict[str, Any]:
    """The audit record of one replayed decision: ``kind``/``action`` ``replay``, never a decision."""
    from mlgate import __version__
    from mlgate.clock import rfc3339

    rec = r.record
    return {
        "kind": "replay", "action": "replay", "decision_id": decision_id, "timestamp": rfc3339(now), "actor": actor, "source": "replay",
        "replay_of": {"decision_id": rec.get("decision_id"), "sequence": rec.get("sequence"), "hash": rec.get("hash"),
                      "result": rec.get("result")},
        "at": at, "evaluated_at": r.evaluated_at,
        "release": rec.get("release"), "subject_digest": rec.get("subject_digest"), "environment": rec.get("environment"),
        "policy_revision": replayer.revision, "revision_inputs": replayer.inputs,
        "engine": replayer.engine.name, "engine_version": replayer.engine.version, "mlgate_version": __version__,
        "input_digest": rec.get("input_digest"), "result": r.result, "flip": r.flip,
        "violations": r.violations, "warnings": r.warnings, "error": r.error,
    }


# -- rendering --------------------------------------------------------------------------------


def _finding_lines(r: Replayed, bullet: str) -> list[str]:
    lines = [f"{bullet}+ {v['id']}: {v['message']}" for v in r.added]
    lines += [f"{bullet}- {v['id']}: {v['message']}" for v in r.removed]
    if r.error:
        lines.append(f"{bullet}! error: {r.error}")
    return lines


def render_text(result: ReplayResult) -> str:
    s = result.as_dict()["summary"]
    out = [(f"mlgate: replayed {s['replayed']} decision(s) of {result.location} under policy revision {result.policy['revision'][:16]} "
            f"(at {result.at} time): {s['flips']} flip(s), {s['allow_to_deny']} allow->deny, {s['deny_to_allow']} deny->allow; "
            f"{s['changed_findings']} with other findings; {s['not_replayable']} not replayable")]
    for release, env, items in result.groups(result.flips):
        out.append(f"{release} {env}:")
        for r in items:
            out.append(f"  {r.flip.upper()}  decision {r.record.get('decision_id')} (sequence {r.record.get('sequence')}, {r.record.get('timestamp')})")
            out += _finding_lines(r, "    ")
    if result.not_replayable:
        out.append(f"not replayable: {len(result.not_replayable)} decision(s) (input not stored)")
        for n in result.not_replayable:
            out.append(f"  decision {n['decision_id']} (sequence {n['sequence']}, {n['release']} {n['environment']}): {n['reason']}")
    return "\n".join(out)


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(result: ReplayResult) -> str:
    """For a pull-request comment."""
    s = result.as_dict()["summary"]
    verdict = ":x: lets through decisions that were refused" if result.exit_code else (
        ":warning: refuses decisions that were allowed" if s["allow_to_deny"] else ":white_check_mark: no decision flips")
    out = [f"### mlgate policy replay: {verdict}", "",
           (f"Replayed **{s['replayed']}** recorded decision(s) under policy revision `{result.policy['revision'][:16]}` "
            f"(at {result.at} time): **{s['allow_to_deny']}** allow→deny, **{s['deny_to_allow']}** deny→allow, "
            f"{s['changed_findings']} with other findings, {s['not_replayable']} not replayable (input not stored)."), ""]
    if result.flips:
        out += ["| release | environment | flip | decision | findings added | findings removed |", "|---|---|---|---|---|---|"]
        for release, env, items in result.groups(result.flips):
            for r in items:
                added = "<br>".join(f"`{v['id']}` {_md(v['message'])}" for v in r.added) or "-"
                removed = "<br>".join(f"`{v['id']}` {_md(v['message'])}" for v in r.removed) or "-"
                out.append(f"| {_md(release)} | {_md(env)} | {r.flip.replace('->', '→')} | `{r.record.get('decision_id')}` "
                           f"(#{r.record.get('sequence')}) | {added} | {removed} |")
    return "\n".join(out) + "\n"
