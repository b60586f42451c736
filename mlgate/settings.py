"""The project settings file ``.mlgate.yaml``: where a project keeps its trust policy, policy and
audit trail, read from the working directory the way conftest reads ``conftest.toml`` and Regal
its ``.regal/config.yaml``::

    # .mlgate.yaml
    trust: examples/trust.yaml        # the trust policy (approvers, model signers, CAs)
    policy: policies/                 # optional: the policy directory or OPA bundle (default: the bundled library)
    audit: file:.mlgate/audit.jsonl   # optional: the audit trail (file:PATH, a path, or postgresql://...)

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
    policy: Path | None = None
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
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"must be a non-empty string (a path{' or URL' if key == 'audit' else ''}), got {type(value).__name__}", file=name, field=key)
        if key == "audit":
            values[key] = _audit_url(value, base)
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
