"""The policy set as the embedded engine parses it: modules, packages, imports, rule heads.

Built once per command from :func:`mlgate.policy.load_policy` on a raw regorus engine that
also holds the ``*_test.rego`` modules. Every location (file, line) comes from the engine's
own parse tree (``get_ast_as_json``), never from regular expressions over the text, except
METADATA comments, which the parse tree does not keep.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import yaml

from mlgate.errors import PolicyError
from mlgate.safeio import display

if TYPE_CHECKING:  # a type only: policyset imports this module to check data overrides against rule paths
    from mlgate.policy.policyset import PolicySet

# The engine's own names (not builtins, not user rules).
_KEYWORD_ROOTS = {"data", "input"}


_LOCATION = re.compile(r"-->\s*(?P<file>[^\s:]+):(?P<line>\d+):(?P<col>\d+)")
_MESSAGE = re.compile(r"^error:\s*(?P<msg>.+)$", re.MULTILINE)
_MISSING = "could not find function"


def load_regorus():
    os.environ.pop("RUST_BACKTRACE", None)
    os.environ.pop("RUST_LIB_BACKTRACE", None)
    import regorus

    return regorus


def one_line_error(exc: BaseException) -> str:
    """regorus errors are multi-line source snippets; keep ``file:line:col: message``."""
    text = str(exc).split("Stack backtrace:")[0]
    loc, msg = _LOCATION.search(text), _MESSAGE.search(text)
    message = msg.group("msg").strip() if msg else " ".join(text.split())
    if loc:
        return f"{loc.group('file')}:{loc.group('line')}:{loc.group('col')}: {message}"
    return message or type(exc).__name__


@lru_cache(maxsize=None)
def engine_has_builtin(name: str) -> bool:
    """Ask the engine itself: compile and run a call with a wrong argument, read the error kind."""
    regorus = load_regorus()
    probe = regorus.Engine()
    probe.add_policy("probe.rego", f"package mlgate_probe\nimport rego.v1\nx if {{ {name}(null) }}\n")
    try:
        probe.eval_query_as_json("data.mlgate_probe.x")
    except Exception as exc:  # noqa: BLE001 - regorus raises RuntimeError/ValueError alike
        return _MISSING not in str(exc)
    return True


def new_raw_engine(policy: PolicySet, *, coverage: bool = False, include_tests: bool = True) -> Any:
    """A regorus engine with the modules (tests included by default) and the data of ``policy``."""
    engine = load_regorus().Engine()
    if coverage:
        engine.set_enable_coverage(True)
    for module in policy.modules:
        if module.is_test and not include_tests:
            continue
        try:
            engine.add_policy(module.path, module.text)
        except Exception as exc:  # noqa: BLE001 - parse errors: RuntimeError from the native side
            raise PolicyError(_located(one_line_error(exc), policy, module.path)) from None
    try:
        engine.add_data_json(json.dumps(policy.data))
    except Exception as exc:  # noqa: BLE001
        raise PolicyError(f"cannot load policy data: {one_line_error(exc)}", file=display(policy.root)) from None
    return engine


def _located(message: str, policy: PolicySet | None, path: str, root: Path | None = None) -> str:
    """``mlgate/x.rego:3:5: msg`` (engine path) -> ``policies/mlgate/x.rego:3:5: cannot load policy: msg``."""
    root = policy.root if policy is not None else root
    shown = display(root / path) if root is not None else path
    if message.startswith(path + ":"):
        loc, _, rest = message[len(path) + 1 :].partition(": ")
        return f"{shown}:{loc}: cannot load policy: {rest}"
    return f"{shown}: cannot load policy: {message}"


# --- references -------------------------------------------------------------------------


def ref_parts(node: Any) -> list[str] | None:
    """``a.b["c"]`` -> ["a", "b", "c"]; None when any part is not a literal name."""
    if not isinstance(node, dict) or len(node) != 1:
        return None
    kind, body = next(iter(node.items()))
    if kind == "Var":
        return [body["value"]]
    if kind == "RefDot":
        base = ref_parts(body.get("refr"))
        fld = body.get("field")
        if base is None or not isinstance(fld, list) or len(fld) != 2:
            return None
        return base + [fld[1]]
    if kind == "RefBrack":
        base = ref_parts(body.get("refr"))
        index = body.get("index") or {}
        if base is not None and "String" in index:
            return base + [index["String"]["value"]]
    return None


def head_root(node: Any) -> list[str] | None:
    """The rule name of a head with a computed key (``frozen[k] := true``, ``p.q[x]``): the first
    name of the reference, ``["frozen"]``; None when the reference does not start at a name."""
    cur = node
    while isinstance(cur, dict) and len(cur) == 1:
        kind, body = next(iter(cur.items()))
        if kind == "Var":
            return [body["value"]]
        if kind not in ("RefDot", "RefBrack"):
            return None
        cur = body.get("refr")
    return None


def line_of(node: Any) -> int:
    if isinstance(node, dict):
        if isinstance(node.get("span"), dict):
            return int(node["span"].get("line", 0))
        if len(node) == 1:
            return line_of(next(iter(node.values())))
    return 0


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every dict node below ``node`` (pre-order). Iterative: a policy's AST has tens of
    thousands of nodes, and nested generators made this the largest cost of loading a policy."""
    stack = [node]
    pop, push = stack.pop, stack.extend
    while stack:
        item = pop()
        if isinstance(item, dict):
            yield item
            push(reversed(list(item.values())))
        elif isinstance(item, list):
            push(reversed(item))


