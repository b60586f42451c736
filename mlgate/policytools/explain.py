"""``mlgate explain`` / ``mlgate check --explain``: why a decision came out as it did.

For each finding of a decision (violation, warning, waived violation): the rule (id, title,
file and line), what it found (the message), what passing requires (METADATA
``custom.expected``), the values of the environment tier it compared against (the same
data-key analysis ``policy doc`` uses, read from the tier's data), the input-document paths
the rule reads with their values in *this* input document (the analysis run over ``input``),
the remediation and the controls. For every decision, also which rules were evaluated and how
each came out (violated, waived, warned, passed), so an allow is explained too.

Nothing is evaluated again: the decision and the input document it was made on are explained
as they are (the input is the one whose digest is in the audit record).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mlgate.policytools.datakeys import STAR
from mlgate.policytools.doc import _MISSING, Catalogue, RuleDoc

#: Elements of a list shown per input path, and the length of one shown value.
MAX_ELEMENTS = 12
MAX_VALUE = 160


def _dotted(parts: tuple[Any, ...]) -> str:
    out = "input"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else "[*]" if p == STAR else f".{p}"
    return out


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(", ", ": "))
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def _get(doc: Any, parts: tuple[Any, ...]) -> Any:
    for p in parts:
        if isinstance(doc, dict) and isinstance(p, str) and p in doc:
            doc = doc[p]
        elif isinstance(doc, list) and isinstance(p, int) and 0 <= p < len(doc):
            doc = doc[p]
        else:
            return _MISSING
    return doc


@dataclass
class InputGroup:
    """The input paths a rule reads under one prefix: plain values, or one row per list element."""

    path: str  # input.evidence.bias_audit (plain) or input.evidence.bias_audit.comparisons[*] (per element)
    values: dict[str, Any] = field(default_factory=dict)  # plain: dotted path -> value (absent: "<missing>")
    elements: list[dict[str, Any]] = field(default_factory=list)  # per element: {"index": i, field: value}
    total: int = 0  # elements in the list (more than shown when > MAX_ELEMENTS)

    def as_dict(self) -> dict[str, Any]:
        if self.elements or self.total:
            return {"path": self.path, "elements": self.elements, "total": self.total}
        return {"path": self.path, "values": self.values}


def input_groups(paths: list[tuple[str, ...]], document: dict[str, Any]) -> list[InputGroup]:
    """Resolve the rule's input paths against the input document, grouped for people.

    A path without ``*`` is shown with its value; paths through the first ``*`` are grouped by
    the list they iterate (``comparisons[*]``) and shown one row per element, with the fields
    the rule reads (nested ``*`` below it are shown as their whole value)."""
    plain: dict[str, Any] = {}
    lists: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for path in paths:
        if STAR in path:
            at = path.index(STAR)
            lists.setdefault(path[:at], []).append(path[at + 1 :])
        else:
            value = _get(document, path)
            plain[_dotted(path)] = "<missing>" if value is _MISSING else value
    groups = [InputGroup(path="input", values=plain)] if plain else []
    for prefix, tails in sorted(lists.items()):
        container = _get(document, prefix)
        group = InputGroup(path=_dotted(prefix + (STAR,)))
        if isinstance(container, list):
            items: list[tuple[Any, Any]] = list(enumerate(container))
        elif isinstance(container, dict):
            items = list(container.items())
        else:
            group.values = {_dotted(prefix): "<missing>" if container is _MISSING else container}
            groups.append(group)
            continue
        group.total = len(items)
        for key, item in items[:MAX_ELEMENTS]:
            row: dict[str, Any] = {"index": key}
            for tail in sorted(set(tails)):
                cut = tail[: tail.index(STAR)] if STAR in tail else tail
                label = ".".join(str(t) for t in cut) or "(value)"
                value = _get(item, cut)
                row[label] = "<missing>" if value is _MISSING else value
            group.elements.append(row)
        groups.append(group)
    return groups


@dataclass
class ExplainedFinding:
    kind: str  # violation | warning | waived
    finding: Any  # mlgate.gate.Finding
    rule: RuleDoc | None
    thresholds: dict[str, Any]
    inputs: list[InputGroup]

    def as_dict(self) -> dict[str, Any]:
        r = self.rule
        return {
            "id": self.finding.id,
            "kind": self.kind,
            "severity": self.finding.severity,
            "title": r.title if r else None,
            "message": self.finding.message,
            "rule": f"{r.file}:{r.line}" if r else None,
            "expected": (r.expected or None) if r else None,
            "thresholds": self.thresholds,
            "inputs": [g.as_dict() for g in self.inputs],
            "remediation": self.finding.remediation or (r.remediation if r else None),
            "controls": list(self.finding.controls) or (list(r.controls) if r else []),
            **({"waiver": dict(self.finding.waiver)} if self.finding.waiver else {}),
        }


@dataclass
class Explanation:
    environment: str
    result: str
    policy_revision: str | None
    findings: list[ExplainedFinding]
    rules: list[dict[str, Any]]  # every rule the decision evaluates: id, title, kind, status
    note: str | None = None  # why there is nothing to explain (an error decision)

    def as_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "result": self.result,
            "policy_revision": self.policy_revision,
            "findings": [f.as_dict() for f in self.findings],
            "rules": self.rules,
            "note": self.note,
        }


def _evaluated(rule: RuleDoc) -> bool:
    """Rules the entry point ``data.mlgate.decision`` evaluates: the rule packages and the
    entry point's own (monitoring rules are judged by ``mlgate monitor``, not by the gate)."""
    return rule.package == "mlgate" or rule.package.startswith("mlgate.rules.")


