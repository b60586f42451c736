"""A policy set, and loading one from a directory: Rego modules, OPA-style data documents, the trust policy.

Layout (the same as an OPA bundle, so issue #8 can ship it as one):
``**/*.rego`` are modules (``*_test.rego`` are unit tests, not loaded for decisions);
``**/data.json`` / ``**/data.yaml`` land at the data path of their directory
(``mlgate/environments/production/data.json`` -> ``data.mlgate.environments.production``);
``trust.yaml`` at the root, when a policy ships one (an OPA bundle may), is a trust policy
(approvers and model signers); the bundled library ships none (mlgate trusts no one by default).

**Revisions.** :attr:`PolicySet.bundle_revision` digests the policy's own files (modules, data,
``trust.yaml``): an OPA bundle's ``.manifest`` carries it. :attr:`PolicySet.revision` adds every
data override. The revision recorded with a decision adds more still (the trust policy actually
used and the files it names, the settings file, the engine): :func:`mlgate.gate.prepare`.

**Overrides set data, never rules** (design.md section 10, invariant 2). An override may only set
paths ``mlgate.environments.<tier>.<key>...`` where ``<key>`` is a key the policy's own
environment data defines (the keys ``policies/README.md`` documents); a path a rule defines
(any package's rule, ``mlgate.decision`` included), or anything else, is a one-line
:class:`~mlgate.errors.InputError` at load, whatever the engine.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from mlgate.canonical import digest_json, sha256_hex
from mlgate.errors import InputError, PolicyError
from mlgate.policy.compose import GENERATED_PATH, check_not_defined, finding_packages, generated_text
from mlgate.safeio import decode_text, display, parse_json, parse_yaml, read_bytes

TRUST_POLICY_NAME = "trust.yaml"
DATA_NAMES = ("data.json", "data.yaml", "data.yml")


@dataclass(frozen=True)
class Module:
    path: str  # relative to the policy root, posix
    text: str
    is_test: bool


@dataclass(frozen=True)
class PolicySet:
    root: Path
    modules: tuple[Module, ...]
    data: dict[str, Any] = field(hash=False)
    trust_policy_path: Path | None
    revision: str  # sha256 over the policy's files and every data override
    files: dict[str, str] = field(hash=False)  # relpath -> sha256 (overrides as "override:NAME")
    bundle_revision: str = ""  # sha256 over the policy's own files only: an OPA bundle's .manifest revision
    overrides: tuple[tuple[str, str], ...] = ()  # (override as given, sha256), in the order merged
    origin: dict[str, str] | None = field(default=None, hash=False, compare=False)  # an OCI artifact: {"reference", "digest"}

    def decision_modules(self) -> tuple[Module, ...]:
        return tuple(m for m in self.modules if not m.is_test)


#: deepest nesting of brackets a module may have: regorus's parser takes time exponential in the nesting of
#: literals (depth 15: ~1 s, 20: ~40 s, each level doubling), so a 70-byte module could hang a load
MAX_NESTING = 12


def check_nesting(text: str, name: str) -> None:
    """Refuse a module whose brackets nest deeper than :data:`MAX_NESTING` (strings and comments aside)."""
    depth = deepest = 0
    line = 1
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
        elif c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        elif c == '"':
            i += 1
            while i < n and text[i] != '"' and text[i] != "\n":
                i += 2 if text[i] == "\\" else 1
        elif c == "`":
            j = text.find("`", i + 1)
            line += text.count("\n", i, n if j < 0 else j)
            i = n if j < 0 else j
        elif c in "([{":
            depth += 1
            if depth > MAX_NESTING:
                raise PolicyError(f"{name}:{line}: brackets nest deeper than {MAX_NESTING} levels; the embedded engine's parser "
                                  "takes exponential time on such literals (write the value in a data document instead)")
            deepest = max(deepest, depth)
        elif c in ")]}":
            depth = max(0, depth - 1)
        i += 1


def compose(policy: PolicySet, *, require_ids: bool = True) -> PolicySet:
    """``policy`` with the findings composition (:mod:`mlgate.policy.compose`) among its modules,
    generated again from the rule packages present. ``require_ids=False`` (``mlgate policy lint``,
    which names every such rule itself) composes a finding rule without a METADATA id instead of
    refusing the policy."""
    own = tuple(m for m in policy.modules if m.path != GENERATED_PATH)
    check_not_defined(own, policy.root)
    text = generated_text(finding_packages(own, policy.root, require_ids=require_ids))
    return dataclasses.replace(policy, modules=(*own, Module(GENERATED_PATH, text, False)))


def bundled_policy_dir() -> Path:
    return Path(str(resources.files("mlgate.policies")))


def _merge(into: dict[str, Any], new: dict[str, Any], where: str) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value, f"{where}.{key}")
        else:
            into[key] = value


def _nest(parts: tuple[str, ...], value: Any) -> Any:
    for part in reversed(parts):
        value = {part: value}
    return value


def load_policy_dir(root: Path | None = None, *, data_overrides: list[Path] | None = None, require_finding_ids: bool = True,
                    require_rules: bool = True) -> PolicySet:
    """Load a policy directory (default: the policy library shipped with mlgate). A finding rule
    without a METADATA id refuses the policy unless ``require_finding_ids`` is False (the linter)."""
    root = Path(root) if root is not None else bundled_policy_dir()
    if not root.is_dir():
        raise PolicyError("policy directory not found", file=display(root))
    modules: list[Module] = []
    data: dict[str, Any] = {}
    files: dict[str, str] = {}
    data_docs: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(".") or part == "__pycache__" for part in path.relative_to(root).parts):
            continue
        if rel == GENERATED_PATH:  # what `mlgate policy bundle` writes for a plain OPA: generated again below
            continue
        if path.suffix == ".rego":
            raw = read_bytes(path)
            # Unit tests and their fixtures (a `testdata` directory) are not loaded for decisions.
            is_test = path.name.endswith("_test.rego") or "testdata" in path.relative_to(root).parts
            text = decode_text(raw, display(path))
            check_nesting(text, display(path))
            modules.append(Module(rel, text, is_test))
            files[rel] = sha256_hex(raw)
        elif path.name in DATA_NAMES:
            raw = read_bytes(path)
            doc = parse_json(raw, display(path)) if path.suffix == ".json" else parse_yaml(decode_text(raw, display(path)), display(path))
            if not isinstance(doc, dict):
                raise PolicyError("a data document must be an object", file=display(path))
            nested = _nest(path.relative_to(root).parent.parts, doc)
            data_docs.append((display(path), nested))
            _merge(data, nested, rel)
            files[rel] = sha256_hex(raw)
        elif rel == TRUST_POLICY_NAME:
            files[rel] = sha256_hex(read_bytes(path))
    if not any(not m.is_test for m in modules) and (require_rules or not data_docs):
        # conftest's habit: no policy is an error, never a pass. (A layer above the library may be data
        # alone, thresholds an organisation tightens: require_rules=False; never nothing at all.)
        raise PolicyError("no Rego policy found (expected *.rego files)" if require_rules else
                          "no Rego policy and no data found (expected *.rego files or data.json/data.yaml)", file=display(root))
    trust = root / TRUST_POLICY_NAME
    base = PolicySet(
        root=root,
        modules=tuple(modules),
        data=data,
        trust_policy_path=trust if trust.is_file() else None,
        revision=digest_json(files),
        files=dict(files),
        bundle_revision=digest_json(files),
    )
    # The findings composition (data.mlgate.findings), generated from the rule packages present.
    base = compose(base, require_ids=require_finding_ids)
    # The policy's own data may not sit on a rule's path either (a data.json beside the rules
    # that sets data.mlgate.decision would replace the decision on engines that let data shadow
    # a rule): the same check as for --data overrides, as a policy error.
    rules = _rule_paths(base)
    # A leaf conflicts when a rule path is a prefix of it or it is a prefix of a rule path: two set
    # lookups per leaf (the rules are scanned, in order, only to name the one a conflicting leaf hits).
    heads = {rule[:i] for rule in rules for i in range(1, len(rule) + 1)}
    for name, nested in data_docs:
        for set_path in _set_paths(nested, name):
            if set_path not in heads and not any(set_path[:i] in rules for i in range(1, len(set_path))):
                continue
            for rule, where in sorted(rules.items(), key=lambda item: item[1].endswith(GENERATED_PATH)):  # the policy's own rules named first
                if set_path[: len(rule)] == rule or rule[: len(set_path)] == set_path:
                    raise PolicyError(f"a data document may not set a path a rule defines (data.{'.'.join(rule)}, rule {rule[-1]!r} "
                                      f"in {where}): {'.'.join(set_path)}", file=name)
    if not data_overrides:
        return base
    tiers = (data.get("mlgate") or {}).get("environments") if isinstance(data.get("mlgate"), dict) else None
    known = sorted({k for tier in (tiers or {}).values() if isinstance(tier, dict) for k in tier})
    merged = copy.deepcopy(data)
    overrides: list[tuple[str, str]] = []
    for override in data_overrides:
        raw = read_bytes(override)
        name = display(override)
        doc = parse_json(raw, name) if override.suffix == ".json" else parse_yaml(decode_text(raw, name), name)
        if not isinstance(doc, dict):
            raise InputError("a data override must be an object at the root of `data`", file=name)
        check_override(doc, name, rules=rules, known_keys=known)
        _merge(merged, doc, name)
        files[f"override:{name}"] = sha256_hex(raw)
        overrides.append((name, sha256_hex(raw)))
    return dataclasses.replace(base, data=merged, revision=digest_json(files), files=files, overrides=tuple(overrides))


def _rule_paths(policy: PolicySet) -> dict[tuple[str, ...], str]:
    """Every path a rule defines, ``package + rule name`` -> where (file), from the engine's own parse."""
    from mlgate.policy.rego_ast import rule_paths  # remembered per policy revision (the parse costs every start ~50 ms)

    return rule_paths(policy)


