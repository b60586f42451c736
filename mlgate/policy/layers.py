"""Layered policies (issue 21): the library, then an organisation's own packages, as one policy.

``--policy`` may be given several times (``policy:`` in ``.mlgate.yaml`` may be a list). Each source
is a directory, an OPA bundle (``*.tar.gz``) or an ``oci://`` reference, loaded and checked alone
(a bundle or an OCI artifact verified with ``--bundle-key``), then stacked in order: the first is
the base, each later one **adds packages**. When the first source defines no ``data.mlgate.decision``
(an organisation's package alone), the bundled library is put beneath it, and the record says so.
``data.mlgate.findings`` is generated again over the merged packages
(:func:`mlgate.policy.policyset.compose`), so an organisation's ``mlgate.rules.org_*`` violations and
warnings count without an edit to the library.

A later layer never edits or extends an earlier one's rules. Refused at load, one line naming both files:

- a package an earlier layer declares (``mlgate.rules.bias``, ``mlgate``, ``mlgate.lib``, a
  ``*_test`` package...), or a rule whose path lies on or under an earlier rule's, or above one
  (``package mlgate`` with a rule ``decision``, ``package mlgate.decision.extra``);
- data that sits on a rule's path of another layer;
- data that replaces a value with one of another type (a number with a string, an object with a
  number): a layer may change a value, never its shape;
- a ``trust.yaml`` in a later layer (the trust policy ships only with the base: the first source
  given; ``--trust`` names another);
- a finding rule without a METADATA ``custom.id`` (refused when its layer loads).

Data is deep-merged in order, so an organisation can set or tighten a threshold
(``mlgate.environments.production.bias.delta``); every value a later layer changes is kept in
:attr:`LayeredPolicySet.changes`, and ``mlgate policy lint`` reports each (an error when it loosens
a documented threshold). ``--data`` overrides apply to the merged result.

Module paths stay those of their layer; one that an earlier layer already uses is prefixed by the
layer's name (``org-policy/mlgate/lib.rego``). Messages name each module where it really is: the file
of a directory layer, ``BUNDLE.tar.gz/PATH`` or ``REGISTRY/REPO@sha256:.../PATH`` for a bundle or an
OCI artifact (:class:`LayeredRoot`).

**Revision.** :attr:`~mlgate.policy.PolicySet.bundle_revision` of the merged policy digests every
layer's own revision in order; :attr:`~mlgate.policy.PolicySet.revision` digests every layer's
revision and the overrides. The same layers give the same revision from any directory; the
decision record lists the layers (:func:`mlgate.gate.prepare`). A single source that defines the
decision is loaded exactly as before (:func:`mlgate.policy.load_policy`): same policy, same revision.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from mlgate.canonical import digest_json, sha256_hex
from mlgate.errors import InputError, PolicyError
from mlgate.policy.compose import GENERATED_PATH, PACKAGE as GENERATED_PACKAGE
from mlgate.policy.policyset import (DATA_NAMES, TRUST_POLICY_NAME, Module, PolicySet, bundled_policy_dir, check_override, compose,
                                     load_policy_dir)
from mlgate.safeio import decode_text, display, parse_json, parse_yaml, read_bytes

#: the name and label of the bundled library as a layer
LIBRARY = "bundled"
DECISION = ("mlgate", "decision")

_PathBase = type(Path())


class LayeredRoot(_PathBase):  # type: ignore[misc, valid-type]
    """The root of a layered policy: the base layer's directory, which also knows where each
    module and file of every layer really is, so ``root / module.path`` (how the engines, the
    linter and the test runner name a module to a person) names that file."""

    def __truediv__(self, key: Any) -> Any:
        routes = getattr(self, "_routes", None)  # absent on a path derived from this one
        if routes and isinstance(key, str) and key in routes:
            return Path(routes[key])
        return super().__truediv__(key)


def _routed(base: Path, routes: dict[str, str]) -> LayeredRoot:
    root = LayeredRoot(base)
    root._routes = dict(routes)  # noqa: SLF001 - set once, here
    return root


@dataclass(frozen=True)
class Layer:
    """One source of a layered policy, loaded and checked alone (without overrides)."""

    name: str  # short and unique among the layers: prefixes a module path that collides, names the layer in messages
    label: str  # the source as a person gave it: "bundled", a directory or bundle (displayed), an oci:// reference
    policy: PolicySet
    kind: str  # "directory" | "bundle" | "oci"
    beneath: bool = False  # the bundled library, put beneath a first source that defines no data.mlgate.decision

    def shown(self, rel: str) -> str:
        """Where a file of this layer is, for a person: the file itself for a directory, the file
        inside the bundle or artifact otherwise."""
        if self.kind == "directory":
            return display(self.policy.root / rel)
        if self.kind == "oci" and self.policy.origin:
            ref = str(self.policy.origin.get("reference", self.label))
            digest = self.policy.origin.get("digest")
            base = ref.split("://", 1)[-1].split("@", 1)[0] + (f"@{digest}" if digest else "")
            return f"{base}/{rel}"
        return f"{self.label}/{rel}"

    def record(self) -> dict[str, Any]:
        """What the decision record says of this layer (``revision_inputs.policy.layers``)."""
        out: dict[str, Any] = {"path": self.label, "revision": self.policy.bundle_revision}
        if self.policy.origin:
            out["oci"] = dict(self.policy.origin)
        if self.beneath:
            out["beneath"] = True  # put there by mlgate: the first source defines no data.mlgate.decision
        return out


@dataclass(frozen=True)
class DataChange:
    """A data value a later layer changed: what it was, what it is, who changed it and where."""

    path: tuple[str, ...]
    before: Any
    after: Any
    layer: str  # the layer's label
    file: str  # the layer's data file that sets it (as shown)
    before_file: str  # where the value it replaces was set
    before_layer: str

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class LayeredPolicySet(PolicySet):
    """A policy of several layers (:func:`load_layers`), with the layers and the data they changed."""

    layers: tuple[Layer, ...] = field(default=(), hash=False, compare=False)
    changes: tuple[DataChange, ...] = field(default=(), hash=False, compare=False)

    @property
    def source(self) -> str:
        """The layers, as the record's ``revision_inputs.policy.path`` names them."""
        return " + ".join(layer.label for layer in self.layers)


