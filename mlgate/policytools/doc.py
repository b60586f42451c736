"""``mlgate policy doc``: the control catalogue, generated from the policies themselves.

For every rule (METADATA id): title, severity, whether it denies or warns, where it is, the
environment thresholds it reads with their value in every environment (found by the same
data-key analysis ``policy lint`` uses), and the controls it implements. Then the reverse
view: every control of the catalogue (``controls.yaml``) with the rules that cover it, and
the controls no rule covers yet. Nothing here is written by hand.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlgate.policy import PolicySet, load_policy
from mlgate.policytools.controls import Control, load_catalogue
from mlgate.policytools.datakeys import ENV_ROOT, INPUT_ROOT, STAR, DataKeyAnalysis
from mlgate.policytools.lint import all_annotations, finding_objects, producer_rules
from mlgate.policy.rego_ast import parse, referenced_rules, rule_lines
from mlgate.safeio import display


@dataclass
class RuleDoc:
    id: str
    title: str
    description: str
    severity: str
    kind: str  # violation (denies) | warning
    controls: list[str]
    remediation: str
    file: str
    line: int
    thresholds: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> env -> value
    expected: str = ""  # custom.expected: what passing requires (for `mlgate explain`)
    package: str = ""
    inputs: list[tuple[str, ...]] = field(default_factory=list)  # input paths the rule reads (``*``: every element)


@dataclass
class ControlDoc:
    control: Control
    rules: list[str]


@dataclass
class Catalogue:
    root: str
    revision: str
    environments: list[str]
    rules: list[RuleDoc]
    controls: list[ControlDoc]
    unknown_controls: dict[str, list[str]]  # control id cited but not catalogued -> rule ids

    @property
    def uncovered(self) -> list[ControlDoc]:
        return [c for c in self.controls if not c.rules]


_MISSING = object()


def _value_at(document: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(document, dict) or key not in document:
            return _MISSING
        document = document[key]
    return document


def _leaf_keys(paths: set[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Shown keys: cut at the first ``*`` (a list is shown whole), drop prefixes of longer keys."""
    cut = {p[: p.index(STAR)] if STAR in p else p for p in paths}
    cut.discard(())
    return sorted(p for p in cut if not any(q != p and q[: len(p)] == p for q in cut))


