"""The time split (issue 17 part 3): which findings depend on the time of evaluation, and the
modules that let an engine evaluate only those per admission.

Most of a decision does not depend on *when* it is made: the bias audit's gaps, the validation
results, the model card, the signatures and their bindings are the same at every admission of
the same release into the same environment under the same policy. Only a handful of rules read
the evaluation time (approval and waiver expiry, evidence age, a signing time in the future, the
key validity window). The webhook admits the same release again and again, so the findings of
the rules that do not read the time are computed once per (input without its per-decision keys,
policy revision) and only the rules that do are evaluated per admission.

**What counts as reading the time.** The analysis is over the engine's own parse of the policy,
conservative in one direction only: anything it cannot prove time-independent is *timed*
(evaluated every time; never cached). A rule definition is timed when it, or any rule or
function it uses (transitively, across packages), reads

- ``input.evaluated_at``, ``input.evaluated_at_ns`` or ``input.request`` (:data:`TIMED_INPUT_KEYS`:
  the keys that differ from one decision of the same release to the next),
- ``input`` as a whole or with a key it computes (``input[k]``),
- ``data`` with a computed key above a rule (``data.mlgate.rules[p]``), or a whole package,
- a builtin whose answer is not a function of its arguments (:data:`IMPURE_BUILTINS`).

**How the split is evaluated, exactly.** Each rule package's ``violation``/``warning``
definitions are partial sets; the timed definitions of one that has both kinds are renamed
(``violation`` -> ``timed_violation__mlgate``) in the modules the engine compiles, and the
generated ``data.mlgate.findings`` (:mod:`mlgate.policy.compose`) becomes the union of the static
ones (each rule package's an entry point of its own) and the timed ones. The static part is read from
``data["mlgate:static"]`` when the engine put a cached answer there, and computed otherwise, so
the one entry point ``data.mlgate.decision`` answers the full decision either way; the waivers,
the ordering and ``allow`` (``decision.rego``) are evaluated per admission over the union. A
definition is split off only where nothing but the composition reads its rule (otherwise the
rule stays whole, static or timed as a unit). Unit tests (``mlgate policy test``), ``eval_json``
queries and every other engine see the policy as written.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from mlgate.canonical import canonical_json
from mlgate.errors import PolicyError

#: input keys that differ between two decisions of the same release in the same environment
TIMED_INPUT_KEYS = frozenset({"evaluated_at", "evaluated_at_ns", "request"})

#: builtins whose answer depends on more than their arguments (the clock, randomness, the network)
IMPURE_BUILTINS = frozenset({
    "time.now_ns", "rand.intn", "uuid.rfc4122", "uuid.parse", "http.send", "opa.runtime", "net.lookup_ip_addr",
    "io.jwt.decode_verify", "crypto.x509.parse_and_verify_certificates",
    "crypto.x509.parse_and_verify_certificates_with_options", "trace", "print",
})

#: where an engine puts the cached static findings (a key no Rego package can define; refused in policy data)
CACHE_KEY = "mlgate:static"
#: where an engine keeps the input less its per-decision keys (:data:`TIMED_INPUT_KEYS`) when the
#: split reuses it: set once per static key, while the input itself is only the per-decision keys
INPUT_KEY = "mlgate:input"
_INPUT_REF = f'data["{INPUT_KEY}"]'
_SUFFIX = "__mlgate_timed"
_FINDING_RULES = ("violation", "warning")
_DYN = object()


@dataclass(frozen=True)
class Split:
    """The modules an engine compiles for the split evaluation, and what the analysis found."""

    modules: tuple[tuple[str, str], ...]  # (path, text): the decision modules, rewritten
    #: nothing the decision reaches reads input otherwise than by a named key (or a type test), and
    #: every read of a key that is not per-decision is rewritten to read data[INPUT_KEY]: the engine
    #: keeps that part of the input in its data per static key, and the input is only the time and
    #: the request (a few bytes to parse per decision instead of the whole document)
    reuses_input: bool
    #: the entry points whose values are the static findings (data.mlgate.rules.<package>.violation|warning): each
    #: evaluated on its own (the compiled VM's fixed instruction cap applies per run, not to the whole static part)
    static_entries: tuple[str, ...]
    static: tuple[str, ...]  # "package.rule" (or "package.rule@file:line" for a split definition) evaluated once
    timed: tuple[str, ...]  # evaluated per admission
    engine: str = ""  # the engine (and version) the split's modules are compiled for

    @property
    def useful(self) -> bool:
        return bool(self.static)

    @property
    def digest(self) -> str:
        """What was told apart, and by which mlgate and engine: two splits with the same digest cache
        the same findings (a verification summary's static findings are taken only under an equal one)."""
        from mlgate import __version__

        return hashlib.sha256(canonical_json({"static": list(self.static), "timed": list(self.timed), "entries": list(self.static_entries),
                                              "mlgate": __version__, "engine": self.engine})).hexdigest()


def static_key(input_doc: dict[str, Any], parts: dict[str, str] | None = None) -> str:
    """The cache key of a decision's static findings: sha256 over the input less
    :data:`TIMED_INPUT_KEYS`. ``parts``: key -> sha256 of a value's canonical JSON the caller
    already has (the facts, digested once per collection), used instead of serialising it."""
    h = hashlib.sha256()
    for key in sorted(input_doc):
        if key in TIMED_INPUT_KEYS:
            continue
        part = (parts or {}).get(key)
        if part is None:
            part = hashlib.sha256(canonical_json(input_doc[key])).hexdigest()
        h.update(canonical_json(key) + b":" + part.encode("ascii") + b";")
    return h.hexdigest()


# --- the analysis ------------------------------------------------------------------------------


@dataclass
class _Def:
    module: Any  # rego_ast.RegoModule
    rule: Any  # rego_ast.Rule
    direct_timed: bool = False
    deps: set[tuple[str, str]] = field(default_factory=set)
    #: byte spans of ``input`` where this definition reads a key that is the same for every decision
    #: of a release (input.evidence, object.get(input, "model", ...), lib.s(input, "environment")):
    #: rewritten to read data[INPUT_KEY] where the engine keeps the input (``Split.reuses_input``)
    static_spans: list[tuple[int, int]] = field(default_factory=list)
    #: reads ``input`` in a way the analysis cannot name a key for (whole, computed key, an alias)
    input_unknown: bool = False


def _chain(node: dict[str, Any], visit) -> tuple[list[Any], dict[str, Any]] | None:
    """``a.b[c]["d"]`` -> (["a", "b", _DYN, "d"], the Var node of ``a``); the non-literal indexes
    are visited. None when the reference does not start at a name (a call's result, a literal)."""
    out: list[Any] = []
    cur = node
    while True:
        if not isinstance(cur, dict) or len(cur) != 1:
            visit(cur)
            return None
        kind, body = next(iter(cur.items()))
        if kind == "RefDot":
            fld = body.get("field")
            out.append(fld[1] if isinstance(fld, list) and len(fld) == 2 else _DYN)
            cur = body.get("refr")
        elif kind == "RefBrack":
            index = body.get("index") or {}
            if isinstance(index, dict) and "String" in index:
                out.append(index["String"]["value"])
            else:
                out.append(_DYN)
                visit(index)
            cur = body.get("refr")
        elif kind == "Var":
            out.append(body.get("value"))
            out.reverse()
            return out, body
        else:
            visit(cur)
            return None


def _analyse(parsed: Any, by_key: dict[tuple[str, str], list[_Def]]) -> None:
    """Fill each definition's direct time dependence and the rules it uses."""
    rule_prefixes: dict[tuple[str, ...], list[tuple[str, str]]] = {}
    for key in by_key:
        full = ("data", *key[0].split("."), key[1])
        for i in range(1, len(full)):
            rule_prefixes.setdefault(full[:i], []).append(key)

    memo: dict[tuple[str, str], dict[int, int]] = {}

    def accessor_params(key: tuple[str, str]) -> dict[int, int]:
        """For a function: parameter i -> parameter j when every definition reads parameter i only
        as ``object.get(i, j, ...)`` or a type test (``is_object(i)``): ``f(input, "k")`` reads input.k."""
        if key not in memo:
            memo[key] = {}  # a recursive function reads its parameter some other way too, as far as this knows
            found: dict[int, int] | None = None
            for d in by_key.get(key, []):
                head = d.rule.node.get("Spec", {}).get("head", {}).get("Func")
                if not head:
                    found = {}
                    break
                names = [a["Var"]["value"] if isinstance(a, dict) and "Var" in a else None for a in head.get("args") or []]
                here = {}
                for i, p in enumerate(names):
                    for j, q in enumerate(names):
                        if p is not None and q is not None and i != j and _only_accessed([d.rule.node["Spec"].get("bodies"), head.get("assign")], p, q):
                            here[i] = j
                found = here if found is None else {i: j for i, j in found.items() if here.get(i) == j}
            memo[key] = found or {}
        return memo[key]

    for defs in by_key.values():
        for d in defs:
            module = d.module

            def classify(parts: list[Any], root: dict[str, Any], d: _Def = d, module: Any = module) -> None:
                literal: list[str] = []
                for p in parts:
                    if p is _DYN:
                        break
                    literal.append(p)
                resolved = parsed.resolve(module, literal) if literal else None
                if resolved is None:
                    if ".".join(literal) in IMPURE_BUILTINS:
                        d.direct_timed = True
                    return  # a local variable or a pure builtin
                if resolved[0] == "input":
                    if len(resolved) == 1 or resolved[1] in TIMED_INPUT_KEYS:
                        d.direct_timed = True
                    if len(resolved) == 1 or root.get("value") != "input":
                        d.input_unknown = True
                    elif resolved[1] not in TIMED_INPUT_KEYS:
                        d.static_spans.append((root["span"]["start"], root["span"]["end"]))
                    return
                if resolved[0] != "data":
                    return
                if len(resolved) == 1 or resolved[1].startswith("mlgate:"):
                    # data as a whole, or mlgate's own keys (the engine's cache, the kept input): what a rule sees there
                    # would differ between the split and the whole evaluation
                    where = f"{module.display}:{d.rule.line}"
                    raise PolicyError(f"{where}: rule {d.rule.name!r} reads " + ("data as a whole" if len(resolved) == 1 else
                                      f"data[{resolved[1]!r}]") + "; keys that start with 'mlgate:' are mlgate's own (the "
                                      "webhook's cache of time-independent findings), and a rule reads data by name")
                inside = tuple(resolved[1:3])
                if inside == _FINDINGS or inside == _FINDINGS[: len(inside)] and len(resolved) <= 2:
                    # the generated composition (or a package above it, as a value): every finding, the timed ones too
                    d.direct_timed = True  # (and, where the composition is among the parsed modules, a dependency below)
                for cut in range(len(resolved), 1, -1):  # the rule the reference lands in (data.p.q.rule.field...)
                    key = (".".join(resolved[1 : cut - 1]), resolved[cut - 1])
                    if key in by_key:
                        d.deps.add(key)
                        return
                # A package (or anything above a rule) as a value, or with a computed key: it may be
                # any rule under it that the rest of the reference matches (data.mlgate.rules[p].late:
                # every rule named late one package below data.mlgate.rules), so it depends on each.
                below = rule_prefixes.get(tuple(resolved), ())
                rest = [p if isinstance(p, str) else None for p in parts[len(literal):]]
                for key in below:
                    full = [*key[0].split("."), key[1]]
                    tail = full[len(resolved) - 1:]
                    if all(want is None or want == got for want, got in zip(rest, tail)):
                        d.deps.add(key)

            def call(item: dict[str, Any], visit: Any, d: _Def = d, module: Any = module) -> bool:
                """A call that passes ``input`` itself: True when handled (read as input[K] for a literal K)."""
                body = item["Call"]
                params = body.get("params") or []
                bare = [i for i, p in enumerate(params) if _is_var(p, "input")]
                if not bare:
                    return False
                chain = _chain(body.get("fcn"), visit) if isinstance(body.get("fcn"), dict) else None
                parts = chain[0] if chain else None
                literal = [p for p in parts if isinstance(p, str)] if parts and _DYN not in parts else None
                resolved = parsed.resolve(module, literal) if literal else None
                keys: list[tuple[int, Any]] = []  # (the parameter that is input, the key read through it)
                if literal and resolved is None and ".".join(literal) == "object.get" and bare == [0] and len(params) >= 2:
                    keys = [(0, _literal_key(params[1]))]
                elif literal and resolved is None and ".".join(literal) in _TYPE_BUILTINS and len(params) == 1:
                    keys = []
                elif resolved is not None and resolved[0] == "data":
                    fn = (".".join(resolved[1:-1]), resolved[-1])
                    accessors = accessor_params(fn)
                    keys = [(i, _literal_key(params[accessors[i]]) if i in accessors else None) for i in bare]
                    if fn in by_key:
                        d.deps.add(fn)
                else:
                    keys = [(i, None) for i in bare]
                for i, k in keys:
                    if k is None or k in TIMED_INPUT_KEYS:
                        d.direct_timed = True
                    if k is None:
                        d.input_unknown = True
                    elif k not in TIMED_INPUT_KEYS:
                        span = params[i]["Var"]["span"]
                        d.static_spans.append((span["start"], span["end"]))
                visit([p for i, p in enumerate(params) if i not in bare])
                return True

            def visit(node: Any, classify=classify, call=call) -> None:
                stack = [node]
                while stack:
                    item = stack.pop()
                    if isinstance(item, list):
                        stack.extend(item)
                        continue
                    if not isinstance(item, dict):
                        continue
                    if len(item) == 1 and next(iter(item)) in ("Var", "RefDot", "RefBrack"):
                        chain = _chain(item, visit)
                        if chain is not None:
                            classify(*chain)
                        continue
                    if len(item) == 1 and "Call" in item and call(item, visit):
                        continue
                    stack.extend(item.values())

            node = d.rule.node
            if "Spec" in node:
                head = next(iter(node["Spec"]["head"].values()))
                visit([node["Spec"].get("bodies"), head.get("assign"), head.get("key"), head.get("args")])
                # the head's own reference (frozen[k], p.q[x]): its computed keys may read too; its name is this rule
                refr = head.get("refr")
                while isinstance(refr, dict) and len(refr) == 1 and next(iter(refr)) in ("RefDot", "RefBrack"):
                    body = next(iter(refr.values()))
                    index = body.get("index")
                    if isinstance(index, dict) and "String" not in index:
                        visit(index)
                    refr = body.get("refr")
            else:
                visit(node.get("Default", {}).get("value"))


_FINDINGS = ("mlgate", "findings")  # data.mlgate.findings: generated (mlgate.policy.compose), not among the parsed modules

_TYPE_BUILTINS = frozenset({"is_object", "is_array", "is_set", "is_string", "is_number", "is_boolean", "is_null", "type_name"})


def _is_var(node: Any, name: str) -> bool:
    return isinstance(node, dict) and len(node) == 1 and "Var" in node and node["Var"].get("value") == name


def _literal_key(node: Any) -> str | None:
    """The first key of a literal ``"k"`` or ``["k", ...]``; None for anything computed."""
    if isinstance(node, dict) and "String" in node:
        return node["String"]["value"]
    if isinstance(node, dict) and "Array" in node:
        items = node["Array"].get("items") or []
        if items and isinstance(items[0], dict) and "String" in items[0]:
            return items[0]["String"]["value"]
    return None


def _only_accessed(node: Any, p: str, q: str) -> bool:
    """Every use of the variable ``p`` under ``node`` is ``object.get(p, q, ...)`` or a type test
    ``is_object(p)``, and every use of ``q`` is that key (so neither is bound again anywhere: a
    ``q := "evaluated_at_ns"`` inside would make ``f(input, "model")`` read the time)."""
    from mlgate.policy.rego_ast import ref_parts, walk

    uses_p = allowed_p = uses_q = allowed_q = 0
    for sub in walk(node):
        if _is_var(sub, p):
            uses_p += 1
        if _is_var(sub, q):
            uses_q += 1
        call = sub.get("Call") if len(sub) == 1 else None
        if isinstance(call, dict):
            name = ".".join(ref_parts(call.get("fcn")) or [])
            params = call.get("params") or []
            if name == "object.get" and len(params) >= 2 and _is_var(params[0], p) and _is_var(params[1], q):
                allowed_p += 1
                allowed_q += 1
            elif name in _TYPE_BUILTINS and len(params) == 1 and _is_var(params[0], p):
                allowed_p += 1
    return uses_p > 0 and uses_p == allowed_p and uses_q == allowed_q


def rule_cycles(decision_modules: list[Any], root: Any = None) -> list[str]:
    """Rules that depend on themselves, directly or through others (``a if b`` / ``b if a``), each
    as ``file:line: a -> b -> a``. Rego forbids recursion (OPA refuses it at compile time); the
    compiled VM of regorus 0.13 does not check it and overflows its native stack on the first
    evaluation, killing the process, so the engine refuses such a policy at load."""
    from mlgate.policy.rego_ast import ParsedPolicy, parse_modules

    parsed = ParsedPolicy(None, parse_modules([m for m in decision_modules if not getattr(m, "is_test", False)], root))
    by_key: dict[tuple[str, str], list[_Def]] = {}
    for m in parsed.modules:
        for r in m.rules:
            by_key.setdefault((m.package, r.name), []).append(_Def(m, r))
    try:
        _analyse(parsed, by_key)
    except PolicyError:
        pass  # what the time split refuses is refused where it is used; here only the graph matters
    graph = {k: sorted({dep for d in defs for dep in d.deps}) for k, defs in by_key.items()}
    found: list[str] = []
    state: dict[tuple[str, str], int] = {}  # 1: on the path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path: list[tuple[str, str]] = []
        stack: list[tuple[tuple[str, str], int]] = [(start, 0)]
        while stack:
            node, i = stack.pop()
            if i == 0:
                state[node] = 1
                path.append(node)
            deps = graph.get(node, [])
            if i < len(deps):
                stack.append((node, i + 1))
                nxt = deps[i]
                if state.get(nxt) == 1:
                    cycle = path[path.index(nxt):] + [nxt]
                    first = by_key[nxt][0]
                    found.append(f"{first.module.display}:{first.rule.line}: " + " -> ".join(f"{p}.{n}" for p, n in cycle))
                elif not state.get(nxt) and nxt in graph:
                    stack.append((nxt, 0))
            else:
                state[node] = 2
                path.pop()
    return found


def _timed_keys(by_key: dict[tuple[str, str], list[_Def]]) -> set[tuple[str, str]]:
    timed = {k for k, defs in by_key.items() if any(d.direct_timed for d in defs)}
    changed = True
    while changed:
        changed = False
        for key, defs in by_key.items():
            if key not in timed and any(dep in timed for d in defs for dep in d.deps):
                timed.add(key)
                changed = True
    return timed


def split(decision_modules: list[Any], data: dict[str, Any], generated_path: str, *, engine: str = "") -> Split:
    """The split of a policy's decision modules (``path``, ``text``, ``is_test`` each; the
    generated findings module at ``generated_path`` among them)."""
    from mlgate.policy.compose import FINDING_RULES, PACKAGE
    from mlgate.policy.rego_ast import ParsedPolicy, parse_modules

    reserved = sorted(k for k in data if isinstance(k, str) and k.startswith("mlgate:"))
    if reserved:
        raise PolicyError(f"policy data may not set {reserved[0]!r}: mlgate keeps its cache of time-independent findings "
                          "under the data keys that start with 'mlgate:'")
    findings_data = data.get(_FINDINGS[0], {}).get(_FINDINGS[1]) if isinstance(data.get(_FINDINGS[0]), dict) else None
    if findings_data is not None:
        raise PolicyError("policy data may not set mlgate.findings: that package is generated by mlgate (the findings "
                          "composition and its time split)")
    own = [m for m in decision_modules if m.path != generated_path]
    parsed = ParsedPolicy(None, parse_modules(own))  # the same name resolution as the policy tools
    by_key: dict[tuple[str, str], list[_Def]] = {}
    for m in parsed.modules:
        for r in m.rules:
            by_key.setdefault((m.package, r.name), []).append(_Def(m, r))
    _analyse(parsed, by_key)
    timed_keys = _timed_keys(by_key)

    def def_timed(d: _Def) -> bool:
        return d.direct_timed or any(dep in timed_keys for dep in d.deps)

    # The rules the decision reaches (the composition aside): a finding rule one of them reads
    # stays whole. Others (data.mlgate.monitoring, queried on the tree-walker over the policy as
    # written, never on the split modules) do not matter here.
    reached: set[tuple[str, str]] = set()
    todo = [("mlgate", "decision")] + [k for k in by_key if k[1] in FINDING_RULES and k[0].startswith("mlgate.rules.")]
    while todo:
        key = todo.pop()
        if key in reached or key not in by_key:
            continue
        reached.add(key)
        todo.extend(dep for d in by_key[key] for dep in d.deps)
    readers: set[tuple[str, str]] = {dep for key in reached for d in by_key[key] for dep in d.deps}
    reuses_input = not any(d.input_unknown for key in reached for d in by_key[key])
    static_refs: dict[str, list[str]] = {n: [] for n in FINDING_RULES}
    timed_refs: dict[str, list[str]] = {n: [] for n in FINDING_RULES}
    renames: dict[str, list[tuple[int, int, str]]] = {}  # module path -> (start, end, new name)
    static_names: list[str] = []
    timed_names: list[str] = []
    prefix = "mlgate.rules."
    for (package, name), defs in sorted(by_key.items(), key=lambda kv: kv[0]):
        if name not in FINDING_RULES or not package.startswith(prefix) or "." in package[len(prefix):]:
            continue
        pkg = package[len(prefix):]
        ref = f'data.mlgate.rules["{pkg}"].{name}'
        kinds = {d.rule.kind for d in defs}
        split_ok = kinds == {"Set"} and (package, name) not in readers
        timed_defs = [d for d in defs if def_timed(d)]
        if not timed_defs:
            static_refs[name].append(ref)
            static_names.append(f"{package}.{name}")
        elif not split_ok or len(timed_defs) == len(defs):
            timed_refs[name].append(ref)
            timed_names.append(f"{package}.{name}")
        else:
            new = name + _SUFFIX
            if new in parsed.packages.get(package, set()):
                raise PolicyError(f"package {package} defines {new!r}, a name mlgate reserves for the time split")
            static_refs[name].append(ref)
            timed_refs[name].append(f'data.mlgate.rules["{pkg}"].{new}')
            for d in defs:
                where = f"{package}.{name}@{d.module.path}:{d.rule.line}"
                if d in timed_defs:
                    span = d.rule.node["Spec"]["head"]["Set"]["refr"]["Var"]["span"]
                    renames.setdefault(d.module.path, []).append((span["start"], span["end"], new))
                    timed_names.append(where)
                else:
                    static_names.append(where)
    if reuses_input:
        for defs in by_key.values():
            for d in defs:
                for start, end in d.static_spans:
                    renames.setdefault(d.module.path, []).append((start, end, _INPUT_REF))
    texts = {m.path: m.text for m in own}
    out: list[tuple[str, str]] = []
    for m in own:
        raw = m.text.encode("utf-8")
        for start, end, new in sorted(renames.get(m.path, []), reverse=True):
            if raw[start:end].decode("utf-8") not in (*_FINDING_RULES, "input"):  # pragma: no cover - the parse's spans are byte offsets
                raise PolicyError(f"{m.path}: the time split could not rewrite the rule head at byte {start}")
            raw = raw[:start] + new.encode("utf-8") + raw[end:]
        out.append((m.path, raw.decode("utf-8") if m.path in renames else texts[m.path]))
    out.append((generated_path, _split_findings(PACKAGE, static_refs, timed_refs)))
    entries = tuple(ref.replace('data.mlgate.rules["', "data.mlgate.rules.").replace('"].', ".")
                    for name in FINDING_RULES for ref in static_refs[name])
    return Split(tuple(out), reuses_input, entries, tuple(static_names), tuple(timed_names), engine)


def _union(refs: list[str], var: str) -> str:
    from mlgate.policy.compose import union_of

    return union_of(refs, var)


def _split_findings(package: str, static: dict[str, list[str]], timed: dict[str, list[str]]) -> str:
    from mlgate.policy.compose import HEADER

    return (HEADER + "# The time split (mlgate/policy/timesplit.py): the static findings come from the engine's cache\n"
            f'# (data["{CACHE_KEY}"]) when it holds them, and are computed otherwise.\n'
            f"package {package}\n\nimport rego.v1\n\n"
            f"static_violations_now := {_union(static['violation'], 'v')}\n\n"
            f"static_warnings_now := {_union(static['warning'], 'w')}\n\n"
            f'cached if is_object(data["{CACHE_KEY}"])\n\n'
            f'static_violations := {{v | some v in data["{CACHE_KEY}"].violations}} if cached\n\n'
            "static_violations := static_violations_now if not cached\n\n"
            f'static_warnings := {{w | some w in data["{CACHE_KEY}"].warnings}} if cached\n\n'
            "static_warnings := static_warnings_now if not cached\n\n"
            f"violations := static_violations | {_union(timed['violation'], 'v')}\n\n"
            f"warnings := static_warnings | {_union(timed['warning'], 'w')}\n")