def _set_paths(doc: dict[str, Any], name: str, prefix: tuple[str, ...] = ()):
    """The paths an override sets: its leaves (a non-object, or an empty object, replaces what is there)."""
    for key, value in doc.items():
        if not isinstance(key, str):
            raise InputError(f"data keys must be strings, got {key!r}", file=name, field=".".join(prefix) or None)
        path = (*prefix, key)
        if isinstance(value, dict) and value:
            yield from _set_paths(value, name, path)
        else:
            yield path


def check_override(doc: dict[str, Any], name: str, *, rules: dict[tuple[str, ...], str], known_keys: list[str]) -> None:
    """Refuse an override that touches a rule's path or anything but documented environment data."""
    for path in _set_paths(doc, name):
        dotted = ".".join(path)
        for rule, where in rules.items():
            if path[: len(rule)] == rule or rule[: len(path)] == path:
                raise InputError(f"a data override may not set a path a rule defines (data.{'.'.join(rule)}, "
                                 f"rule {rule[-1]!r} in {where}); overrides set policy data only", file=name, field=dotted)
        if not (len(path) >= 4 and path[:2] == ("mlgate", "environments") and path[3] in known_keys):
            raise InputError("not a policy data path: an override may set mlgate.environments.<tier>.<key> with a key the "
                             f"policy's environment data defines ({', '.join(known_keys) or 'none'}; see policies/README.md)",
                             file=name, field=dotted)
