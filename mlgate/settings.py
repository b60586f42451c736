"""The project settings file ``.mlgate.yaml``: where a project keeps its trust policy, policy and
audit trail, read from the working directory the way conftest reads ``conftest.toml`` and Regal
its ``.regal/config.yaml``::

    # .mlgate.yaml
    trust: examples/trust.yaml        # the trust policy (approvers, model signers, CAs)
    policy: policies/                 # optional: the policy directory, OPA bundle or oci:// reference (default: the bundled library)
    audit: file:.mlgate/audit.jsonl   # optional: the audit trail (file:PATH, a path, or postgresql://...)

``policy`` may also be a list: layers, in order (:mod:`mlgate.policy.layers`), e.g.
``policy: [oci://registry.example/acme/mlgate-org@sha256:...]`` (the bundled library beneath an
organisation's own rule packages) or ``policy: [policies/, org-policy/]``.

Relative paths are relative to the settings file, not to where the command runs. Command-line
flags win (``--trust``, ``--policy``, ``--audit``). An unknown key or a value of the wrong type is
a one-line :class:`~mlgate.errors.InputError` naming the file and the key.

mlgate ships no trust policy that trusts anyone: with neither ``--trust`` nor ``trust:`` here (nor a
``trust.yaml`` inside the policy given), a decision that needs one is an error. The file's sha256
joins the policy revision recorded with every decision (:func:`mlgate.gate.prepare`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlgate.errors import InputError
from mlgate.safeio import decode_text, display, parse_yaml, read_bytes

SETTINGS_NAME = ".mlgate.yaml"
MAX_SETTINGS_BYTES = 64 * 1024
_KEYS = ("trust", "policy", "audit")


@dataclass(frozen=True)
class Settings:
    """The settings in effect; ``path`` None means no settings file (every value None)."""

    path: Path | None = None
    digest: str | None = None  # sha256 of the file's bytes
    trust: Path | None = None
    policy: Path | str | tuple[Path | str, ...] | None = None  # a path, an oci:// reference (str), or a list of them: layers
    audit: str | None = None

    def as_record(self) -> dict[str, Any] | None:
        return None if self.path is None else {"path": display(self.path), "digest": self.digest}


NO_SETTINGS = Settings()


def load_settings(path: Path) -> Settings:
    """Read and check one settings file."""
    path = Path(path)
    name = display(path)
    data = read_bytes(path, limit=MAX_SETTINGS_BYTES)
    doc = parse_yaml(decode_text(data, name), name)
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise InputError(f"the settings must be a mapping of {', '.join(_KEYS)}, got {type(doc).__name__}", file=name)
    base = path.resolve().parent
    values: dict[str, Any] = {}
    for key, value in doc.items():
        if key not in _KEYS:
            raise InputError(f"unknown setting {key!r} (known: {', '.join(_KEYS)})", file=name, field=str(key))
        if key == "policy" and isinstance(value, list):  # layers, in order
            if not value:
                raise InputError("must be a policy source or a non-empty list of them (layers, in order)", file=name, field=key)
            for i, item in enumerate(value):
                if not isinstance(item, str) or not item.strip():
                    raise InputError(f"must be a non-empty string (a path or oci:// reference), got {type(item).__name__}",
                                     file=name, field=f"{key}[{i}]")
            values[key] = tuple(_policy_source(item, base) for item in value)
            continue
        if not isinstance(value, str) or not value.strip():
            what = {"audit": "a path or URL", "policy": "a path or oci:// reference, or a list of them"}.get(key, "a path")
            raise InputError(f"must be a non-empty string ({what}), got {type(value).__name__}", file=name, field=key)
        if key == "audit":
            values[key] = _audit_url(value, base)
        elif key == "policy":
            values[key] = _policy_source(value, base)
        else:
            values[key] = _relative(value, base)
    return Settings(path=path, digest=hashlib.sha256(data).hexdigest(), **values)


def find_settings(directory: Path | None = None) -> Settings:
    """The settings file in ``directory`` (default: the working directory), or :data:`NO_SETTINGS`."""
    candidate = Path(directory or Path.cwd()) / SETTINGS_NAME
    if not candidate.exists():
        return NO_SETTINGS
    return load_settings(candidate if directory is not None else Path(SETTINGS_NAME))


def _relative(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _policy_source(value: str, base: Path) -> Path | str:
    """An ``oci://`` reference as given (checked when the policy is loaded); a path relative to the settings file."""
    return value if value.startswith("oci://") else _relative(value, base)


def _audit_url(value: str, base: Path) -> str:
    """``file:PATH`` and bare paths are resolved against the settings file; other URLs as given."""
    if value.startswith("file:"):
        return "file:" + str(_relative(value[len("file:"):], base))
    if "://" in value:
        return value
    return "file:" + str(_relative(value, base))


NO_TRUST_POLICY = ("no trust policy configured: mlgate trusts no signer by default; pass --trust FILE "
                   f"or name one as `trust: FILE` in {SETTINGS_NAME} in the working directory")


def trust_policy_path(flag: Path | None, settings: Settings, policy_trust: Path | None = None) -> tuple[Path, str]:
    """(the trust policy file, where it came from: ``flag``, ``settings`` or ``policy``).

    Order: ``--trust``, the settings file's ``trust``, a ``trust.yaml`` shipped inside the policy
    (a bundle's). None of them: :class:`InputError` (:data:`NO_TRUST_POLICY`)."""
    if flag is not None:
        return Path(flag), "flag"
    if settings.trust is not None:
        return settings.trust, "settings"
    if policy_trust is not None:
        return Path(policy_trust), "policy"
    raise InputError(NO_TRUST_POLICY)
