"""A policy set, and loading one from a directory: Rego modules, OPA-style data documents, the trust policy.

Layout (the same as an OPA bundle, so issue #8 can ship it as one):
``**/*.rego`` are modules (``*_test.rego`` are unit tests, not loaded for decisions);
``**/data.json`` / ``**/data.yaml`` land at the data path of their directory
(``mlgate/environments/production/data.json`` -> ``data.mlgate.environments.production``);
``trust.yaml`` at the root is the trust policy (approvers and model signers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from mlgate.canonical import digest_json, sha256_hex
from mlgate.errors import InputError, PolicyError
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
    revision: str  # sha256 over every file that can change a decision
    files: dict[str, str] = field(hash=False)  # relpath -> sha256

    def decision_modules(self) -> tuple[Module, ...]:
        return tuple(m for m in self.modules if not m.is_test)


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


def load_policy_dir(root: Path | None = None, *, data_overrides: list[Path] | None = None) -> PolicySet:
    """Load a policy directory (default: the policy library shipped with mlgate)."""
    root = Path(root) if root is not None else bundled_policy_dir()
    if not root.is_dir():
        raise PolicyError("policy directory not found", file=display(root))
    modules: list[Module] = []
    data: dict[str, Any] = {}
    files: dict[str, str] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(".") or part == "__pycache__" for part in path.relative_to(root).parts):
            continue
        if path.suffix == ".rego":
            raw = read_bytes(path)
            # Unit tests and their fixtures (a `testdata` directory) are not loaded for decisions.
            is_test = path.name.endswith("_test.rego") or "testdata" in path.relative_to(root).parts
            modules.append(Module(rel, decode_text(raw, display(path)), is_test))
            files[rel] = sha256_hex(raw)
        elif path.name in DATA_NAMES:
            raw = read_bytes(path)
            doc = parse_json(raw, display(path)) if path.suffix == ".json" else parse_yaml(decode_text(raw, display(path)), display(path))
            if not isinstance(doc, dict):
                raise PolicyError("a data document must be an object", file=display(path))
            _merge(data, _nest(path.relative_to(root).parent.parts, doc), rel)
            files[rel] = sha256_hex(raw)
        elif rel == TRUST_POLICY_NAME:
            files[rel] = sha256_hex(read_bytes(path))
    for override in data_overrides or []:
        raw = read_bytes(override)
        name = display(override)
        doc = parse_json(raw, name) if override.suffix == ".json" else parse_yaml(decode_text(raw, name), name)
        if not isinstance(doc, dict):
            raise InputError("a data override must be an object at the root of `data`", file=name)
        _merge(data, doc, name)
        files[f"override:{name}"] = sha256_hex(raw)
    if not any(not m.is_test for m in modules):
        # conftest's habit: no policy is an error, never a pass.
        raise PolicyError("no Rego policy found (expected *.rego files)", file=display(root))
    trust = root / TRUST_POLICY_NAME
    return PolicySet(
        root=root,
        modules=tuple(modules),
        data=data,
        trust_policy_path=trust if trust.is_file() else None,
        revision=digest_json(files),
        files=files,
    )
