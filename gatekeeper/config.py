"""Webhook settings: flags plus an optional YAML file (``mlgate serve --config FILE``).

```yaml
environments:
  production:
    mode: enforce
    requireModelReference: true  # the default: every object sent must name its model
    exemptions:                  # objects that need not name one; each is recorded with its rule
      - rule: ingress-controllers
        namespaceSelector:       # the webhook sees a namespace's name only: kubernetes.io/metadata.name
          matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [ingress-nginx]}]
      - rule: feature-store-jobs
        objectSelector: {matchLabels: {mlgate.dev/no-model: "true"}}
    trustedStorageCredentials:   # what a model may be fetched with (default: nothing; see below)
      secrets: [models-s3-reader]          # envSecretRefName, secretName, envFrom/valueFrom secretRef
      configMaps: [model-runtime-env]      # envFrom/valueFrom configMapRef
      serviceAccounts: [models-reader]     # serviceAccountName of a KServe component or Seldon node
      storageKeys: [hospital-s3]           # KServe storage.key (an entry of the storage-config Secret)
      env: ["S3_ENDPOINT=s3.eu-west-1.amazonaws.com", "AWS_REGION=eu-west-1"]   # literal NAME=VALUE
      initializerImages: [seldonio/rclone-storage-initializer:1.18.0]           # Seldon storageInitializerImage
  staging:    {mode: warn}
  research:   {mode: audit, requireModelReference: false}
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
policy: oci://registry.example/compliance/mlgate:stable   # or @sha256:..., a directory or a bundle (--policy)
policyRefresh: 5m              # how often a tag is resolved again (--policy-refresh; default 60s; not for a digest)
bundleKey: /etc/mlgate/bundle/team.pub   # the key that must have signed the bundle (--bundle-key)
auditCheckpoints:              # sign the trail's head as it grows (--checkpoint-key, --checkpoint-every, ...)
  key: /etc/mlgate/checkpoint/key.pem      # a checkpointSigners key of the trust policy
  every: 1000,5m               # N records or T (30s, 15m, 1h) after the newest checkpoint, whichever first
  anchors: [file:/anchors]     # copies outside the writer's reach (another volume)
  tsa: https://tsa.hospital.example/tsr    # RFC 3161 TSA the trust policy lists in timestampAuthorities
```

An environment that the policy data defines but the file does not name runs in ``enforce``
and requires a model reference (so does every environment, with no settings file at all). An
exemption waives only that requirement, for the objects its selectors match (both, when both are
given; Kubernetes label-selector semantics): an object that names a model is judged all the same.

``trustedStorageCredentials`` closes a hole an approved URI leaves open: *where* it is fetched from.
A field that can point the downloader at another endpoint (a KServe ``storage.key`` or
``storage.parameters`` beyond ``type``/``bucket``, a Seldon ``envSecretRefName`` or Core 2
``secretName``, a non-default ``serviceAccountName`` on a model-loading component, a Seldon
``storageInitializerImage``, an ``AWS_*``, ``S3_*``, ``RCLONE_CONFIG_*``, ``AZURE_*``, ``GCS_*``,
``GOOGLE_APPLICATION_CREDENTIALS``, ``HF_ENDPOINT`` env or any ``envFrom`` on a container of an object
that loads a model) is unresolved, a deny in enforce mode, unless it names something listed here
(``storage.parameters`` other keys never are). Names are exact; an ``env`` entry is ``NAME=VALUE``.
An ``oci://`` policy (:mod:`mlgate.policy.oci`) is pulled and verified at start-up and, for a tag,
resolved again every ``policyRefresh`` (:mod:`mlgate.gatekeeper.policy_source`); a digest never moves.
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
ENGINES = ("embedded", "regorus-interp", "rego-cpp", "opa")  # mlgate.policy.engine.ENGINES (a test keeps them equal)
ENVIRONMENT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DEFAULT_MAX_BODY = 4 * 1024 * 1024
#: How often an ``oci://`` tag is resolved again when the settings do not say (``policyRefresh``).
DEFAULT_POLICY_REFRESH_S = 60.0
POLICY_REFRESH_RANGE_S = (1.0, 86_400.0)
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
#: The settings file's ``engine.opa`` keys and the OpaSettings fields they set.
OPA_KEYS = {"url": "url", "tokenFile": "token", "ca": "ca_file", "clientCert": "client_cert", "clientKey": "client_key",
            "timeoutSeconds": "timeout_s"}


#: A namespace's labels as the webhook knows them: an AdmissionReview carries the name, not the labels.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


@dataclass(frozen=True)
class LabelSelector:
    """A Kubernetes label selector (``matchLabels`` and ``matchExpressions``, ANDed); empty matches everything."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels):
            return False
        for key, op, values in self.match_expressions:
            present = key in labels
            ok = {"In": present and labels[key] in values, "NotIn": not present or labels[key] not in values,
                  "Exists": present, "DoesNotExist": not present}[op]
            if not ok:
                return False
        return True

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.match_labels:
            out["matchLabels"] = dict(self.match_labels)
        if self.match_expressions:
            out["matchExpressions"] = [{"key": k, "operator": op, **({"values": list(v)} if op in ("In", "NotIn") else {})}
                                       for k, op, v in self.match_expressions]
        return out