def explain(decision: Any, catalogue: Catalogue) -> Explanation:
    """Explain ``decision`` (an :class:`mlgate.gate.Decision` holding its input document)."""
    by_id = {r.id: r for r in catalogue.rules}
    env = decision.environment
    document = decision.input_document or {}

    def one(kind: str, finding: Any) -> ExplainedFinding:
        rule = by_id.get(finding.id)
        thresholds = {key: per_env.get(env, _MISSING) for key, per_env in rule.thresholds.items()} if rule else {}
        thresholds = {k: ("<missing>" if v is _MISSING else v) for k, v in thresholds.items()}
        return ExplainedFinding(kind, finding, rule, thresholds, input_groups(rule.inputs, document) if rule and document else [])

    findings = [one("violation", v) for v in decision.violations]
    findings += [one("waived" if w.waiver else "warning", w) for w in decision.warnings if w.id != "MLG-ADM-000"]
    status: dict[str, str] = {}
    for f in findings:
        status.setdefault(f.finding.id, {"violation": "violated", "waived": "waived", "warning": "warned"}[f.kind])
    rules = []
    if decision.result != "error" and document:
        rules = [{"id": r.id, "title": r.title, "kind": r.kind, "status": status.get(r.id, "passed")}
                 for r in catalogue.rules if _evaluated(r)]
    note = None
    if decision.result == "error":
        note = f"the gate could not evaluate the release, so no rule was evaluated: {decision.error}"
    return Explanation(env, decision.result, decision.policy_revision, findings, rules, note)


# --- rendering ----------------------------------------------------------------------------------


def _wrap(label: str, text: str, width: int = 100, indent: int = 4) -> list[str]:
    import textwrap

    lead = f"{' ' * indent}{label:<12} "
    lines = textwrap.wrap(text, width=width - len(lead), break_long_words=False, break_on_hyphens=False) or [""]
    return [lead + lines[0]] + [" " * len(lead) + line for line in lines[1:]]


def render_text(x: Explanation) -> str:
    out = [f"explanation ({x.environment} tier, policy revision {(x.policy_revision or '?')[:16]}):"]
    if x.note:
        out.append(f"  {x.note}")
    for f in x.findings:
        r = f.rule
        head = {"violation": "x", "warning": "!", "waived": "~"}[f.kind]
        out.append(f"  {head} {f.finding.id} [{f.finding.severity}] {r.title if r else '(rule not annotated)'}"
                   + (f"  ({r.file}:{r.line})" if r else ""))
        out += _wrap("found:", f.finding.message)
        if r and r.expected:
            out += _wrap("expected:", r.expected)
        if f.thresholds:
            out += _wrap(f"{x.environment}:", "; ".join(f"{k} = {_show(v)}" for k, v in sorted(f.thresholds.items())))
        if f.inputs:
            out.append("    inputs:")
            for g in f.inputs:
                if g.values:
                    out += [f"      {path} = {_show(value)}" for path, value in sorted(g.values.items())]
                if g.total or g.elements:
                    more = f", first {len(g.elements)} shown" if g.total > len(g.elements) else ""
                    out.append(f"      {g.path} ({g.total} element{'s' if g.total != 1 else ''}{more}):")
                    for row in g.elements:
                        fields = " ".join(f"{k}={_show(v)}" for k, v in row.items() if k != "index")
                        out.append(f"        [{row['index']}] {fields}")
        remediation = f.finding.remediation or (r.remediation if r else None)
        if remediation:
            out += _wrap("remediation:", remediation)
        controls = list(f.finding.controls) or (list(r.controls) if r else [])
        if controls:
            out += _wrap("controls:", ", ".join(controls))
        if f.finding.waiver:
            w = f.finding.waiver
            out += _wrap("waived by:", f"{w.get('printed_name')} ({w.get('role')}) until {w.get('expires_at')} [{w.get('path')}]: {w.get('justification')}")
    if x.rules:
        counts: dict[str, list[str]] = {}
        for rule in x.rules:
            counts.setdefault(rule["status"], []).append(rule["id"])
        summary = ", ".join(f"{len(counts[s])} {s}" for s in ("violated", "waived", "warned", "passed") if s in counts)
        out.append(f"  rules evaluated: {len(x.rules)} ({summary})")
        if counts.get("passed"):
            out += _wrap("passed:", ", ".join(counts["passed"]), indent=2)
    return "\n".join(out)
