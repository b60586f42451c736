"""``mlgate policy lint``: what a reviewer of a policy change would check, done every time.

Checks (each finding names file, line and check id):

metadata        every rule that can produce a finding (``violation``/``warning``/``deny``/
                ``warn`` sets, ``*_violations``) has a ``# METADATA`` block directly above it
                with title, description and custom: id, severity, controls, remediation.
                A further definition of the same rule may go without one when every finding
                it builds carries an id annotated in the same file.
id              ids match ``MLG-[A-Z]+-[0-9]{3}`` and are unique across the policy set.
severity        one of low, medium, high, critical.
controls        a non-empty list, every entry a control of the catalogue (controls.yaml).
finding         a finding object built in the rule repeats its annotation's id, severity,
                controls and remediation (the engine has no ``rego.metadata.rule()``).
data-key        every environment data key a rule reads exists in every environment.
builtin         no call to a builtin the embedded engine lacks.
deny-boolean    ``deny if {...}`` (a boolean) where ``deny contains msg if`` (a set) was meant.
sprintf         (embedded engine) a literal ``sprintf`` format regorus handles unlike OPA, each
                found by trying it: a width with a precision or a ``+``/``-``/``#``/space flag
                is an evaluation error (the decision denies); ``%e``/``%g`` ignore their
                precision (``1.23456e-4`` where OPA prints ``1.23e-04``) and a width on ``%s``
                is ignored (warnings).

Under ``--engine rego-cpp`` (regopy), the builtin check asks that engine what it has, and, in the
policy modules (the engine loads no test module for decisions; ``mlgate policy test`` runs on the
embedded engine):
rego-cpp        (error) ``some k, v in coll`` inside an array or set comprehension: not compiled.
rego-cpp        (error) ``with input as ...`` (the whole input), and ``with ... as`` a reference
                (``td.doc``, a rule, ``input.x``): not compiled (or, the second, ignored).
rego-cpp        (warning) ``time.parse_rfc3339_ns``: undefined for timestamps ending in ``Z``.
rego-cpp        (warning) ``sprintf`` with ``%q`` in its format: printed literally.
rego-cpp        (warning) ``sprintf`` of the result of ``concat``, ``lower``, ``upper``, ... (directly,
                or of a rule or function whose value is such a call, like ``lib.join``): printed
                in quotes, unescaped, so the decision is not JSON (an engine error).
Warnings are listed but do not fail the lint.

Over a layered policy (``mlgate policy lint --policy BASE --policy ORG``, :mod:`mlgate.policy.layers`),
every check above runs on the merged policy (so an organisation's ids must not repeat the
library's), and for every data value a later layer changes:
layer-data      (error) it loosens a threshold whose direction ``policies/README.md`` documents
                (:data:`LOOSER`: a larger ``bias.delta`` or ``evidence.max_age_days``, ``required:
                false`` where the earlier layer says true, an entry dropped from a list of what is
                required, one added to a list of what is accepted); (note) any other change, a
                tightening included: value before and after, and the layer that changed it.
Notes are listed but do not fail the lint.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlgate.policy import PolicySet, load_policy
from mlgate.policytools.controls import load_catalogue
from mlgate.policytools.datakeys import ENV_ROOT, DataKeyAnalysis, missing_in
from mlgate.policy.rego_ast import (Annotation, ParsedPolicy, RegoModule, Rule, annotations, builtin_calls, calls, line_of, missing_builtins, parse,
                                         ref_parts, walk)
from mlgate.safeio import display

ID_PATTERN = re.compile(r"^MLG-[A-Z]+-[0-9]{3}$")
SEVERITIES = ("low", "medium", "high", "critical")
PRODUCER = re.compile(r"^(deny|warn|warning|violation|[a-z0-9_]+_violations)$")
CHECKS = ("metadata", "id", "severity", "controls", "finding", "data-key", "builtin", "deny-boolean")
ENGINE_CHECKS = {"rego-cpp": ("rego-cpp",), "embedded": ("sprintf",)}  # checks that run only under that ``--engine``
LINT_ENGINES = ("embedded", "rego-cpp")


@dataclass(frozen=True, order=True)
class Finding:
    file: str
    line: int
    check: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: [{self.check}] {self.message}"


@dataclass(frozen=True)
class LintReport:
    root: str
    findings: tuple[Finding, ...]
    rules_checked: int
    annotations_checked: int
    data_reads: int
    environments: tuple[str, ...]
    warnings: tuple[Finding, ...] = ()
    engine: str = "embedded"
    notes: tuple[Finding, ...] = ()  # a layered policy: data values a later layer changes without loosening them

    @property
    def errors(self) -> tuple[Finding, ...]:
        return self.findings


# --- pieces reused by the tests ---------------------------------------------------------------


def producer_rules(parsed: ParsedPolicy) -> list[Rule]:
    return [
        r
        for m in parsed.modules
        if not m.is_test
        for r in m.rules
        if PRODUCER.match(r.name) and r.kind == "Set"
    ]


def finding_objects(node: Any) -> list[tuple[int, dict[str, Any]]]:
    """(line, literal fields) of every object literal with a literal string "id" in ``node``."""
    out = []
    for sub in walk(node):
        obj = sub.get("Object")
        if not isinstance(obj, dict):
            continue
        fields: dict[str, Any] = {}
        for item in obj.get("fields", []):
            if len(item) != 3 or "String" not in item[1]:
                continue
            fields[item[1]["String"]["value"]] = _literal(item[2])
        if isinstance(fields.get("id"), str):
            out.append((int(obj.get("span", {}).get("line", 0)), fields))
    return out


_NOT_LITERAL = object()


def _literal(node: Any) -> Any:
    if not isinstance(node, dict) or len(node) != 1:
        return _NOT_LITERAL
    kind, body = next(iter(node.items()))
    if kind in ("String", "RawString", "Number", "Bool", "Null"):
        return body.get("value")
    if kind == "Array":
        items = [_literal(i) for i in body.get("items", [])]
        return _NOT_LITERAL if any(i is _NOT_LITERAL for i in items) else items
    return _NOT_LITERAL


def all_annotations(parsed: ParsedPolicy) -> list[Annotation]:
    return [a for m in parsed.modules if not m.is_test for a in annotations(m)]


# --- the checks ---------------------------------------------------------------------------------


def _check_annotation(a: Annotation, known_controls: set[str]) -> list[Finding]:
    out: list[Finding] = []

    def add(check: str, message: str) -> None:
        out.append(Finding(a.module.display, a.line, check, message))

    if a.error or not isinstance(a.meta, dict):
        add("metadata", f"METADATA is not a YAML mapping: {a.error or type(a.meta).__name__}")
        return out
    for key in ("title", "description"):
        if not isinstance(a.meta.get(key), str) or not a.meta[key].strip():
            add("metadata", f"METADATA has no {key}; expected a non-empty text")
    custom = a.meta.get("custom")
    if not isinstance(custom, dict):
        add("metadata", "METADATA has no custom block; expected custom: id, severity, controls, remediation")
        return out
    rid = custom.get("id")
    if not isinstance(rid, str):
        add("id", f"METADATA custom.id is {rid!r}; expected an id like MLG-BIAS-001")
    elif not ID_PATTERN.match(rid):
        add("id", f"id {rid} does not match MLG-[A-Z]+-[0-9]{{3}}")
    severity = custom.get("severity")
    if severity not in SEVERITIES:
        add("severity", f"{rid}: severity is {severity!r}; expected one of {', '.join(SEVERITIES)}")
    controls = custom.get("controls")
    if not isinstance(controls, list) or not controls:
        add("controls", f"{rid}: controls is {controls!r}; expected at least one control reference")
    else:
        for control in controls:
            if str(control) not in known_controls:
                add("controls", f"{rid}: control {control!r} is not in the control catalogue (mlgate/policytools/controls.yaml)")
    remediation = custom.get("remediation")
    if not isinstance(remediation, str) or not remediation.strip():
        add("metadata", f"{rid}: METADATA has no custom.remediation; expected the text a user follows to fix it")
    return out


def check_metadata(parsed: ParsedPolicy) -> tuple[list[Finding], int]:
    findings: list[Finding] = []
    known_controls = load_catalogue().ids
    annots = all_annotations(parsed)
    seen_ids: dict[str, Annotation] = {}
    for a in annots:
        findings += _check_annotation(a, known_controls)
        rid = a.custom.get("id")
        if isinstance(rid, str):
            if rid in seen_ids:
                findings.append(Finding(a.module.display, a.line, "id", f"id {rid} is already used at {seen_ids[rid].where}"))
            else:
                seen_ids[rid] = a

    by_rule_line = {(a.module.path, a.rule_line): a for a in annots}
    rule_lines = {(r.module.path, r.line) for m in parsed.modules for r in m.rules}
    for a in annots:
        if (a.module.path, a.rule_line) not in rule_lines:
            findings.append(Finding(a.module.display, a.line, "metadata", "METADATA block is not directly followed by the rule it annotates"))

    producers = producer_rules(parsed)
    for rule in producers:
        annotation = by_rule_line.get((rule.module.path, rule.line))
        objects = finding_objects(rule.node)
        ids_here = {fields["id"] for _, fields in objects}
        in_module = {a.custom.get("id"): a for a in annots if a.module.path == rule.module.path}
        if annotation is None:
            if not ids_here:
                findings.append(Finding(rule.module.display, rule.line, "metadata",
                                        f"`{rule.name} contains` rule has no METADATA annotation (and builds no finding with a literal id)"))
                continue
            unannotated = sorted(i for i in ids_here if i not in in_module)
            if unannotated:
                findings.append(Finding(rule.module.display, rule.line, "metadata",
                                        f"`{rule.name} contains` rule has no METADATA annotation and builds {', '.join(unannotated)}, annotated nowhere in this file"))
                continue
        for line, fields in objects:
            meta = annotation if annotation is not None else in_module.get(fields["id"])
            if meta is None or not meta.custom:
                continue
            custom = meta.custom
            if fields["id"] != custom.get("id"):
                findings.append(Finding(rule.module.display, line, "finding",
                                        f"finding id {fields['id']} differs from the annotation's id {custom.get('id')} ({meta.where})"))
                continue
            for key in ("severity", "controls", "remediation"):
                if key not in fields:
                    findings.append(Finding(rule.module.display, line, "finding", f"{fields['id']}: the finding has no {key}; expected {json.dumps(custom.get(key))} as annotated"))
                elif fields[key] is not _NOT_LITERAL and fields[key] != custom.get(key):
                    findings.append(Finding(rule.module.display, line, "finding",
                                            f"{fields['id']}: finding {key} is {json.dumps(fields[key])}, the annotation says {json.dumps(custom.get(key))}"))
    return findings, len(annots)


def check_deny_boolean(parsed: ParsedPolicy) -> list[Finding]:
    out = []
    for module in parsed.modules:
        if module.is_test:
            continue
        for rule in module.rules:
            if not PRODUCER.match(rule.name) or rule.kind != "Compr":
                continue
            head = rule.node["Spec"]["head"]["Compr"]
            if head.get("assign") is None:
                out.append(Finding(module.display, rule.line, "deny-boolean",
                                   f"`{rule.name} if` defines a boolean, not a set of findings; write `{rule.name} contains msg if {{ ... }}`"))
    return out


def check_builtins(parsed: ParsedPolicy, engine: str = "embedded") -> list[Finding]:
    from mlgate.policy.engine.regorus_engine import engine_version

    if engine == "rego-cpp":
        from mlgate.policy.engine import regopy_engine

        regopy_engine._regopy()  # PolicyError naming the extra when regopy is not installed
        found = sorted({(m.display, line, name) for m, line, name in builtin_calls(parsed)
                        if not m.is_test and not regopy_engine.engine_has_builtin(name)})
        return [Finding(file, line, "builtin", f"builtin {name} is not available in the rego-cpp engine (regopy {regopy_engine.engine_version()})")
                for file, line, name in found]
    return [
        Finding(file, line, "builtin", f"builtin {name} is not available in the embedded engine (regorus {engine_version()})")
        for file, line, name in missing_builtins(parsed)
    ]


# What rego-cpp (regopy 1.5.2) does not compile or evaluates differently, each found by trying it.
_COMPREHENSIONS = ("ArrayCompr", "SetCompr")  # `{k: v | some k, v in o}` compiles
# builtins whose string result sprintf prints in quotes: sprintf("(%s)", [concat(",", ["a", "b"])])
# is "(\"a,b\")" (substring, trim*, sprintf and the other string builtins are not affected)
_QUOTED_RESULT = frozenset({"concat", "format_int", "json.marshal", "lower", "regex.replace", "replace", "upper", "urlquery.encode"})


def _literal_string(node: Any) -> str | None:
    if isinstance(node, dict) and len(node) == 1:
        kind, body = next(iter(node.items()))
        if kind in ("String", "RawString") and isinstance(body.get("value"), str):
            return body["value"]
    return None


def _quoted_rules(parsed: ParsedPolicy, modules: list[RegoModule]) -> dict[tuple[str, ...], str]:
    """Rules and functions whose value is a call of a _QUOTED_RESULT builtin (``lib.join``) -> that builtin."""
    out: dict[tuple[str, ...], str] = {}
    for module in modules:
        for rule in module.rules:
            head = next(iter(rule.node.get("Spec", {}).get("head", {}).values()), {})
            value = (head.get("assign") or {}).get("value") if isinstance(head, dict) else None
            call = value.get("Call") if isinstance(value, dict) else None
            parts = ref_parts(call.get("fcn")) if isinstance(call, dict) else None
            if parts and parsed.resolve(module, parts) is None and ".".join(parts) in _QUOTED_RESULT:
                out[("data", *module.package.split("."), rule.name)] = ".".join(parts)
    return out


def _quoted_argument(parsed: ParsedPolicy, module: RegoModule, arg: Any, quoted: dict[tuple[str, ...], str]) -> str | None:
    """How a sprintf argument gets a quoted string in rego-cpp (``concat(...)``, ``lib.join(...)``), or None."""
    call = arg.get("Call") if isinstance(arg, dict) else None
    parts = ref_parts(call.get("fcn") if isinstance(call, dict) else arg)
    if not parts:
        return None
    name = ".".join(parts)
    resolved = parsed.resolve(module, parts)
    if resolved is None:
        return f"{name}(...)" if isinstance(call, dict) and name in _QUOTED_RESULT else None
    via = quoted.get(tuple(resolved))
    return f"{name}{'(...)' if isinstance(call, dict) else ''} (a {via} result)" if via else None


def check_rego_cpp(parsed: ParsedPolicy) -> tuple[list[Finding], list[Finding]]:
    """(errors, warnings) for idioms rego-cpp (regopy) rejects or evaluates differently from OPA."""
    errors: list[Finding] = []
    warnings: list[Finding] = []
    modules = [m for m in parsed.modules if not m.is_test]
    quoted = _quoted_rules(parsed, modules)
    for module in modules:
        rules = module.ast.get("rules", [])
        for node in walk(rules):
            for kind in _COMPREHENSIONS:
                compr = node.get(kind)
                if not isinstance(compr, dict):
                    continue
                for sub in walk(compr.get("query")):
                    some = sub.get("SomeIn")
                    if isinstance(some, dict) and some.get("key") is not None:
                        errors.append(Finding(module.display, int(some.get("span", {}).get("line", 0)), "rego-cpp",
                                              "`some k, v in ...` inside an array or set comprehension does not compile in rego-cpp (\"Invalid collection\"); "
                                              "iterate with `some k in object.keys(coll)` and index coll[k], or move it to a helper rule"))
            for mod in node.get("with_mods") or []:
                value = ref_parts(mod.get("as"))
                if ref_parts(mod.get("refr")) == ["input"]:
                    errors.append(Finding(module.display, line_of(mod), "rego-cpp",
                                          "`with input as ...` does not compile in rego-cpp once a rule it reaches calls a builtin (\"shape `rego-localref` "
                                          "has no field `rego-refhead`\"); replace fields of the input instead (`with input.x as ...`)"))
                if value and parsed.resolve(module, value) is not None:
                    errors.append(Finding(module.display, line_of(mod), "rego-cpp",
                                          f"`with ... as {'.'.join(value)}`: rego-cpp does not compile a reference after `as` (\"shape `rego-with` has no "
                                          "field `rego-ref`\"), or ignores it; bind the value to a local variable first"))
        for parts, line, call in calls(rules):
            name = ".".join(parts)
            if parsed.resolve(module, parts) is not None:
                continue
            params = call.get("params") or []
            if name == "time.parse_rfc3339_ns":
                literal = _literal_string(params[0]) if params else None
                if literal is None or literal.endswith(("Z", "z")):
                    warnings.append(Finding(module.display, line, "rego-cpp",
                                            "time.parse_rfc3339_ns fails in rego-cpp for timestamps ending in Z (undefined, or an error with strict builtin "
                                            "errors; UTC written +00:00 works): rules using it stop matching"))
            elif name == "sprintf" and params:
                fmt = _literal_string(params[0])
                if fmt is None or "%q" in fmt:
                    why = "its format contains %q" if fmt is not None else "its format is not a literal and may contain %q"
                    warnings.append(Finding(module.display, line, "rego-cpp",
                                            f"sprintf: {why}, which rego-cpp prints literally; use %v (or %s) with explicit quotes"))
                # (a format of one verb returns the argument itself: quoted again only where it is formatted later)
                whole = fmt in ("%s", "%v")
                items = params[1].get("Array", {}).get("items", []) if len(params) > 1 and isinstance(params[1], dict) and not whole else []
                for arg in items:
                    how = _quoted_argument(parsed, module, arg, quoted)
                    if how:
                        warnings.append(Finding(module.display, line, "rego-cpp",
                                                f"sprintf of {how}: rego-cpp prints that string in quotes, unescaped, and fails on the decision (not JSON); "
                                                "pass it through trim_prefix(s, \"\") first"))
    return sorted(set(errors)), sorted(set(warnings))


# A sprintf verb: %[flags][width][.precision]verb
_VERB = re.compile(r"%([-+# 0]*)([0-9]*)(?:\.([0-9]*))?([a-zA-Z%])")


def check_sprintf_embedded(parsed: ParsedPolicy) -> tuple[list[Finding], list[Finding]]:
    """(errors, warnings) for literal sprintf formats the embedded engine (regorus) evaluates
    unlike OPA. Policy modules and tests alike (``mlgate policy test`` runs on this engine)."""
    errors: list[Finding] = []
    warnings: list[Finding] = []
    for module in parsed.modules:
        for parts, line, call in calls(module.ast.get("rules", [])):
            if parts != ["sprintf"] or parsed.resolve(module, parts) is not None:
                continue
            params = call.get("params") or []
            fmt = _literal_string(params[0]) if params else None
            if fmt is None:
                continue
            for m in _VERB.finditer(fmt):
                flags, width, precision, verb = m.group(1), m.group(2), m.group(3), m.group(4)
                spec = m.group(0)
                if verb == "%":
                    continue
                if (width and precision is not None) or set(flags) & set("+-# "):
                    errors.append(Finding(module.display, line, "sprintf",
                                          f"sprintf format {spec!r}: the embedded engine (regorus) fails on a width with a precision or a "
                                          "+, -, # or space flag (an evaluation error, so the decision denies); format the number first"))
                elif verb in "eEgG":
                    warnings.append(Finding(module.display, line, "sprintf",
                                            f"sprintf format {spec!r}: the embedded engine ignores the precision of %e/%g and prints 1.23456e-4 "
                                            "where OPA prints 1.23e-04; see lib.p for a portable scientific format"))
                elif width and verb == "s":
                    warnings.append(Finding(module.display, line, "sprintf",
                                            f"sprintf format {spec!r}: the embedded engine ignores the width of %s"))
    return sorted(set(errors)), sorted(set(warnings))


def check_data_keys(parsed: ParsedPolicy, env_root: tuple[str, ...] = ENV_ROOT) -> tuple[list[Finding], int, tuple[str, ...]]:
    root: Any = parsed.policy.data
    for part in env_root:
        root = root.get(part) if isinstance(root, dict) else None
    environments = root if isinstance(root, dict) else {}
    reads = DataKeyAnalysis(parsed, env_root).run([m for m in parsed.modules if not m.is_test])
    findings = []
    where = "data." + ".".join(env_root)
    if reads and not environments:
        first = reads[0]
        findings.append(Finding(first.file, first.line, "data-key", f"rules read environment data but {where} holds no environment"))
    reported: set[tuple[str, int, str, str]] = set()
    for read in reads:
        for env, document in sorted(environments.items()):
            why = missing_in(document, read.path)
            if why and (read.file, read.line, env, why) not in reported:  # a.b and a.b.c: one finding
                reported.add((read.file, read.line, env, why))
                findings.append(Finding(read.file, read.line, "data-key",
                                        f"reads {'.'.join(read.path)} of the environment data, but in environment {env} "
                                        f"({where}.{env}) {why}"))
    return findings, len(reads), tuple(sorted(environments))


def check_expected(parsed: ParsedPolicy) -> list[Finding]:
    """Warnings: an annotated rule without ``custom.expected`` leaves ``mlgate explain`` unable to
    say what passing requires (the description says what fails)."""
    out = []
    for a in all_annotations(parsed):
        custom = a.meta.get("custom") if isinstance(a.meta, dict) else None
        if not isinstance(custom, dict) or not isinstance(custom.get("id"), str):
            continue  # check_metadata reports it
        expected = custom.get("expected")
        if not isinstance(expected, str) or not expected.strip():
            out.append(Finding(a.module.display, a.line, "expected",
                               f"{custom['id']}: METADATA has no custom.expected; `mlgate explain` shows it as what passing requires"))
    return out


# --- layered policies: the data a later layer changes ------------------------------------------------

#: How each environment key documented in policies/README.md loosens (keys under
#: ``mlgate.environments.<tier>``): "larger" / "smaller" number, "off" (true -> false), "on"
#: (false -> true), "fewer" (an entry of a list of what is required dropped), "more" (an entry added
#: to a list of what is accepted). A key not listed (``bias.alpha`` cuts both ways: a smaller alpha
#: flags fewer gaps but asks the audit for more confidence) has no direction: its change is a note.
LOOSER: dict[str, tuple[str, str]] = {
    "bias.delta": ("larger", "a larger gap between subgroups passes"),
    "bias.n_min": ("smaller", "subgroups with fewer cases are judged instead of failing closed"),
    "bias.non_inferiority": ("off", "non-inferiority (MLG-BIAS-006) is no longer required"),
    "bias.require_card_factors": ("off", "the audit no longer has to cover the model card's factors (MLG-BIAS-014)"),
    "bias.metrics": ("fewer", "a metric the audit had to measure is no longer required"),
    "bias.required_attributes": ("fewer", "a sensitive attribute the audit had to cover is no longer required"),
    "approvals.required": ("fewer", "a required signature is no longer required"),
    "approvals.distinct_people": ("off", "one person may give several required signatures"),
    "approvals.accept_unbound_identity": ("on", "approvals that sign no release identity count"),
    "approvals.min_disciplines": ("smaller", "fewer disciplines need to approve"),
    "evidence.max_age_days": ("larger", "older validation results and bias audits are accepted"),
    "model_card.required_sections": ("fewer", "a model card section is no longer required"),
    "model_card.human_roles": ("more", "more roles satisfy the human-AI team requirement"),
    "model_signature.required": ("off", "a model signature is no longer required"),
    "data_validation.required": ("off", "data validation is no longer required"),
    "lineage.required": ("off", "the release lineage no longer has to be declared"),
    "lineage.authorized_modifications": ("more", "more PCCP modifications are accepted"),
    "privacy.deidentification_required": ("off", "a de-identification declaration is no longer required"),
    "privacy.deidentification_methods": ("more", "more de-identification methods are accepted"),
    "waivers.max_days": ("larger", "waivers may be valid for longer"),
    "waivers.roles": ("more", "more roles may waive violations"),
    "waivers.not_waivable": ("fewer", "more rules can be waived"),
    "waivers.two_person": ("fewer", "fewer rules need waivers signed by two people"),
    "provenance.required": ("off", "provenance (the training run, its code and data) is no longer required"),
    "provenance.clean_tree": ("off", "a model trained from uncommitted code changes is accepted"),
    "provenance.training_commit": ("off", "the training code's commit no longer has to be recorded"),
    "provenance.dataset_digests": ("off", "the datasets trained on no longer have to be recorded by digest"),
    "provenance.independent_eval": ("off", "the evaluation data no longer has to be independent of the training data"),
}


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def loosens(key: str, before: Any, after: Any) -> bool | None:
    """True when changing environment key ``key`` (``bias.delta``) from ``before`` to ``after``
    loosens it, False when it does not, None when its direction is not documented (or the values
    are not of the kind the direction is about)."""
    rule = LOOSER.get(key)
    if rule is None:
        return None
    how = rule[0]
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (before, after))
    if how in ("larger", "smaller") and numbers:
        return after > before if how == "larger" else after < before
    if how in ("off", "on") and isinstance(before, bool) and isinstance(after, bool):
        return (before and not after) if how == "off" else (after and not before)
    if how in ("fewer", "more") and isinstance(before, list) and isinstance(after, list):
        was, now = {_canon(v) for v in before}, {_canon(v) for v in after}
        return bool(was - now) if how == "fewer" else bool(now - was)
    return None


def _line_of_key(file: Path, key: str) -> int:
    """The line of ``key`` in a data file (best effort: its first occurrence as a key), else 1."""
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return 1
    pattern = re.compile(r'(^|[\s{,])("' + re.escape(key) + r'"\s*:|' + re.escape(key) + r"\s*:)")
    return next((n for n, line in enumerate(lines, 1) if pattern.search(line)), 1)


def check_layers(policy: PolicySet) -> tuple[list[Finding], list[Finding]]:
    """(errors, notes) for the data values the later layers of a layered policy change."""
    changes = getattr(policy, "changes", ())
    layers = {layer.label: layer for layer in getattr(policy, "layers", ())}
    errors: list[Finding] = []
    notes: list[Finding] = []
    for change in changes:
        path = change.path
        key = ".".join(path[3:]) if len(path) > 3 and tuple(path[:2]) == ENV_ROOT else None
        verdict = loosens(key, change.before, change.after) if key else None
        layer = layers.get(change.layer)
        line = 1
        if layer is not None and layer.kind == "directory":
            line = _line_of_key(Path(change.file), path[-1])
        what = (f"data.{change.dotted}: {_canon(change.before)} -> {_canon(change.after)} by policy layer {change.layer} "
                f"(was set by {change.before_file})")
        if verdict:
            errors.append(Finding(change.file, line, "layer-data",
                                  f"{what}: loosens the threshold ({LOOSER[key][1]}; policies/README.md); a layer may tighten "
                                  "a threshold, never loosen it"))
        elif verdict is False:
            notes.append(Finding(change.file, line, "layer-data", f"{what}: tightens {key}"))
        else:
            notes.append(Finding(change.file, line, "layer-data", f"{what}: changed (no documented direction)"))
    return errors, notes


def lint(root: Path | None = None, *, policy: PolicySet | None = None, engine: str = "embedded") -> LintReport:
    from mlgate.errors import PolicyError

    if engine not in LINT_ENGINES:
        raise PolicyError(f"lint knows the engines {', '.join(LINT_ENGINES)}, not {engine!r}")
    policy = policy if policy is not None else load_policy(root, require_finding_ids=False)  # lint names each such rule itself
    parsed = parse(policy)
    meta_findings, n_annotations = check_metadata(parsed)
    data_findings, n_reads, envs = check_data_keys(parsed)
    findings = meta_findings + data_findings + check_builtins(parsed, engine) + check_deny_boolean(parsed)
    warnings: list[Finding] = check_expected(parsed)
    if engine == "embedded":
        fmt_errors, fmt_warnings = check_sprintf_embedded(parsed)
        findings += fmt_errors
        warnings += fmt_warnings
    if engine == "rego-cpp":
        cpp_errors, cpp_warnings = check_rego_cpp(parsed)
        findings += cpp_errors
        warnings += cpp_warnings
    layer_errors, notes = check_layers(policy)
    findings += layer_errors
    return LintReport(
        warnings=tuple(sorted(set(warnings))),
        notes=tuple(notes),
        engine=engine,
        root=getattr(policy, "source", None) or display(policy.root),
        findings=tuple(sorted(set(findings))),
        rules_checked=len(producer_rules(parsed)),
        annotations_checked=n_annotations,
        data_reads=n_reads,
        environments=envs,
    )


def render(report: LintReport, fmt: str = "text") -> str:
    if fmt == "json":
        return json.dumps(
            {
                "root": report.root,
                "passed": not report.findings,
                "findings": [asdict(f) for f in report.findings],
                "warnings": [asdict(f) for f in report.warnings],
                "notes": [asdict(f) for f in report.notes],
                "engine": report.engine,
                "rules_checked": report.rules_checked,
                "annotations_checked": report.annotations_checked,
                "data_reads_checked": report.data_reads,
                "environments": list(report.environments),
            },
            indent=2,
            sort_keys=True,
        )
    lines = [str(f) for f in report.findings] + [f"{f} (warning)" for f in report.warnings] + [f"{f} (note)" for f in report.notes]
    warned = f", {len(report.warnings)} warning(s) for the {report.engine} engine" if report.warnings else ""
    warned += f", {len(report.notes)} note(s)" if report.notes else ""
    summary = (
        f"{report.root}: {len(report.findings)} finding(s){warned}; {report.rules_checked} finding rules, "
        f"{report.annotations_checked} METADATA blocks, {report.data_reads} environment data reads checked "
        f"against {', '.join(report.environments) or 'no environment'}"
    )
    lines.append(summary)
    return "\n".join(lines)
