"""Webhook settings: flags plus an optional YAML file (``mlgate serve --config FILE``).

```yaml
environments:
  production: {mode: enforce, requireModelReference: true}
  staging:    {mode: warn}
  research:   {mode: audit}
maxBodyBytes: 4194304          # larger bodies get 413 before they are read
defaultTimeoutSeconds: 10      # when the apiserver sends no ?timeout=
cache: {maxEntries: 256, ttlSeconds: 300}
certReloadSeconds: 10          # how often the mounted certificate and key are checked
gateThreads: 4                 # gate threads, each with its own policy engine
```

An environment that the policy data defines but the file does not name runs in ``enforce``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlgate.errors import InputError

MODES = ("enforce", "warn", "audit")
ENVIRONMENT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DEFAULT_MAX_BODY = 4 * 1024 * 1024


@dataclass(frozen=True)
class EnvironmentSettings:
    mode: str = "enforce"
    require_model_reference: bool = False


@dataclass(frozen=True)
class Settings:
    evidence_store: str
    audit: str
    policy_dir: Path | None = None
    trust_policy: Path | None = None
    data_overrides: tuple[Path, ...] = ()
    environments: dict[str, EnvironmentSettings] = field(default_factory=dict)
    max_body_bytes: int = DEFAULT_MAX_BODY
    default_timeout_s: float = 10.0
    deadline_margin_s: float = 0.25  # answer this long before the apiserver gives up
    cache_entries: int = 256
    cache_ttl_s: float = 300.0
    cert_reload_s: float = 10.0
    gate_threads: int | None = None  # gate threads, each with its own engine (None: 1 here; ``mlgate serve`` defaults to 4)
    evidence_store_ca: Path | None = None  # CA bundle for an https:// evidence store (default: the system's)
    evidence_cache_dir: Path | None = None  # where an https:// store's releases are downloaded (default: a temp dir)

    def environment(self, name: str) -> EnvironmentSettings:
        return self.environments.get(name, EnvironmentSettings())


def _expect(cond: bool, message: str, name: str, where: str) -> None:
    if not cond:
        raise InputError(message, file=name, field=where)


def load_config(path: Path, **flags: Any) -> Settings:
    """Read the YAML settings file; ``flags`` (evidence_store, audit, policy_dir, ...) are the command-line values."""
    from mlgate.safeio import decode_text, display, parse_yaml, read_bytes

    name = display(path)
    doc = parse_yaml(decode_text(read_bytes(path), name), name) or {}
    return settings_from_dict(doc, name, **flags)


def settings_from_dict(doc: Any, name: str = "config", **flags: Any) -> Settings:
    _expect(isinstance(doc, dict), "the settings file must be a mapping", name, "$")
    known = {"environments", "maxBodyBytes", "defaultTimeoutSeconds", "cache", "certReloadSeconds", "gateThreads"}
    unknown = sorted(set(doc) - known)
    _expect(not unknown, f"unknown key {unknown[0] if unknown else ''!r} (known: {', '.join(sorted(known))})", name, "$")
    envs: dict[str, EnvironmentSettings] = {}
    raw_envs = doc.get("environments") or {}
    _expect(isinstance(raw_envs, dict), "must be a mapping of environment name to settings", name, "environments")
    for env, body in raw_envs.items():
        where = f"environments.{env}"
        _expect(isinstance(env, str) and bool(ENVIRONMENT_NAME.match(env)), "environment names are DNS labels", name, where)
        body = body or {}
        _expect(isinstance(body, dict), "must be a mapping", name, where)
        extra = sorted(set(body) - {"mode", "requireModelReference"})
        _expect(not extra, f"unknown key {extra[0] if extra else ''!r} (known: mode, requireModelReference)", name, where)
        mode = body.get("mode", "enforce")
        _expect(mode in MODES, f"mode must be one of {', '.join(MODES)}, got {mode!r}", name, where + ".mode")
        require = body.get("requireModelReference", False)
        _expect(isinstance(require, bool), "must be true or false", name, where + ".requireModelReference")
        envs[env] = EnvironmentSettings(mode=mode, require_model_reference=require)
    values: dict[str, Any] = {"environments": envs}
    if "maxBodyBytes" in doc:
        v = doc["maxBodyBytes"]
        _expect(isinstance(v, int) and not isinstance(v, bool) and 1024 <= v <= 64 * 1024 * 1024, "must be an integer from 1024 to 67108864", name, "maxBodyBytes")
        values["max_body_bytes"] = v
    if "defaultTimeoutSeconds" in doc:
        v = doc["defaultTimeoutSeconds"]
        _expect(isinstance(v, (int, float)) and not isinstance(v, bool) and 1 <= v <= 30, "must be a number from 1 to 30", name, "defaultTimeoutSeconds")
        values["default_timeout_s"] = float(v)
    if "certReloadSeconds" in doc:
        v = doc["certReloadSeconds"]
        _expect(isinstance(v, (int, float)) and not isinstance(v, bool) and 0.05 <= v <= 3600, "must be a number from 0.05 to 3600", name, "certReloadSeconds")
        values["cert_reload_s"] = float(v)
    if "gateThreads" in doc:
        v = doc["gateThreads"]
        _expect(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 64, "must be an integer from 1 to 64", name, "gateThreads")
        values["gate_threads"] = v
    cache = doc.get("cache") or {}
    _expect(isinstance(cache, dict), "must be a mapping", name, "cache")
    if "maxEntries" in cache:
        v = cache["maxEntries"]
        _expect(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 100_000, "must be an integer from 1 to 100000", name, "cache.maxEntries")
        values["cache_entries"] = v
    if "ttlSeconds" in cache:
        v = cache["ttlSeconds"]
        _expect(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 86_400, "must be a number from 0 to 86400", name, "cache.ttlSeconds")
        values["cache_ttl_s"] = float(v)
    values.update({k: v for k, v in flags.items() if v is not None})
    return Settings(**values)
