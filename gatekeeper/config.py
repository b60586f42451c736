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
evidenceStore:
  url: https://artifacts.example/mlgate   # or file:///evidence (--evidence-store)
  ca: /etc/mlgate/evidence-ca.crt         # https:// only (--evidence-store-ca)
  cacheDir: /var/cache/mlgate             # https:// only (--evidence-cache-dir)
engine:
  name: opa                    # embedded (default) | rego-cpp | opa (--engine)
  opa:                         # only with name: opa (--opa-url, --opa-token-file, ...)
    url: https://opa.opa.svc:8181
    tokenFile: /var/run/secrets/opa/token  # read again when the Secret is rotated
    ca: /etc/opa-tls/ca.crt
    clientCert: /etc/opa-tls/tls.crt
    clientKey: /etc/opa-tls/tls.key
    timeoutSeconds: 2          # per decision; always cut to fit each request's admission deadline
```

An environment that the policy data defines but the file does not name runs in ``enforce``.
Relative paths in the file are relative to the file's directory. Flags override the file, key
by key (``--opa-url`` replaces ``engine.opa.url`` and keeps the file's ``tokenFile``); an
``--engine`` other than ``opa`` on the command line drops the file's ``engine.opa``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlgate.policy.engine.opa import read_token_file  # noqa: F401 - also the settings file's reader, and the CLI's
from mlgate.errors import InputError

MODES = ("enforce", "warn", "audit")
ENGINES = ("embedded", "rego-cpp", "opa")  # mlgate.policy.engine.ENGINES (a test keeps them equal)
ENVIRONMENT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DEFAULT_MAX_BODY = 4 * 1024 * 1024
#: The settings file's ``engine.opa`` keys and the OpaSettings fields they set.
OPA_KEYS = {"url": "url", "tokenFile": "token", "ca": "ca_file", "clientCert": "client_cert", "clientKey": "client_key",
            "timeoutSeconds": "timeout_s"}


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
    engine: str = "embedded"  # embedded | rego-cpp | opa
    opa: Any = None  # mlgate.policy.engine.opa.OpaSettings, for engine="opa"; its timeout is cut per request to the admission deadline

    def environment(self, name: str) -> EnvironmentSettings:
        return self.environments.get(name, EnvironmentSettings())


def _expect(cond: bool, message: str, name: str | None, where: str) -> None:
    if not cond:
        raise InputError(message, file=name, field=where)


def load_config(path: Path, **flags: Any) -> Settings:
    """Read the YAML settings file; ``flags`` (evidence_store, audit, policy_dir, ...) are the command-line values."""
    from mlgate.safeio import decode_text, display, parse_yaml, read_bytes

    name = display(path)
    doc = parse_yaml(decode_text(read_bytes(path, limit=1024 * 1024), name), name) or {}
    return settings_from_dict(doc, name, base=Path(path).parent, **flags)


def settings_from_dict(doc: Any, name: str | None = "config", *, base: Path | None = None, opa_flags: dict[str, Any] | None = None,
                       **flags: Any) -> Settings:
    """Settings from a parsed settings file (``{}`` and ``name=None`` when there is none) and the flags, which win.

    ``flags`` are :class:`Settings` fields (None: not given); ``opa_flags`` are the
    :class:`~mlgate.policy.engine.opa.OpaSettings` fields the command line gave."""
    _expect(isinstance(doc, dict), "the settings file must be a mapping", name, "$")
    known = {"environments", "maxBodyBytes", "defaultTimeoutSeconds", "cache", "certReloadSeconds", "gateThreads", "evidenceStore", "engine"}
    _unknown(doc, known, name, "$")
    values: dict[str, Any] = {"environments": _environments(doc, name)}
    for key, attr, lo, hi, integer in (("maxBodyBytes", "max_body_bytes", 1024, 64 * 1024 * 1024, True),
                                       ("defaultTimeoutSeconds", "default_timeout_s", 1, 30, False),
                                       ("certReloadSeconds", "cert_reload_s", 0.05, 3600, False),
                                       ("gateThreads", "gate_threads", 1, 64, True)):
        if key in doc:
            values[attr] = _number(doc[key], lo, hi, integer, name, key)
    cache = _mapping(doc, "cache", name)
    _unknown(cache, {"maxEntries", "ttlSeconds"}, name, "cache")
    if "maxEntries" in cache:
        values["cache_entries"] = _number(cache["maxEntries"], 1, 100_000, True, name, "cache.maxEntries")
    if "ttlSeconds" in cache:
        values["cache_ttl_s"] = _number(cache["ttlSeconds"], 0, 86_400, False, name, "cache.ttlSeconds")
    values.update(_evidence_store(doc, name, base))
    engine, opa = _engine(doc, name, base)

    values.update({k: v for k, v in flags.items() if v is not None})
    # The engine: the flag wins over engine.name; each OPA flag over its engine.opa key.
    if flags.get("engine") is not None:
        if flags["engine"] != engine:
            opa = {}  # the file's OPA settings were for the file's engine
        engine = flags["engine"]
    opa_flags = opa_flags or {}
    if "token" in opa_flags and "token_file" not in opa_flags:
        opa.pop("token_file", None)  # --opa-token wins over the file's tokenFile, which must then not be re-read either
    opa = {**opa, **opa_flags}
    values["engine"] = engine
    values["opa"] = _opa_settings(engine, opa, name)
    if not values.get("evidence_store"):
        raise InputError("no evidence store: give --evidence-store (or evidenceStore.url in the settings file)", file=name)
    if not str(values["evidence_store"]).startswith("https://"):
        for attr, what in (("evidence_store_ca", "--evidence-store-ca (evidenceStore.ca)"), ("evidence_cache_dir", "--evidence-cache-dir (evidenceStore.cacheDir)")):
            if values.get(attr) is not None:
                raise InputError(f"{what} is for an https:// evidence store, not {values['evidence_store']!r}", file=name)
    return Settings(**values)


# ------------------------------------------------------------------------------------------ parts
def _unknown(doc: dict, known: set[str], name: str, where: str) -> None:
    extra = sorted(map(str, set(doc) - known))
    _expect(not extra, f"unknown key {extra[0] if extra else ''!r} (known: {', '.join(sorted(known))})", name, where)


def _mapping(doc: dict, key: str, name: str, prefix: str = "") -> dict:
    value = doc.get(key)
    if value is None:
        return {}
    _expect(isinstance(value, dict), "must be a mapping", name, prefix + key)
    return value


def _number(v: Any, lo: float, hi: float, integer: bool, name: str, where: str) -> Any:
    if integer:
        _expect(isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi, f"must be an integer from {lo} to {hi}", name, where)
        return v
    _expect(isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v <= hi, f"must be a number from {lo:g} to {hi:g}", name, where)
    return float(v)


def _string(v: Any, name: str, where: str) -> str:
    _expect(isinstance(v, str) and bool(v.strip()) and "\x00" not in v, "must be a non-empty string", name, where)
    return v


def _path(v: Any, name: str, where: str, base: Path | None, *, file: bool) -> Path:
    path = Path(_string(v, name, where)).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    if file:
        _expect(path.is_file(), f"file not found: {path}", name, where)
    return path


def _environments(doc: dict, name: str) -> dict[str, EnvironmentSettings]:
    envs: dict[str, EnvironmentSettings] = {}
    raw_envs = doc.get("environments") or {}
    _expect(isinstance(raw_envs, dict), "must be a mapping of environment name to settings", name, "environments")
    for env, body in raw_envs.items():
        where = f"environments.{env}"
        _expect(isinstance(env, str) and bool(ENVIRONMENT_NAME.match(env)), "environment names are DNS labels", name, where)
        body = body or {}
        _expect(isinstance(body, dict), "must be a mapping", name, where)
        _unknown(body, {"mode", "requireModelReference"}, name, where)
        mode = body.get("mode", "enforce")
        _expect(mode in MODES, f"mode must be one of {', '.join(MODES)}, got {mode!r}", name, where + ".mode")
        require = body.get("requireModelReference", False)
        _expect(isinstance(require, bool), "must be true or false", name, where + ".requireModelReference")
        envs[env] = EnvironmentSettings(mode=mode, require_model_reference=require)
    return envs


def _evidence_store(doc: dict, name: str, base: Path | None) -> dict[str, Any]:
    store = _mapping(doc, "evidenceStore", name)
    _unknown(store, {"url", "ca", "cacheDir"}, name, "evidenceStore")
    out: dict[str, Any] = {}
    if "url" in store:
        out["evidence_store"] = _string(store["url"], name, "evidenceStore.url")
    if "ca" in store:
        out["evidence_store_ca"] = _path(store["ca"], name, "evidenceStore.ca", base, file=True)
    if "cacheDir" in store:
        out["evidence_cache_dir"] = _path(store["cacheDir"], name, "evidenceStore.cacheDir", base, file=False)
    return out


def _engine(doc: dict, name: str, base: Path | None) -> tuple[str, dict[str, Any]]:
    """(engine name, OpaSettings fields) from the file's ``engine`` mapping."""
    engine = _mapping(doc, "engine", name)
    _unknown(engine, {"name", "opa"}, name, "engine")
    kind = engine.get("name", "embedded")
    _expect(kind in ENGINES, f"must be one of {', '.join(ENGINES)}, got {kind!r}", name, "engine.name")
    opa = _mapping(engine, "opa", name, "engine.")
    _unknown(opa, set(OPA_KEYS), name, "engine.opa")
    _expect(not opa or kind == "opa", f"engine.opa is for name: opa, not {kind!r}", name, "engine.opa")
    fields: dict[str, Any] = {}
    for key, attr in OPA_KEYS.items():
        if key not in opa:
            continue
        where = f"engine.opa.{key}"
        if key == "url":
            fields[attr] = _string(opa[key], name, where)
        elif key == "timeoutSeconds":
            fields[attr] = _number(opa[key], 0.05, 30, False, name, where)
        elif key == "tokenFile":
            path = _path(opa[key], name, where, base, file=True)
            try:
                fields[attr] = read_token_file(path)
            except InputError as exc:
                raise InputError(exc.diagnostics(), file=name, field=where) from None
            fields["token_file"] = path  # re-read by the engine when the Secret is rotated
        else:
            fields[attr] = _path(opa[key], name, where, base, file=True)
    return kind, fields


def _opa_settings(engine: str, fields: dict[str, Any], name: str) -> Any:
    if engine != "opa":
        if fields:
            raise InputError(f"OPA options (--opa-*, engine.opa) need --engine opa (engine.name: opa), not {engine!r}", file=name)
        return None
    if not fields.get("url"):
        raise InputError("--engine opa needs the OPA server's URL: --opa-url or engine.opa.url", file=name)
    from mlgate.policy.engine.opa import OpaSettings

    return OpaSettings(**fields)