# --- modules and rules --------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One rule definition (a rule may have several definitions with the same name)."""

    module: "RegoModule"
    name: str  # first part of the head reference (``violation`` in ``violation contains v``)
    kind: str  # Compr (complete or boolean), Set (``contains``), Func, Default
    line: int
    node: dict[str, Any] = field(hash=False, compare=False, repr=False)

    @property
    def where(self) -> str:
        return f"{self.module.display}:{self.line}"


@dataclass
class RegoModule:
    path: str  # relative to the policy root, as the engine knows it
    display: str  # as a person should read it (relative to the working directory)
    text: str
    is_test: bool
    ast: dict[str, Any]

    @cached_property
    def package(self) -> str:
        return ".".join(ref_parts(self.ast.get("package", {}).get("refr")) or [])

    @cached_property
    def imports(self) -> dict[str, list[str]]:
        """Local name -> imported reference (``lib`` -> [data, mlgate, lib])."""
        found: dict[str, list[str]] = {}
        raw = self.text.encode("utf-8")
        for imp in self.ast.get("imports", []):
            parts = ref_parts(imp.get("refr"))
            if not parts or parts == ["rego", "v1"] or parts[:1] == ["future"]:
                continue
            alias = imp.get("as")
            if isinstance(alias, dict) and "start" in alias:  # regorus keeps only the alias's span
                name = raw[alias["start"] : alias["end"]].decode("utf-8", "replace").strip()
            elif isinstance(alias, str):
                name = alias
            else:
                name = parts[-1]
            found[name] = parts
        return found

    @cached_property
    def rules(self) -> list[Rule]:
        out = []
        for node in self.ast.get("rules", []):
            if "Spec" in node:
                head_kind, head = next(iter(node["Spec"]["head"].items()))
                parts = ref_parts(head.get("refr")) or head_root(head.get("refr"))
                line = int(node["Spec"]["span"]["line"])
            elif "Default" in node:
                head_kind, parts, line = "Default", ref_parts(node["Default"].get("refr")) or head_root(node["Default"].get("refr")), int(node["Default"]["span"]["line"])
            else:  # pragma: no cover - the engine knows no other kind today
                continue
            if parts:
                out.append(Rule(self, parts[0], head_kind, line, node))
        return out

    @cached_property
    def rule_names(self) -> set[str]:
        return {r.name for r in self.rules}