def load_source(root: Path | str | None = None, *, data_overrides: list[Path] | None = None, bundle_key: Path | None = None,
                require_finding_ids: bool = True, require_rules: bool = True) -> PolicySet:
    """One source, as it is (:func:`mlgate.policy.load_policy`): a directory (default: the bundled
    library), an OPA bundle (``*.tar.gz``) or an ``oci://`` reference, verified with ``bundle_key``."""
    from mlgate.policy.oci import is_oci

    if is_oci(root):  # oci://REGISTRY/REPO@sha256:... or :TAG, pulled (or cached by digest) and verified
        from mlgate.policy.oci import load_oci_policy

        return load_oci_policy(root, key=bundle_key, data_overrides=data_overrides, require_finding_ids=require_finding_ids,
                               require_rules=require_rules)
    root = Path(root) if root is not None else bundled_policy_dir()
    if root.is_file() and root.name.endswith((".tar.gz", ".tgz")):
        from mlgate.policy.bundle import load_bundle_policy

        return load_bundle_policy(root, key=bundle_key, data_overrides=data_overrides, require_finding_ids=require_finding_ids,
                                  require_rules=require_rules)
    if bundle_key is not None:
        raise PolicyError("--bundle-key verifies an OPA bundle (*.tar.gz); this is not one", file=display(root))
    return load_policy_dir(root, data_overrides=data_overrides, require_finding_ids=require_finding_ids, require_rules=require_rules)


