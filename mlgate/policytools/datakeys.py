"""Which keys of the environment data the rules read, found on the engine's parse tree.

A small abstract interpretation: a value is either unknown or "the environment document at
path P" (``data.mlgate.environments[<any>]`` plus literal keys). It follows

* references: ``env.evidence.max_age_days``, ``cfg.delta``, ``required[i].role`` (a
  non-literal index is ``*``: every element);
* ``object.get(x, "k", d)`` and ``object.get(x, ["a", "b"], d)``;
* assignments (``cfg := lib.thresholds("bias")``), ``some x in coll`` (``x`` is ``coll.*``)
  and package-level rules (``env := data.mlgate.environments[input.environment]``);
* user functions, through a summary per function: which of its arguments it reads at which
  key (``lib.list_of(cfg, "metrics")`` reads ``cfg.metrics``) and what it returns
  (``lib.thresholds("bias")`` returns the environment at ``bias``).

A key computed at run time (not a literal, not a function argument) is not followed; the
analysis under-approximates, so every reported read is real.

With ``root=INPUT_ROOT`` the same analysis follows ``input`` instead: the input-document paths
a rule reads (``input.evidence.bias_audit.comparisons[*].gap``), for ``mlgate explain``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from mlgate.policy.rego_ast import ParsedPolicy, RegoModule, ref_parts

STAR = "*"
ENV_ROOT = ("mlgate", "environments")
INPUT_ROOT = ("input",)  # follow the input document instead of the environment data

# Abstract values: None (unknown), ("env", path) or ("param", i, path) inside a function
# summary. Path items are str, or ("arg", j): the string literal passed as argument j.


@dataclass(frozen=True)
class Read:
    file: str
    line: int
    path: tuple[str, ...]


@dataclass
class _Summary:
    reads: list[tuple[int, tuple]]  # (param index, path relative to that param)
    env_reads: list[tuple[int, tuple]]  # (line, path with ("arg", j) items)
    returns: Any


class DataKeyAnalysis:
    def __init__(self, parsed: ParsedPolicy, env_root: tuple[str, ...] = ENV_ROOT):
        self.parsed = parsed
        self.env_root = env_root
        self.track_input = env_root == INPUT_ROOT
        self.reads: set[Read] = set()
        self._rule_values: dict[tuple[str, str], Any] = {}
        self._summaries: dict[tuple[str, str], _Summary | None] = {}
        self._in_progress: set[tuple[str, str]] = set()
        self._rules_by_pkg: dict[tuple[str, str], list[tuple[RegoModule, Any]]] = {}
        for module in parsed.modules:
            for rule in module.rules:
                self._rules_by_pkg.setdefault((module.package, rule.name), []).append((module, rule))

    # --- entry ---------------------------------------------------------------------------

    def run(self, modules: list[RegoModule]) -> list[Read]:
        for module in modules:
            for rule in module.rules:
                if rule.kind == "Func":
                    self._summary(module.package, rule.name)
                else:
                    self._rule_value(module.package, rule.name)
                    # partial sets and boolean rules: their bodies read too
                    self._eval_rule_node(module, rule.node, params={}, sink=None)
        return sorted(self.reads, key=lambda r: (r.file, r.line, r.path))

    # --- rules and functions ---------------------------------------------------------------

    def _rule_value(self, package: str, name: str) -> Any:
        key = (package, name)
        if key in self._rule_values:
            return self._rule_values[key]
        if key in self._in_progress:
            return None
        self._in_progress.add(key)
        value = None
        for module, rule in self._rules_by_pkg.get(key, []):
            if rule.kind in ("Func", "Set"):
                continue
            got = self._eval_rule_node(module, rule.node, params={}, sink=None)
            value = value or got
        self._in_progress.discard(key)
        self._rule_values[key] = value
        return value

    def _summary(self, package: str, name: str) -> _Summary | None:
        key = (package, name)
        if key in self._summaries:
            return self._summaries[key]
        if key in self._in_progress:
            return None
        self._in_progress.add(key)
        summary = _Summary([], [], None)
        for module, rule in self._rules_by_pkg.get(key, []):
            if rule.kind != "Func":
                continue
            head = rule.node["Spec"]["head"]["Func"]
            params = {}
            for i, arg in enumerate(head.get("args", [])):
                parts = ref_parts(arg)
                if parts and len(parts) == 1:
                    params[parts[0]] = i
            got = self._eval_rule_node(module, rule.node, params=params, sink=summary)
            summary.returns = summary.returns or got
        self._in_progress.discard(key)
        self._summaries[key] = summary
        return summary

    def _eval_rule_node(self, module: RegoModule, node: dict, *, params: dict[str, int], sink: _Summary | None) -> Any:
        if "Default" in node:
            return None
        spec = node["Spec"]
        head = next(iter(spec["head"].values()))
        value = None
        bodies = spec.get("bodies") or [{"assign": None, "query": {"stmts": []}}]
        for body in bodies:
            ctx = _Ctx(self, module, params, sink)
            ctx.query(body.get("query") or {})
            assign = body.get("assign") or (head.get("assign") if not body.get("is_else") else None)
            if isinstance(assign, dict) and "value" in assign:
                value = value or ctx.eval(assign["value"])
            key = head.get("key")
            if key is not None:
                ctx.eval(key)
        return value


class _Ctx:
    """Evaluation of one rule body: local variables and where reads go."""

    def __init__(self, analysis: DataKeyAnalysis, module: RegoModule, params: dict[str, int], sink: _Summary | None):
        self.a = analysis
        self.module = module
        self.params = params
        self.sink = sink
        self.locals: dict[str, Any] = {}

    # --- recording ---------------------------------------------------------------------------

    def record(self, value: Any, line: int) -> None:
        if value is None:
            return
        if value[0] == "env":
            path = value[1]
            if not path:
                return
            if any(not isinstance(p, str) for p in path):
                if self.sink is not None:
                    self.sink.env_reads.append((line, path))
                return
            self.a.reads.add(Read(self.module.display, line, path))
        elif value[0] == "param" and self.sink is not None and value[2]:
            self.sink.reads.append((value[1], value[2]))

    # --- statements ----------------------------------------------------------------------------

    def query(self, query: dict) -> None:
        for stmt in query.get("stmts", []):
            literal = stmt.get("literal", {})
            for kind, body in literal.items():
                if kind == "SomeIn":
                    coll = self.eval(body.get("collection"))
                    element = _extend(coll, (STAR,))
                    for slot, val in (("key", None), ("value", element)):
                        parts = ref_parts(body.get(slot)) if isinstance(body.get(slot), dict) and "Var" in body.get(slot) else None
                        if parts:
                            self.locals[parts[0]] = val
                elif kind == "Every":
                    coll = self.eval(body.get("domain"))
                    name = self._span_text(body.get("value"))
                    if name:
                        self.locals[name] = _extend(coll, (STAR,))
                    self.query(body.get("query") or {})
                elif kind == "NotExpr":
                    self.eval(body.get("expr"))
                elif kind == "Expr":
                    self.eval(body.get("expr"))
                else:  # SomeVars and others: nothing to read
                    pass
            for mod in stmt.get("with_mods", []) or []:
                self.eval(mod.get("as"))

    def _span_text(self, span: Any) -> str | None:
        if isinstance(span, dict) and "start" in span:
            raw = self.module.text.encode("utf-8")
            return raw[span["start"] : span["end"]].decode("utf-8", "replace").strip() or None
        return None

    # --- expressions ----------------------------------------------------------------------------

    def eval(self, node: Any) -> Any:
        if not isinstance(node, dict) or len(node) != 1:
            return None
        kind, body = next(iter(node.items()))
        line = int(body.get("span", {}).get("line", 0)) if isinstance(body, dict) else 0
        if kind == "Var":
            return self._var(body["value"])
        if kind in ("RefDot", "RefBrack"):
            base = self.eval(body.get("refr"))
            if kind == "RefDot":
                key: Any = body["field"][1]
            else:
                index = body.get("index") or {}
                if "String" in index:
                    key = index["String"]["value"]
                else:
                    self.eval(index)
                    parts = ref_parts(index)
                    key = ("arg", self.params[parts[0]]) if parts and len(parts) == 1 and parts[0] in self.params else STAR
            return self._select(base, key, line)
        if kind == "AssignExpr":
            value = self.eval(body.get("rhs"))
            parts = ref_parts(body.get("lhs"))
            if parts and len(parts) == 1:
                self.locals[parts[0]] = value
            else:
                self.eval(body.get("lhs"))
            return None
        if kind == "Call":
            return self._call(body, line)
        if kind in ("ArrayCompr", "SetCompr", "ObjectCompr"):
            inner = _Ctx(self.a, self.module, self.params, self.sink)
            inner.locals = dict(self.locals)
            inner.query(body.get("query") or {})
            values = {slot: inner.eval(body.get(slot)) for slot in ("term", "key", "value")}
            # A filter over a collection ([c | some c in xs; ...]) has the collection's elements:
            # its value is the collection, so `some c in <the comprehension>` reads what `some c in
            # xs` would (the bias rules iterate their filtered comparisons this way).
            term = values["term"] if kind != "ObjectCompr" else values["value"]
            if isinstance(term, tuple) and term and isinstance(term[-1], tuple) and term[-1][-1:] == (STAR,):
                return (*term[:-1], term[-1][:-1])
            return None
        # any other node: evaluate its children for the reads they make
        for child in _children(body):
            self.eval(child)
        return None

    def _var(self, name: str) -> Any:
        if name in self.locals:
            return self.locals[name]
        if name in self.params:
            return ("param", self.params[name], ())
        if name == "data":
            return ("data", ())
        if name == "input":
            return ("env", ()) if self.a.track_input else None
        resolved = self.a.parsed.resolve(self.module, [name])
        if resolved and resolved[0] == "data" and name != "input":
            return self._data(tuple(resolved[1:]))
        return None

    def _data(self, parts: tuple) -> Any:
        """A data reference: a rule of a known package, the environments root, or just data."""
        for cut in range(len(parts), 0, -1):
            package, rest = ".".join(parts[: cut - 1]), parts[cut - 1 :]
            if package in self.a.parsed.packages and rest[0] in self.a.parsed.packages[package]:
                if (package, rest[0]) in self.a._rules_by_pkg and all(
                    r.kind != "Func" for _, r in self.a._rules_by_pkg[(package, rest[0])]
                ):
                    value = self.a._rule_value(package, rest[0])
                    for key in rest[1:]:
                        value = _extend(value, (key,))
                    return value
                return ("func", package, rest[0])
        return ("data", parts)

    def _select(self, base: Any, key: Any, line: int) -> Any:
        if base is None:
            return None
        if base[0] == "data":
            parts = base[1]
            if parts == self.a.env_root and not self.a.track_input:
                return ("env", ())
            return self._data(parts + (key,)) if isinstance(key, str) else None
        if base[0] in ("env", "param"):
            value = _extend(base, (key,))
            self.record(value, line)
            return value
        return None

    def _call(self, body: dict, line: int) -> Any:
        params = body.get("params", [])
        args = [self.eval(p) for p in params]
        parts = ref_parts(body.get("fcn"))
        if not parts:
            return None
        if parts == ["object", "get"] and len(params) >= 2:
            keys = self._literal_keys(params[1])
            if keys is None:
                return None
            value = _extend(args[0], keys)
            self.record(value, line)
            return value
        resolved = self.a.parsed.resolve(self.module, parts)
        if not resolved or resolved[0] != "data" or len(resolved) < 3:
            return None
        package, name = ".".join(resolved[1:-1]), resolved[-1]
        summary = self.a._summary(package, name)
        if summary is None:
            return None
        literals = [self._literal_keys(p) for p in params]

        def subst(path: tuple) -> tuple | None:
            out: list[Any] = []
            for item in path:
                if isinstance(item, tuple):  # ("arg", j)
                    lit = literals[item[1]] if item[1] < len(literals) else None
                    if lit is None:
                        if item[1] < len(args) and args[item[1]] is not None:
                            return None
                        return None
                    out.extend(lit)
                else:
                    out.append(item)
            return tuple(out)

        def rebase(value: Any) -> Any:
            if value is None:
                return None
            if value[0] == "param":
                base = args[value[1]] if value[1] < len(args) else None
                path = subst(value[2])
                return None if base is None or path is None else _extend(base, path)
            if value[0] == "env":
                path = subst(value[1])
                return None if path is None else ("env", path)
            return None

        for index, path in summary.reads:
            self.record(rebase(("param", index, path)), line)
        for _, path in summary.env_reads:
            self.record(rebase(("env", path)), line)
        return rebase(summary.returns)

    def _literal_keys(self, node: Any) -> tuple | None:
        if not isinstance(node, dict):
            return None
        if "String" in node:
            return (node["String"]["value"],)
        if "Array" in node:
            out: list[Any] = []
            for item in node["Array"].get("items", []):
                if "String" in item:
                    out.append(item["String"]["value"])
                    continue
                parts = ref_parts(item)  # a function parameter: its literal at each call site
                if parts and len(parts) == 1 and parts[0] in self.params and parts[0] not in self.locals:
                    out.append(("arg", self.params[parts[0]]))
                    continue
                return None
            return tuple(out)
        parts = ref_parts(node)
        if parts and len(parts) == 1 and parts[0] in self.params and parts[0] not in self.locals:
            return (("arg", self.params[parts[0]]),)
        return None


def _extend(value: Any, keys: tuple) -> Any:
    if value is None:
        return None
    if value[0] == "env":
        return ("env", value[1] + tuple(keys))
    if value[0] == "param":
        return ("param", value[1], value[2] + tuple(keys))
    return None


def _children(body: Any) -> Iterator[Any]:
    if isinstance(body, dict):
        for key, value in body.items():
            if key == "span":
                continue
            if isinstance(value, dict) and len(value) == 1 and next(iter(value))[:1].isupper():
                yield value
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, dict) and len(item) == 1 and next(iter(item))[:1].isupper():
                        yield item
                    elif isinstance(item, list):  # object fields: [span, key, value]
                        for sub in item:
                            if isinstance(sub, dict) and len(sub) == 1 and next(iter(sub))[:1].isupper():
                                yield sub


def missing_in(document: Any, path: tuple[str, ...]) -> str | None:
    """Why ``path`` does not exist in ``document`` (None when it does, for every ``*``)."""

    def dotted(parts: tuple[str, ...]) -> str:
        return "".join(p if p.startswith("[") else f".{p}" for p in parts).lstrip(".") or "<root>"

    def go(node: Any, rest: tuple[str, ...], seen: tuple[str, ...]) -> str | None:
        if not rest:
            return None
        key, tail = rest[0], rest[1:]
        if key == STAR:
            if isinstance(node, list):
                items = list(enumerate(node))
            elif isinstance(node, dict):
                items = list(node.items())
            else:
                return f"{dotted(seen)} is not a list or object"
            for k, item in items:
                why = go(item, tail, seen + (f"[{k}]",))
                if why:
                    return why
            return None
        if not isinstance(node, dict):
            return f"{dotted(seen)} is not an object"
        if key not in node:
            return f"{dotted(seen + (key,))} is missing"
        return go(node[key], tail, seen + (key,))

    return go(document, path, ())