@dataclass
class ParsedPolicy:
    policy: PolicySet
    modules: list[RegoModule]

    @cached_property
    def packages(self) -> dict[str, set[str]]:
        """package -> names of the rules any of its modules define."""
        out: dict[str, set[str]] = {}
        for module in self.modules:
            out.setdefault(module.package, set()).update(module.rule_names)
        return out

    def module(self, path: str) -> RegoModule:
        return next(m for m in self.modules if m.path == path)

    def resolve(self, module: RegoModule, parts: list[str]) -> list[str] | None:
        """The absolute ``data...`` reference a name in ``module`` stands for; None for builtins."""
        head = parts[0]
        if head in module.imports:
            return module.imports[head] + parts[1:]
        if head in _KEYWORD_ROOTS:
            return parts
        if head in self.packages.get(module.package, set()):
            return ["data", *module.package.split("."), *parts]
        return None


def parse(policy: PolicySet, engine: Any | None = None) -> ParsedPolicy:
    engine = engine if engine is not None else new_raw_engine(policy)
    by_path = {m.path: m for m in policy.modules}
    modules = []
    for item in json.loads(engine.get_ast_as_json()):
        path = item["source"]["file"]
        source = by_path.get(path)
        modules.append(
            RegoModule(
                path=path,
                display=display(policy.root / path),
                text=source.text if source else item["source"].get("contents", ""),
                is_test=source.is_test if source else path.endswith("_test.rego"),
                ast=item["ast"],
            )
        )
    modules.sort(key=lambda m: m.path)
    return ParsedPolicy(policy, modules)


def parse_modules(modules: list[Any], root: Path | None = None) -> list[RegoModule]:
    """The engine's parse of ``modules`` (each with ``path``, ``text``, ``is_test``; under the policy
    directory ``root``, for the names shown), sorted by path."""
    engine = load_regorus().Engine()
    for module in modules:
        try:
            engine.add_policy(module.path, module.text)
        except Exception as exc:  # noqa: BLE001 - parse errors: RuntimeError from the native side
            raise PolicyError(_located(one_line_error(exc), None, module.path, root)) from None
    by_path = {m.path: m for m in modules}

    def shown(path: str) -> str:
        return display(root / path) if root is not None else path

    out = [RegoModule(path=item["source"]["file"], display=shown(item["source"]["file"]), text=by_path[item["source"]["file"]].text,
                      is_test=by_path[item["source"]["file"]].is_test, ast=item["ast"])
           for item in json.loads(engine.get_ast_as_json())]
    return sorted(out, key=lambda m: m.path)


# --- builtins -------------------------------------------------------------------------------


def calls(node: Any) -> Iterator[tuple[list[str], int, dict[str, Any]]]:
    """(callee name parts, line, call node) for every call with a static callee."""
    for sub in walk(node):
        call = sub.get("Call")
        if isinstance(call, dict):
            parts = ref_parts(call.get("fcn"))
            if parts:
                yield parts, int(call.get("span", {}).get("line", 0)), call


def builtin_calls(parsed: ParsedPolicy) -> Iterator[tuple[RegoModule, int, str]]:
    """(module, line, builtin name) for every call that is not to a user-defined function."""
    for module in parsed.modules:
        for parts, line, _ in calls(module.ast.get("rules", [])):
            if parsed.resolve(module, parts) is None:
                yield module, line, ".".join(parts)


def missing_builtins(parsed: ParsedPolicy) -> list[tuple[str, int, str]]:
    """(file, line, builtin) for every builtin call the embedded engine does not have.

    Used both by the engine at load time (a policy calling a missing builtin is refused) and by
    ``mlgate policy lint``. It resolves ``import ... as x`` aliases (regorus keeps only the
    alias's span), so modules that call ``td.f(...)`` on an aliased import are not reported.
    """
    found = {(m.display, line, name) for m, line, name in builtin_calls(parsed) if not engine_has_builtin(name)}
    return sorted(found)


_BUILTINS_CACHE = "regorus-builtins-v1"
_RULE_PATHS_CACHE = "rule-paths-v1"


def _policy_key(namespace: str, modules: list[tuple[str, str]], engine: str) -> str | None:
    """The cache key of a fact derived from these modules' text by this code on this engine."""
    from mlgate import localcache

    try:
        code = Path(__file__).read_bytes()
    except OSError:
        return None
    if not engine:
        return None
    return localcache.key_digest(namespace, engine, code, *(part for pair in sorted(modules) for part in pair))