@dataclass(frozen=True)
class Exemption:
    """Objects that need not name a model (``requireModelReference``), by namespace and object labels."""

    rule: str
    namespace_selector: LabelSelector | None = None
    object_selector: LabelSelector | None = None

    def matches(self, namespace: str | None, labels: dict[str, str]) -> bool:
        if self.namespace_selector is not None and not self.namespace_selector.matches({NAMESPACE_NAME_LABEL: namespace} if namespace else {}):
            return False
        return self.object_selector is None or self.object_selector.matches(labels)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.rule}
        if self.namespace_selector is not None:
            out["namespaceSelector"] = self.namespace_selector.as_dict()
        if self.object_selector is not None:
            out["objectSelector"] = self.object_selector.as_dict()
        return out


#: ``trustedStorageCredentials`` keys: what each one trusts.
TRUSTED_STORAGE_KEYS = ("secrets", "configMaps", "serviceAccounts", "storageKeys", "env", "initializerImages")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_STORAGE_KEY = re.compile(r"^[-._A-Za-z0-9]{1,253}$")  # a Secret data key
_ENV_ENTRY = re.compile(r"^[-._A-Za-z][-._A-Za-z0-9]{0,252}=")


@dataclass(frozen=True)
class TrustedStorage:
    """What an object in this environment may fetch its model with (``trustedStorageCredentials``)."""

    secrets: frozenset[str] = frozenset()
    configMaps: frozenset[str] = frozenset()
    serviceAccounts: frozenset[str] = frozenset()
    storageKeys: frozenset[str] = frozenset()
    env: frozenset[str] = frozenset()  # NAME=VALUE
    initializerImages: frozenset[str] = frozenset()

    def allows(self, kind: str, name: str) -> bool:
        return name in getattr(self, kind, frozenset())


@dataclass(frozen=True)
class EnvironmentSettings:
    mode: str = "enforce"
    #: Safe default: every object sent must name its model (issue 15); a settings file may turn it off.
    require_model_reference: bool = True
    exemptions: tuple[Exemption, ...] = ()
    trusted_storage: TrustedStorage = TrustedStorage()

    def exemption_for(self, namespace: str | None, labels: dict[str, str]) -> Exemption | None:
        """The first exemption whose selectors match the object, or None."""
        return next((e for e in self.exemptions if e.matches(namespace, labels)), None)