def _leaf_inputs(paths: set[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Input paths to show: drop the prefixes of longer paths (``evidence.bias_audit`` when
    ``evidence.bias_audit.present`` is read), keep ``*`` (each element is shown)."""
    paths = {p for p in paths if p}
    return sorted(p for p in paths if not any(q != p and q[: len(p)] == p for q in paths))


#: Catalogue.root of the library shipped with mlgate.
BUNDLED = "(bundled)"


def _where(root: str) -> str:
    return "the policy library bundled with mlgate" if root == BUNDLED else f"the policies in `{root}`"


def _root_name(root: Path) -> str:
    """The policy root as the catalogue names it: the bundled library by name, never the path
    it happens to be installed at; another directory as the user gave it."""
    from mlgate.policy import bundled_policy_dir

    try:
        if Path(root).resolve() == bundled_policy_dir().resolve():
            return BUNDLED
    except OSError:
        pass
    return display(root)


def build_catalogue(root: Path | None = None, *, policy: PolicySet | None = None) -> Catalogue:
    policy = policy if policy is not None else load_policy(root)
    parsed = parse(policy)
    catalogue = load_catalogue()
    environments: dict[str, Any] = _value_at(policy.data, ENV_ROOT)  # type: ignore[assignment]
    if not isinstance(environments, dict):
        environments = {}
    modules = [m for m in parsed.modules if not m.is_test]
    reads_at: dict[tuple[str, int], set[tuple[str, ...]]] = {}
    for read in DataKeyAnalysis(parsed).run(modules):
        reads_at.setdefault((read.file, read.line), set()).add(read.path)
    inputs_at: dict[tuple[str, int], set[tuple[str, ...]]] = {}
    for read in DataKeyAnalysis(parsed, INPUT_ROOT).run(modules):
        inputs_at.setdefault((read.file, read.line), set()).add(read.path)

    rules_by_key: dict[tuple[str, str], list] = {}
    for module in parsed.modules:
        for r in module.rules:
            rules_by_key.setdefault((module.package, r.name), []).append(r)

    def paths_read_by(rule, at=reads_at) -> set[tuple[str, ...]]:
        used = [rule] + [r for key in referenced_rules(parsed, rule) for r in rules_by_key[key]]
        found: set[tuple[str, ...]] = set()
        for r in used:
            for line in rule_lines(r):
                found |= at.get((r.module.display, line), set())
        return found

    annotated = {(a.module.path, a.rule_line): a for a in all_annotations(parsed)}
    docs: dict[str, RuleDoc] = {}
    paths_by_id: dict[str, set[tuple[str, ...]]] = {}
    for rule in producer_rules(parsed):
        annotation = annotated.get((rule.module.path, rule.line))
        ids = {f["id"] for _, f in finding_objects(rule.node)}
        if annotation is not None and isinstance(annotation.custom.get("id"), str):
            meta, rid = annotation.meta, annotation.custom["id"]
        elif len(ids) == 1 and next(iter(ids)) in docs:  # a further definition of an annotated rule
            meta, rid = None, next(iter(ids))
        else:
            continue  # lint reports it
        paths = paths_read_by(rule)
        if meta is None:
            doc = docs[rid]
        else:
            custom = annotation.custom
            doc = docs.setdefault(
                rid,
                RuleDoc(
                    id=rid,
                    title=str(meta.get("title", "")),
                    description=" ".join(str(meta.get("description", "")).split()),
                    severity=str(custom.get("severity", "")),
                    kind="warning" if rule.name in ("warning", "warn") else "violation",
                    controls=[str(c) for c in custom.get("controls") or []],
                    remediation=str(custom.get("remediation", "")),
                    file=rule.module.path,  # relative to the policy root: the same on every machine and install
                    line=rule.line,
                    expected=" ".join(str(custom.get("expected", "")).split()),
                    package=rule.module.package,
                ),
            )
        seen = paths_by_id.setdefault(rid, set())
        seen |= paths
        doc.thresholds = {
            ".".join(key): {env: _value_at(environments[env], key) for env in sorted(environments)} for key in _leaf_keys(seen)
        }
        doc.inputs = _leaf_inputs(set(doc.inputs) | paths_read_by(rule, inputs_at))

    rules = sorted(docs.values(), key=lambda d: d.id)
    controls = [ControlDoc(c, [r.id for r in rules if c.id in r.controls]) for c in catalogue.controls]
    unknown: dict[str, list[str]] = {}
    for r in rules:
        for c in r.controls:
            if c not in catalogue.ids:
                unknown.setdefault(c, []).append(r.id)
    return Catalogue(_root_name(policy.root), policy.revision, sorted(environments), rules, controls, unknown)


# --- rendering ------------------------------------------------------------------------------------


def _show(value: Any) -> str:
    if value is _MISSING:
        return "(missing)"
    if isinstance(value, list) and all(isinstance(v, dict) for v in value) and value:
        return "; ".join(", ".join(f"{k}={v}" for k, v in item.items()) for item in value)
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) if value else "(none)"
    return json.dumps(value)


def _framework_order(cat: Catalogue) -> list[tuple[str, list[ControlDoc]]]:
    frameworks = load_catalogue().frameworks
    out: list[tuple[str, list[ControlDoc]]] = []
    for fid, title in frameworks.items():
        members = [c for c in cat.controls if c.control.framework == fid]
        if members:
            out.append((title, members))
    return out


def render_markdown(cat: Catalogue) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    envs = cat.environments
    lines = [
        "# mlgate control catalogue",
        "",
        f"Generated by `mlgate policy doc` from {_where(cat.root)} (revision `{cat.revision[:16]}`). "
        "Do not edit by hand: change the policies or their data files and generate it again.",
        "",
        f"{len(cat.rules)} rules; {sum(1 for c in cat.controls if c.rules)} of {len(cat.controls)} controls covered; "
        f"environments: {', '.join(envs) or 'none'}.",
        "",
        "## Rules",
        "",
        "| id | title | severity | effect | controls |",
        "|---|---|---|---|---|",
    ]
    for r in cat.rules:
        effect = "deny" if r.kind == "violation" else "warn"
        lines.append(f"| [{r.id}](#{r.id.lower()}) | {esc(r.title)} | {r.severity} | {effect} | {', '.join(r.controls)} |")
    lines += ["", "## Rule details", ""]
    for r in cat.rules:
        lines += [f"### {r.id}", "", f"**{esc(r.title)}** ({r.severity}, {'denies' if r.kind == 'violation' else 'warns'}); `{r.file}:{r.line}`", ""]
        if r.description:
            lines += [r.description, ""]
        lines += [f"Controls: {', '.join(r.controls) or '(none)'}", ""]
        if r.expected:
            lines += [f"Expected: {r.expected}", ""]
        lines += [f"Remediation: {r.remediation}", ""]
        if r.thresholds:
            lines += ["| threshold | " + " | ".join(envs) + " |", "|---|" + "---|" * len(envs)]
            for key, values in r.thresholds.items():
                lines.append(f"| `{key}` | " + " | ".join(esc(_show(values.get(e, _MISSING))) for e in envs) + " |")
            lines.append("")
        else:
            lines += ["Thresholds: none (the rule reads no environment data).", ""]
    lines += ["## Controls", "", "Each control with the rules that implement it.", ""]
    for title, members in _framework_order(cat):
        lines += [f"### {title}", "", "| control | title | rules |", "|---|---|---|"]
        for c in members:
            rules = ", ".join(f"[{i}](#{i.lower()})" for i in c.rules) or "**no rule yet**"
            lines.append(f"| {c.control.id} | {esc(c.control.title)} | {rules} |")
        lines.append("")
    lines += ["## Controls with no rule yet", ""]
    lines += [f"- {c.control.id}: {c.control.title}" for c in cat.uncovered] or ["None: every control has at least one rule."]
    if cat.unknown_controls:
        lines += ["", "## Cited controls missing from the catalogue", ""]
        lines += [f"- {c}: cited by {', '.join(ids)}" for c, ids in sorted(cat.unknown_controls.items())]
    return "\n".join(lines)


def render_html(cat: Catalogue) -> str:
    e = html.escape
    envs = cat.environments
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>mlgate control catalogue</title>',
        "<style>body{font-family:sans-serif;max-width:75em;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:.3em .6em;vertical-align:top;text-align:left}.none{color:#b00;font-weight:bold}"
        "code{background:#f4f4f4}</style></head><body>",
        "<h1>mlgate control catalogue</h1>",
        f"<p>Generated by <code>mlgate policy doc</code> from {'the policy library bundled with mlgate' if cat.root == BUNDLED else f'the policies in <code>{e(cat.root)}</code>'} (revision "
        f"<code>{e(cat.revision[:16])}</code>). Do not edit by hand.</p>",
        f"<p>{len(cat.rules)} rules; {sum(1 for c in cat.controls if c.rules)} of {len(cat.controls)} controls covered; "
        f"environments: {e(', '.join(envs) or 'none')}.</p>",
        "<h2>Rules</h2><table><tr><th>id</th><th>title</th><th>severity</th><th>effect</th><th>controls</th></tr>",
    ]
    for r in cat.rules:
        out.append(
            f'<tr><td><a href="#{e(r.id.lower())}">{e(r.id)}</a></td><td>{e(r.title)}</td><td>{e(r.severity)}</td>'
            f"<td>{'deny' if r.kind == 'violation' else 'warn'}</td><td>{e(', '.join(r.controls))}</td></tr>"
        )
    out.append("</table><h2>Rule details</h2>")
    for r in cat.rules:
        out.append(f'<h3 id="{e(r.id.lower())}">{e(r.id)}: {e(r.title)}</h3>')
        out.append(f"<p>{e(r.severity)}, {'denies' if r.kind == 'violation' else 'warns'}; <code>{e(r.file)}:{r.line}</code></p>")
        if r.description:
            out.append(f"<p>{e(r.description)}</p>")
        out.append(f"<p>Controls: {e(', '.join(r.controls) or '(none)')}</p>"
                   + (f"<p>Expected: {e(r.expected)}</p>" if r.expected else "") + f"<p>Remediation: {e(r.remediation)}</p>")
        if r.thresholds:
            out.append("<table><tr><th>threshold</th>" + "".join(f"<th>{e(x)}</th>" for x in envs) + "</tr>")
            for key, values in r.thresholds.items():
                out.append(f"<tr><td><code>{e(key)}</code></td>" + "".join(f"<td>{e(_show(values.get(x, _MISSING)))}</td>" for x in envs) + "</tr>")
            out.append("</table>")
        else:
            out.append("<p>Thresholds: none (the rule reads no environment data).</p>")
    out.append("<h2>Controls</h2>")
    for title, members in _framework_order(cat):
        out.append(f"<h3>{e(title)}</h3><table><tr><th>control</th><th>title</th><th>rules</th></tr>")
        for c in members:
            rules = ", ".join(f'<a href="#{e(i.lower())}">{e(i)}</a>' for i in c.rules) or '<span class="none">no rule yet</span>'
            out.append(f"<tr><td>{e(c.control.id)}</td><td>{e(c.control.title)}</td><td>{rules}</td></tr>")
        out.append("</table>")
    out.append("<h2>Controls with no rule yet</h2><ul>")
    out += [f"<li>{e(c.control.id)}: {e(c.control.title)}</li>" for c in cat.uncovered] or ["<li>None.</li>"]
    out.append("</ul>")
    if cat.unknown_controls:
        out.append("<h2>Cited controls missing from the catalogue</h2><ul>")
        out += [f"<li>{e(c)}: cited by {e(', '.join(ids))}</li>" for c, ids in sorted(cat.unknown_controls.items())]
        out.append("</ul>")
    out.append("</body></html>")
    return "\n".join(out)


def render(cat: Catalogue, fmt: str = "md") -> str:
    return render_html(cat) if fmt == "html" else render_markdown(cat)