def rule_paths(policy: PolicySet) -> dict[tuple[str, ...], str]:
    """Every path a rule of ``policy`` defines, ``package + rule name`` -> the file (as displayed)
    that first defines it, from the engine's own parse; remembered per policy revision.

    The parse (every module, tests included) costs a start tens of milliseconds; its answer
    depends only on the modules' text, regorus and this code, which key it in the per-user
    cache (:mod:`mlgate.localcache`). Safe for the same reason as every entry there: a forged
    entry could only hide a rule path from the check that a policy's own data does not shadow a
    rule, and whoever can write this user's cache can write the policy directory itself.
    """
    import json as _json

    from mlgate import localcache

    modules = [(m.path, m.text) for m in policy.modules]
    key = _policy_key(_RULE_PATHS_CACHE, modules, localcache.library_fingerprint("regorus"))
    if key is not None:
        cached = localcache.get(_RULE_PATHS_CACHE, key)
        if cached is not None:
            try:
                items = _json.loads(cached)
                shown = {path: display(policy.root / path) for path in {path for _, path in items}}
                return {tuple(parts): shown[path] for parts, path in items}
            except (ValueError, TypeError):
                pass  # a torn or foreign entry: parse again
    found: dict[tuple[str, ...], str] = {}
    where: list[list[Any]] = []
    for module in parse(policy).modules:
        package = tuple(module.package.split(".")) if module.package else ()
        for rule in module.rules:
            path = (*package, rule.name)
            if path not in found:
                found[path] = module.display
                where.append([list(path), module.path])
    if key is not None:
        localcache.put(_RULE_PATHS_CACHE, key, _json.dumps(where).encode("utf-8"))
    return found


_PACKAGES_CACHE = "module-packages-v1"


def remembered(namespace: str, modules: list[tuple[str, str]], compute: Any, valid: Any) -> Any:
    """``compute()`` -> (answer, cacheable), remembered per modules' text, this code and regorus in the
    per-user cache (:mod:`mlgate.localcache`) as JSON; an entry that ``valid`` refuses (torn, foreign)
    is computed again, and only a ``cacheable`` answer is kept (a refusal names file and line each time)."""
    import json as _json

    from mlgate import localcache

    key = _policy_key(namespace, modules, localcache.library_fingerprint("regorus"))
    if key is not None:
        cached = localcache.get(namespace, key)
        if cached is not None:
            try:
                found = _json.loads(cached)
                if valid(found):
                    return found
            except ValueError:
                pass  # a torn or foreign entry: computed again
    found, cacheable = compute()
    if key is not None and cacheable:
        localcache.put(namespace, key, _json.dumps(found, sort_keys=True).encode("utf-8"))
    return found


def module_packages(policy: PolicySet) -> dict[str, str]:
    """module path -> its package (``mlgate.rules.bias``), as the engine parses it: a declaration over
    two lines or with a bracketed part (``package mlgate.rules["bias"]``) is the same package.
    Remembered per policy text, as :func:`rule_paths`."""
    return remembered(_PACKAGES_CACHE, [(m.path, m.text) for m in policy.modules],
                      lambda: ({m.path: m.package for m in parse(policy).modules}, True), lambda found: isinstance(found, dict))


def checked_builtins(policy: PolicySet, engine: Any, engine_version: str,
                     modules: list[tuple[str, str]] | None = None) -> list[tuple[str, int, str]]:
    """:func:`missing_builtins` of the modules loaded into ``engine`` (``modules``: every (path,
    text) it holds; by default the policy's decision modules), remembered per policy revision.

    Parsing the library's AST and walking it for calls costs tens of milliseconds on every
    engine start; its answer depends only on the modules' text, the engine's version and this
    code. So a clean answer is remembered in the per-user cache (:mod:`mlgate.localcache`),
    keyed by the sha256 of exactly those (content-addressed: any edit to a module is a new key),
    and a later start with the same policy skips the parse. Only the clean answer is kept;
    a policy that calls a missing builtin is parsed again each time, to name file and line.

    Why this is safe to share: the check is a courtesy at load time, not a guard. A forged
    "clean" entry lets a policy that calls a builtin regorus lacks load, and its evaluation
    then fails with an engine error, which is a deny (fail closed), exactly as a policy whose
    builtin call sits in a branch the check could not see.
    """
    from mlgate import localcache

    pairs = sorted(modules if modules is not None else [(m.path, m.text) for m in policy.decision_modules()])
    try:
        code = Path(__file__).read_bytes()
    except OSError:
        code = b""
    key = localcache.key_digest(_BUILTINS_CACHE, engine_version, code, *(part for pair in pairs for part in pair)) if code else None
    if key is not None and localcache.get(_BUILTINS_CACHE, key) == b"[]":
        return []
    missing = missing_builtins(parse(policy, engine))
    if key is not None and not missing:
        localcache.put(_BUILTINS_CACHE, key, b"[]")
    return missing