@dataclass(frozen=True)
class Settings:
    evidence_store: str
    audit: str
    policy_dir: Path | str | None = None  # a directory, a bundle, or "oci://REGISTRY/REPO:TAG" / "...@sha256:..." (normalised)
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
    checkpoint: Any = None  # mlgate.audit.autocheckpoint.CheckpointSettings: sign checkpoints of the trail as it grows
    bundle_key: Path | None = None  # the public key that must have signed the policy bundle (a *.tar.gz or an oci:// policy)
    policy_refresh_s: float | None = None  # how often an oci:// tag is resolved again (None: DEFAULT_POLICY_REFRESH_S; never for a digest)
    # acceptSummaries.maxAge: take the time-independent findings of a release from its signed verification summary
    # (mlgate check --attest; summarySigners of the trust policy) when no older than this; None: never
    accept_summaries_s: float | None = None

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
                       checkpoint_flags: dict[str, Any] | None = None, **flags: Any) -> Settings:
    """Settings from a parsed settings file (``{}`` and ``name=None`` when there is none) and the flags, which win.

    ``flags`` are :class:`Settings` fields (None: not given); ``opa_flags`` are the
    :class:`~mlgate.policy.engine.opa.OpaSettings` fields the command line gave."""
    _expect(isinstance(doc, dict), "the settings file must be a mapping", name, "$")
    known = {"environments", "maxBodyBytes", "defaultTimeoutSeconds", "cache", "certReloadSeconds", "gateThreads", "evidenceStore", "engine",
             "auditCheckpoints", "policy", "policyRefresh", "bundleKey", "acceptSummaries"}
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
    if "acceptSummaries" in doc:
        summaries = _mapping(doc, "acceptSummaries", name)
        _unknown(summaries, {"maxAge"}, name, "acceptSummaries")
        _expect("maxAge" in summaries, "needs maxAge (how old a verification summary may be, e.g. 24h)", name, "acceptSummaries")
        values["accept_summaries_s"] = parse_duration(summaries["maxAge"], name, "acceptSummaries.maxAge", (60, 90 * 86_400))
    engine, opa = _engine(doc, name, base)
    policy_from_file = _policy_keys(doc, name, base)
    values.update(policy_from_file)

    values.update({k: v for k, v in flags.items() if v is not None})
    values.update(_policy_source(values, {k: flags.get(k) is not None for k in ("policy_dir", "policy_refresh_s", "bundle_key")}, name))
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
    values["checkpoint"] = _checkpoints(doc, name, base, checkpoint_flags or {})
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
        _unknown(body, {"mode", "requireModelReference", "exemptions", "trustedStorageCredentials"}, name, where)
        mode = body.get("mode", "enforce")
        _expect(mode in MODES, f"mode must be one of {', '.join(MODES)}, got {mode!r}", name, where + ".mode")
        require = body.get("requireModelReference", True)
        _expect(isinstance(require, bool), "must be true or false", name, where + ".requireModelReference")
        envs[env] = EnvironmentSettings(mode=mode, require_model_reference=require,
                                        exemptions=_exemptions(body.get("exemptions"), name, where + ".exemptions"),
                                        trusted_storage=_trusted_storage(body.get("trustedStorageCredentials"), name,
                                                                         where + ".trustedStorageCredentials"))
    return envs


def _exemptions(raw: Any, name: str, where: str) -> tuple[Exemption, ...]:
    if raw is None:
        return ()
    _expect(isinstance(raw, list), "must be a list of {rule, namespaceSelector, objectSelector}", name, where)
    out: list[Exemption] = []
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        _expect(isinstance(item, dict), "must be a mapping", name, at)
        _unknown(item, {"rule", "namespaceSelector", "objectSelector"}, name, at)
        rule = _string(item.get("rule"), name, at + ".rule")
        _expect(rule not in {e.rule for e in out}, f"rule {rule!r} given twice", name, at + ".rule")
        _expect("namespaceSelector" in item or "objectSelector" in item,
                "needs a namespaceSelector or an objectSelector (an exemption of everything is requireModelReference: false)", name, at)
        ns = _selector(item["namespaceSelector"], name, at + ".namespaceSelector") if "namespaceSelector" in item else None
        if ns is not None:
            keys = {k for k, _ in ns.match_labels} | {k for k, _, _ in ns.match_expressions}
            _expect(keys <= {NAMESPACE_NAME_LABEL}, f"the webhook sees a namespace's name, not its labels: only {NAMESPACE_NAME_LABEL} "
                    "can be matched here (other namespace labels belong in the webhook's namespaceSelector: "
                    "mlgate webhook manifests --exempt-namespace-label)", name, at + ".namespaceSelector")
        obj = _selector(item["objectSelector"], name, at + ".objectSelector") if "objectSelector" in item else None
        out.append(Exemption(rule, ns, obj))
    return tuple(out)