def as_sources(sources: Any) -> tuple[Any, ...]:
    """``sources`` as a tuple: None or () is the bundled library alone; one source is a 1-tuple."""
    if sources is None:
        return ()
    if isinstance(sources, (str, Path)):
        return (sources,)
    if isinstance(sources, Sequence):
        return tuple(sources)
    return (sources,)


def source_label(sources: Any, policy: PolicySet) -> str:
    """How the record names the policy (``revision_inputs.policy.path``): ``bundled``, the directory
    or bundle as given, the ``oci://`` reference as given, or the layers joined by `` + ``
    (``bundled + oci://...`` when mlgate put the library beneath)."""
    if isinstance(policy, LayeredPolicySet) and policy.layers:
        return policy.source
    given = as_sources(sources)
    if not given:
        return LIBRARY
    if policy.origin:
        return str(policy.origin["reference"])
    return display(Path(given[0]))


def defines_decision(policy: PolicySet) -> bool:
    from mlgate.policy.rego_ast import rule_paths

    return DECISION in rule_paths(policy)


def load_layers(sources: Any, *, data_overrides: list[Path] | None = None, bundle_key: Path | None = None,
                require_finding_ids: bool = True) -> PolicySet:
    """The policy of ``sources`` (None, one source, or several in order), layered as the module
    docstring says. One source that defines ``data.mlgate.decision`` (the library, a fork of it)
    is exactly :func:`mlgate.policy.load_policy` of it; anything else is a :class:`LayeredPolicySet`."""
    given = as_sources(sources)
    if not given:
        return load_source(None, data_overrides=data_overrides, bundle_key=bundle_key, require_finding_ids=require_finding_ids)
    if bundle_key is not None and len(given) > 1 and all(_kind(s) == "directory" for s in given):
        # as for one source (load_policy refuses it): the key verifies bundles, and no layer is one
        raise PolicyError("--bundle-key verifies an OPA bundle (*.tar.gz or oci://); no --policy layer is one")
    layers = [_load_layer(s, bundle_key, require_finding_ids, alone=len(given) == 1) for s in given]
    if not defines_decision(layers[0].policy):
        library = load_source(None, require_finding_ids=require_finding_ids)
        layers.insert(0, Layer(LIBRARY, LIBRARY, library, "directory", beneath=True))
    if len(layers) == 1:
        if data_overrides:  # loaded again with them, exactly as load_policy does
            return load_source(given[0], data_overrides=data_overrides, bundle_key=bundle_key, require_finding_ids=require_finding_ids)
        return layers[0].policy
    merged = merge(_named(layers), require_finding_ids=require_finding_ids)
    return _apply_overrides(merged, data_overrides or [])


def _kind(source: Any) -> str:
    from mlgate.policy.bundle import is_bundle_path
    from mlgate.policy.oci import is_oci

    if is_oci(source):
        return "oci"
    return "bundle" if is_bundle_path(Path(source)) else "directory"


def _load_layer(source: Any, key: Path | None, require_finding_ids: bool, *, alone: bool = False) -> Layer:
    """One source loaded alone; ``key`` verifies it when it is a bundle or an OCI artifact (a single
    source is given the key whatever it is, so a directory with a key is refused as before)."""
    kind = _kind(source)
    # A layer may be data alone (an organisation's tighter thresholds): the library beneath decides with it.
    policy = load_source(source, bundle_key=key if kind != "directory" or alone else None, require_finding_ids=require_finding_ids,
                         require_rules=False)
    if kind == "oci":
        label = str((policy.origin or {}).get("reference") or source)
        name = label.split("://", 1)[-1].split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
    else:
        label = display(Path(source))
        name = Path(source).name
        for suffix in (".tar.gz", ".tgz"):
            name = name[: -len(suffix)] if kind == "bundle" and name.endswith(suffix) else name
    return Layer(name or "layer", label, policy, kind)