# --- METADATA annotations ---------------------------------------------------------------------

_METADATA_BLOCK = re.compile(r"^# METADATA\n((?:#.*\n)*)", re.MULTILINE)


@dataclass(frozen=True)
class Annotation:
    module: RegoModule = field(compare=False, hash=False, repr=False)
    line: int  # line of "# METADATA"
    rule_line: int  # first line after the comment block (the annotated rule)
    meta: Any = field(compare=False, hash=False)  # the parsed YAML (None when it is not YAML)
    error: str | None = None

    @property
    def where(self) -> str:
        return f"{self.module.display}:{self.line}"

    @property
    def custom(self) -> dict[str, Any]:
        custom = self.meta.get("custom") if isinstance(self.meta, dict) else None
        return custom if isinstance(custom, dict) else {}


def annotations(module: RegoModule) -> list[Annotation]:
    text = module.text if module.text.endswith("\n") else module.text + "\n"
    out = []
    for match in _METADATA_BLOCK.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        body_lines = match.group(1).splitlines()
        comment = "".join((ln[2:] if ln.startswith("# ") else ln[1:]) + "\n" for ln in body_lines)
        try:
            meta, error = yaml.safe_load(comment), None
        except yaml.YAMLError as exc:
            meta, error = None, " ".join(str(exc).split())
        out.append(Annotation(module, line, line + 1 + len(body_lines), meta, error))
    return out


def module_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.rego") if p.is_file())


# --- what a rule depends on ------------------------------------------------------------------------


def rule_lines(rule: Rule) -> range:
    """The lines a rule definition spans."""
    node = rule.node.get("Spec") or rule.node.get("Default") or {}
    span = node.get("span", {})
    raw = rule.module.text.encode("utf-8")
    end = rule.line + raw[span.get("start", 0) : span.get("end", 0)].count(b"\n")
    return range(rule.line, end + 1)


def referenced_rules(parsed: ParsedPolicy, rule: Rule) -> set[tuple[str, str]]:
    """(package, name) of every rule or function ``rule`` uses, directly or through others."""
    by_name: dict[tuple[str, str], list[Rule]] = {}
    for module in parsed.modules:
        for r in module.rules:
            by_name.setdefault((module.package, r.name), []).append(r)

    def direct(r: Rule) -> set[tuple[str, str]]:
        found = set()
        if "Spec" in r.node:  # not the head's own name: a rule does not depend on itself
            head = next(iter(r.node["Spec"]["head"].values()))
            parts_of = [r.node["Spec"].get("bodies"), head.get("assign"), head.get("key")]
        else:
            parts_of = [r.node["Default"].get("value")]
        for sub in walk(parts_of):
            for kind in ("Var", "RefDot", "RefBrack"):
                if kind in sub:
                    parts = ref_parts({kind: sub[kind]})
                    resolved = parsed.resolve(r.module, parts) if parts else None
                    if not resolved or resolved[0] != "data":
                        continue
                    for cut in range(len(resolved) - 1, 0, -1):
                        key = (".".join(resolved[1:cut]), resolved[cut])
                        if key in by_name:
                            found.add(key)
                            break
        return found

    seen: set[tuple[str, str]] = set()
    todo = [rule]
    while todo:
        for key in direct(todo.pop()):
            if key not in seen:
                seen.add(key)
                todo.extend(by_name[key])
    return seen