def _trusted_storage(raw: Any, name: str, where: str) -> TrustedStorage:
    if raw is None:
        return TrustedStorage()
    _expect(isinstance(raw, dict), f"must be a mapping with any of {', '.join(TRUSTED_STORAGE_KEYS)}", name, where)
    _unknown(raw, set(TRUSTED_STORAGE_KEYS), name, where)
    out: dict[str, frozenset[str]] = {}
    for key in TRUSTED_STORAGE_KEYS:
        items = raw.get(key) or []
        _expect(isinstance(items, list), "must be a list of names", name, f"{where}.{key}")
        for i, item in enumerate(items):
            at = f"{where}.{key}[{i}]"
            _expect(isinstance(item, str), f"must be a string, got {type(item).__name__}", name, at)
            if key in ("secrets", "configMaps", "serviceAccounts"):
                _expect(bool(_DNS_SUBDOMAIN.match(item)), f"{item!r} is not a Kubernetes object name", name, at)
            elif key == "storageKeys":
                _expect(bool(_STORAGE_KEY.match(item)), f"{item!r} is not a Secret key", name, at)
            elif key == "env":
                _expect(bool(_ENV_ENTRY.match(item)), f"{item!r}: expected NAME=VALUE", name, at)
            else:
                _expect(bool(item.strip()) and item == item.strip() and not any(c.isspace() for c in item),
                        f"{item!r} is not an image reference", name, at)
        out[key] = frozenset(items)
    return TrustedStorage(**out)


def _selector(raw: Any, name: str, where: str) -> LabelSelector:
    _expect(isinstance(raw, dict) and bool(raw), "must be a label selector (matchLabels and/or matchExpressions)", name, where)
    _unknown(raw, {"matchLabels", "matchExpressions"}, name, where)
    labels = raw.get("matchLabels") or {}
    _expect(isinstance(labels, dict), "must be a mapping of label to value", name, where + ".matchLabels")
    pairs = []
    for key, value in labels.items():
        _expect(isinstance(key, str) and bool(_LABEL_KEY.match(key)), f"invalid label key {key!r}", name, where + ".matchLabels")
        _expect(isinstance(value, str) and bool(_LABEL_VALUE.match(value)), f"invalid label value {value!r} (a string; quote true/false/numbers)",
                name, f"{where}.matchLabels.{key}")
        pairs.append((key, value))
    exprs = raw.get("matchExpressions") or []
    _expect(isinstance(exprs, list), "must be a list", name, where + ".matchExpressions")
    out = []
    for i, expr in enumerate(exprs):
        at = f"{where}.matchExpressions[{i}]"
        _expect(isinstance(expr, dict), "must be a mapping", name, at)
        _unknown(expr, {"key", "operator", "values"}, name, at)
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values")
        _expect(isinstance(key, str) and bool(_LABEL_KEY.match(key)), f"invalid label key {key!r}", name, at + ".key")
        _expect(op in SELECTOR_OPERATORS, f"operator must be one of {', '.join(SELECTOR_OPERATORS)}, got {op!r}", name, at + ".operator")
        if op in ("In", "NotIn"):
            _expect(isinstance(values, list) and bool(values) and all(isinstance(v, str) and _LABEL_VALUE.match(v) for v in values),
                    f"{op} needs a non-empty list of label values", name, at + ".values")
        else:
            _expect(not values, f"{op} takes no values", name, at + ".values")
        out.append((key, op, tuple(values or ())))
    return LabelSelector(tuple(pairs), tuple(out))


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


def parse_duration(value: Any, name: str | None, where: str, lo_hi: tuple[float, float] = POLICY_REFRESH_RANGE_S) -> float:
    """Seconds from ``90``, ``30s``, ``5m``, ``1h`` or ``500ms``, within ``lo_hi``; else a one-line InputError."""
    lo, hi = lo_hi
    seconds = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    _expect(seconds is not None and lo <= seconds <= hi,
            f"must be a duration (seconds, or 30s, 5m, 1h) from {lo:g} s to {hi / 3600:g} h, got {str(value)[:40]!r}", name, where)
    return seconds


def _policy_keys(doc: dict, name: str, base: Path | None) -> dict[str, Any]:
    """``policy``, ``policyRefresh`` and ``bundleKey`` as :class:`Settings` fields (checked together in :func:`_policy_source`)."""
    from mlgate.policy.oci import is_oci

    out: dict[str, Any] = {}
    if "policy" in doc:
        raw = _string(doc["policy"], name, "policy")
        out["policy_dir"] = raw if is_oci(raw) else _path(raw, name, "policy", base, file=False)
    if "policyRefresh" in doc:
        out["policy_refresh_s"] = parse_duration(doc["policyRefresh"], name, "policyRefresh")
    if "bundleKey" in doc:
        out["bundle_key"] = _path(doc["bundleKey"], name, "bundleKey", base, file=True)
    return out