def _named(layers: list[Layer]) -> list[Layer]:
    """The layers with names unique among them (``org``, ``org-2``)."""
    seen: set[str] = set()
    out = []
    for layer in layers:
        name, n = layer.name, 1
        while name in seen:
            n += 1
            name = f"{layer.name}-{n}"
        seen.add(name)
        out.append(dataclasses.replace(layer, name=name))
    return out


# --- what each layer defines ----------------------------------------------------------------------


def _package(text: str) -> str | None:
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 2 and words[0] == "package":
            return words[1][len("data."):] if words[1].startswith("data.") else words[1]
    return None


def _own_modules(layer: Layer) -> list[Module]:
    return [m for m in layer.policy.modules if m.path != GENERATED_PATH]


def _rules(layer: Layer) -> dict[tuple[str, ...], str]:
    """Every rule path the layer defines (tests included, the generated composition not) -> file as shown."""
    from mlgate.policy.rego_ast import rule_paths

    shown_root = display(layer.policy.root)
    generated = tuple(GENERATED_PACKAGE.split("."))
    out = {}
    for path, where in rule_paths(layer.policy).items():
        if path[: len(generated)] == generated:
            continue
        if layer.kind != "directory" and where.startswith(shown_root + "/"):
            where = layer.shown(where[len(shown_root) + 1 :])
        out[path] = where
    return out


def _check_definitions(layers: list[Layer]) -> list[dict[tuple[str, ...], str]]:
    """Refuse a later layer that declares an earlier layer's package or a rule on, under or above
    an earlier rule's path. Returns each layer's rule paths."""
    from mlgate.policy.rego_ast import module_packages

    packages: dict[str, str] = {}  # package -> file (as shown) of the first layer declaring it
    rules: dict[tuple[str, ...], str] = {}
    heads: dict[tuple[str, ...], tuple[str, ...]] = {}  # every prefix of an earlier rule path -> that rule path
    per_layer = []
    for i, layer in enumerate(layers):
        own_rules = _rules(layer)
        per_layer.append(own_rules)
        own_packages: dict[str, str] = {}
        parsed = module_packages(layer.policy)  # the engine's parse: a declaration over two lines, or with brackets, is the same package
        for m in sorted(_own_modules(layer), key=lambda m: m.path):
            pkg = parsed.get(m.path) or _package(m.text)
            if pkg:
                own_packages.setdefault(pkg, layer.shown(m.path))
        if i:
            for pkg, where in sorted(own_packages.items()):
                if pkg in packages:
                    raise PolicyError(f"{where}: package {pkg} is already defined by an earlier policy layer ({packages[pkg]}); "
                                      "a later layer adds packages of its own (e.g. mlgate.rules.org_<name>), it never edits or "
                                      "extends an earlier layer's")
            for path, where in sorted(own_rules.items()):
                hit = heads.get(path) or next((path[:n] for n in range(1, len(path)) if path[:n] in rules), None)
                if hit is not None:
                    raise PolicyError(f"{where}: rule data.{'.'.join(path)} overlaps data.{'.'.join(hit)}, defined by an earlier "
                                      f"policy layer ({rules[hit]}); a later layer adds packages of its own (e.g. "
                                      "mlgate.rules.org_<name>), it never edits or extends an earlier layer's")
        for pkg, where in own_packages.items():
            packages.setdefault(pkg, where)
        for path, where in own_rules.items():
            rules.setdefault(path, where)
            for n in range(1, len(path) + 1):
                heads.setdefault(path[:n], path)
    return per_layer


# --- data ---------------------------------------------------------------------------------------------


def _type(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "null" if value is None else type(value).__name__


def _data_file(layer: Layer, path: tuple[str, ...]) -> str:
    """The data document of ``layer`` that sets ``path``: the deepest whose directory holds it."""
    best: tuple[int, str] | None = None
    for rel in layer.policy.files:
        pure = PurePosixPath(rel)
        if pure.name not in DATA_NAMES:
            continue
        parts = pure.parent.parts
        if tuple(path[: len(parts)]) == parts and (best is None or len(parts) > best[0]):
            best = (len(parts), rel)
    return layer.shown(best[1]) if best else layer.label


def _leaves(doc: dict[str, Any], prefix: tuple[str, ...] = ()):
    for key, value in doc.items():
        path = (*prefix, key)
        if isinstance(value, dict) and value:
            yield from _leaves(value, path)
        else:
            yield path


def _merge_data(layers: list[Layer]) -> tuple[dict[str, Any], list[DataChange]]:
    merged: dict[str, Any] = {}
    owner: dict[tuple[str, ...], int] = {}  # a path set wholesale by a layer -> that layer
    changes: list[DataChange] = []

    def owner_of(path: tuple[str, ...]) -> int:
        for n in range(len(path), 0, -1):
            if path[:n] in owner:
                return owner[path[:n]]
        return 0

    def merge(into: dict[str, Any], new: dict[str, Any], prefix: tuple[str, ...], i: int) -> None:
        for key, value in new.items():
            path = (*prefix, key)
            if key not in into:
                into[key] = copy.deepcopy(value)
                owner[path] = i
                continue
            old = into[key]
            if isinstance(old, dict) and isinstance(value, dict):
                merge(old, value, path, i)
                continue
            if _type(old) != _type(value):
                j = owner_of(path)
                raise PolicyError(f"{_data_file(layers[i], path)}: data {'.'.join(path)} is {_type(value)} in policy layer "
                                  f"{layers[i].label}, {_type(old)} in an earlier layer ({_data_file(layers[j], path)}); a later "
                                  "layer may change a value, never its type")
            if old != value or type(old) is not type(value):
                j = owner_of(path)
                changes.append(DataChange(path, copy.deepcopy(old), copy.deepcopy(value), layers[i].label,
                                          _data_file(layers[i], path), _data_file(layers[j], path), layers[j].label))
                into[key] = copy.deepcopy(value)
                owner[path] = i

    for i, layer in enumerate(layers):
        merge(merged, layer.policy.data, (), i)
    return merged, changes


def _check_data_against_rules(layers: list[Layer], rules: list[dict[tuple[str, ...], str]]) -> None:
    """Data of one layer may not sit on (or above, or under) a rule path of another."""
    for j, layer in enumerate(layers):
        others: dict[tuple[str, ...], str] = {}
        for i, own in enumerate(rules):
            if i != j:
                for path, where in own.items():
                    others.setdefault(path, where)
        heads = {path[:n]: path for path in others for n in range(1, len(path) + 1)}
        for leaf in _leaves(layer.policy.data):
            hit = heads.get(leaf) or next((leaf[:n] for n in range(1, len(leaf)) if leaf[:n] in others), None)
            if hit is not None:
                raise PolicyError(f"{_data_file(layer, leaf)}: data {'.'.join(leaf)} of policy layer {layer.label} sits on the path "
                                  f"of rule data.{'.'.join(hit)} of another layer ({others[hit]}); data may not set a path a rule defines")


# --- the merge ------------------------------------------------------------------------------------------


def merge(layers: list[Layer], *, require_finding_ids: bool = True) -> LayeredPolicySet:
    """One policy of ``layers`` (in order; at least two), checked as the module docstring says."""
    given = [layer for layer in layers if not layer.beneath]
    for layer in given[1:]:
        if layer.policy.trust_policy_path is not None:
            raise PolicyError(f"{layer.shown(TRUST_POLICY_NAME)}: a trust policy ships only with the base policy (the first --policy, "
                              f"{given[0].label}); a later layer's would not be used: remove it, or pass it with --trust")
    rules = _check_definitions(layers)
    _check_data_against_rules(layers, rules)
    data, changes = _merge_data(layers)

    modules: list[Module] = []
    routes: dict[str, str] = {}
    files: dict[str, str] = {}
    taken: set[str] = set()
    for i, layer in enumerate(layers):
        for m in _own_modules(layer):
            path = m.path
            if path in taken:  # another layer uses the path: prefixed by this layer's name
                path, n = f"{layer.name}/{m.path}", 1
                while path in taken:
                    n += 1
                    path = f"{layer.name}-{n}/{m.path}"
            taken.add(path)
            modules.append(Module(path, m.text, m.is_test))
            if i or path != m.path or layer.kind != "directory":
                routes[path] = layer.shown(m.path)
        for rel, digest in layer.policy.files.items():
            key = rel if i == 0 else f"{layer.name}:{rel}"
            files[key] = digest
            if i or layer.kind != "directory":
                routes[key] = layer.shown(rel)
    base = layers[0]
    trust = given[0].policy.trust_policy_path if given else None
    own = digest_json({"layers": [layer.policy.bundle_revision for layer in layers]})
    policy = LayeredPolicySet(
        root=_routed(base.policy.root, routes),
        modules=tuple(modules),
        data=data,
        trust_policy_path=trust,
        revision=digest_json({"layers": [layer.policy.revision for layer in layers], "overrides": []}),
        files=files,
        bundle_revision=own,
        layers=tuple(layers),
        changes=tuple(changes),
    )
    return compose(policy, require_ids=require_finding_ids)


def _is_unit_test(module: Module) -> bool:
    return module.is_test and module.path.endswith("_test.rego")


def unit_test_stages(policy: PolicySet) -> list[tuple[str, PolicySet]]:
    """Where the Rego unit tests of each layer run (``mlgate policy test --policy ...``): (the
    layer's label, the layers up to and including it, without the ``*_test.rego`` modules of the
    layers below). Each layer's tests were written against what lies beneath it, not against what a
    later layer adds (an organisation's rule denies the library's "good input" on purpose). The
    library mlgate put beneath is tested with mlgate, not here. One policy: ``[("", policy)]``."""
    if not isinstance(policy, LayeredPolicySet) or not policy.layers:
        return [("", policy)]
    out: list[tuple[str, PolicySet]] = []
    layers = list(policy.layers)
    for i, layer in enumerate(layers):
        if layer.beneath or not any(_is_unit_test(m) for m in layer.policy.modules):
            continue
        if i == 0:
            out.append((layer.label, layer.policy))
            continue
        below = [dataclasses.replace(low, policy=dataclasses.replace(low.policy, modules=tuple(
            m for m in low.policy.modules if not _is_unit_test(m)))) for low in layers[:i]]
        out.append((layer.label, merge([*below, layer])))
    return out


def _apply_overrides(policy: LayeredPolicySet, overrides: list[Path]) -> LayeredPolicySet:
    """``--data`` overrides over the merged data, checked as for one policy (documented environment
    keys only, never a rule's path)."""
    if not overrides:
        return policy
    from mlgate.policy.rego_ast import rule_paths

    rules = rule_paths(policy)
    tiers = (policy.data.get("mlgate") or {}).get("environments") if isinstance(policy.data.get("mlgate"), dict) else None
    known = sorted({k for tier in (tiers or {}).values() if isinstance(tier, dict) for k in tier})
    merged = copy.deepcopy(policy.data)
    files = dict(policy.files)
    applied: list[tuple[str, str]] = []
    for override in overrides:
        raw = read_bytes(override)
        name = display(override)
        doc = parse_json(raw, name) if Path(override).suffix == ".json" else parse_yaml(decode_text(raw, name), name)
        if not isinstance(doc, dict):
            raise InputError("a data override must be an object at the root of `data`", file=name)
        check_override(doc, name, rules=rules, known_keys=known)
        _deep_merge(merged, doc)
        files[f"override:{name}"] = sha256_hex(raw)
        applied.append((name, sha256_hex(raw)))
    revision = digest_json({"layers": [layer.policy.revision for layer in policy.layers], "overrides": [d for _n, d in applied]})
    return dataclasses.replace(policy, data=merged, files=files, overrides=tuple(applied), revision=revision)


def _deep_merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value