def _policy_source(values: dict[str, Any], from_flag: dict[str, bool], name: str | None) -> dict[str, Any]:
    """The policy source, its refresh interval and bundle key, checked together: an ``oci://``
    reference is parsed (a tag or a digest is required) and normalised; a refresh interval needs a
    tag (a digest never moves); a bundle key needs a bundle. Errors name the flag or the file's key."""
    from mlgate.errors import MlgateError
    from mlgate.policy.oci import is_oci, parse_ref

    def fail(message: str, key: str, flag: str) -> None:
        raise InputError(message, file=None if from_flag[key] else name, field=flag if from_flag[key] else
                         {"policy_dir": "policy", "policy_refresh_s": "policyRefresh", "bundle_key": "bundleKey"}[key])

    source, refresh, key = values.get("policy_dir"), values.get("policy_refresh_s"), values.get("bundle_key")
    out: dict[str, Any] = {}
    if is_oci(source):
        try:
            ref = parse_ref(source)
        except MlgateError as exc:
            fail(exc.message, "policy_dir", "--policy")
        out["policy_dir"] = str(ref)
        if ref.digest is not None and refresh is not None:
            fail(f"{ref} names a digest, which never changes: a refresh interval is for a tag (oci://REPO:TAG)",
                 "policy_refresh_s", "--policy-refresh")
        return out
    if refresh is not None:
        fail(f"a refresh interval is for an oci:// policy (a tag in a registry), not {str(source or 'the bundled library')!r}",
             "policy_refresh_s", "--policy-refresh")
    if key is not None and not str(source or "").endswith((".tar.gz", ".tgz")):
        fail(f"a bundle key verifies an OPA bundle (*.tar.gz or oci://...), not {str(source or 'the bundled library')!r}",
             "bundle_key", "--bundle-key")
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


def _checkpoints(doc: dict, name: str, base: Path | None, flags: dict[str, Any]) -> Any:
    """``auditCheckpoints`` (key, every, anchors, tsa), each overridden by its --checkpoint-* flag."""
    from mlgate.audit.autocheckpoint import checkpoint_settings

    raw = _mapping(doc, "auditCheckpoints", name)
    _unknown(raw, {"key", "every", "anchors", "tsa"}, name, "auditCheckpoints")
    key = _path(raw["key"], name, "auditCheckpoints.key", base, file=True) if "key" in raw else None
    every = raw.get("every")
    if every is not None:
        _expect(isinstance(every, (str, int)) and not isinstance(every, bool), "must be N, a time (30s, 15m, 1h) or N,T", name, "auditCheckpoints.every")
    anchors = raw.get("anchors", [])
    _expect(isinstance(anchors, list) and all(isinstance(a, str) for a in anchors), "must be a list of file:DIR", name, "auditCheckpoints.anchors")
    tsa = _string(raw["tsa"], name, "auditCheckpoints.tsa") if "tsa" in raw else None
    key = flags.get("key") or key
    every = flags.get("every") or every
    anchors = list(flags.get("anchors") or ()) or [a if not a.startswith("file:") or a.startswith("file:/") or base is None
                                                   else f"file:{base / a[5:]}" for a in anchors]
    tsa = flags.get("tsa") or tsa
    try:
        return checkpoint_settings(key, None if every is None else str(every), tuple(anchors), tsa)
    except InputError as exc:
        raise InputError(exc.message, file=name, field=exc.field) from None


def _opa_settings(engine: str, fields: dict[str, Any], name: str) -> Any:
    if engine != "opa":
        if fields:
            raise InputError(f"OPA options (--opa-*, engine.opa) need --engine opa (engine.name: opa), not {engine!r}", file=name)
        return None
    if not fields.get("url"):
        raise InputError("--engine opa needs the OPA server's URL: --opa-url or engine.opa.url", file=name)
    from mlgate.policy.engine.opa import OpaSettings

    return OpaSettings(**fields)
