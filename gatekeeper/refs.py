"""Find every model an admitted object would load (issue 15, part 1).

The field lists come from the projects' own API types (kserve/kserve
``pkg/apis/serving/v1beta1``: ``predictor.go``, ``explainer.go``, ``transformer.go``,
``trained_model.go``, ``StorageSpec``; SeldonIO/seldon-core ``seldondeployment_types.go`` (v1)
and ``operator/apis/mlops/v1alpha1/model_types.go`` (Core 2)). The README's webhook section
keeps the same table:

- pod-bearing workloads (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet,
  ReplicationController, Job, CronJob): the annotations ``mlgate.dev/release`` and
  ``mlgate.dev/model-digest`` on the object (and a CronJob's ``jobTemplate``) and on the pod
  template; KServe's ``internal.serving.kserve.io/storage-initializer-sourceuri`` annotation;
  every container and initContainer: ``env STORAGE_URI``, the ``storage-initializer``
  initContainer's source argument, and ``--model_dir``-style arguments that name a URI;
- KServe ``InferenceService`` (predictor, transformer, explainer): every implementation block
  (``model``, the legacy framework fields ``sklearn``, ``xgboost``, ``tensorflow``,
  ``pytorch``, ``triton``, ``onnx``, ``huggingface``, ``pmml``, ``lightgbm``, ``paddle``, the
  explainers ``art`` and ``alibi``, and any other block of the same shape): ``storageUri``,
  ``storage {key, path, parameters}`` and its containers' fields; the component's
  ``storageUris[].uri``, its inline ``containers``/``initContainers`` and ``workerSpec``;
- KServe ``TrainedModel``: ``spec.model.storageUri`` (``spec.predictorModel`` in older releases);
- Seldon ``SeldonDeployment`` (v1): every graph node's ``modelUri`` (``children`` at any depth),
  each predictor's ``explainer.modelUri`` and ``explainer.containerSpec``, and the containers
  of ``componentSpecs[].spec``;
- Seldon Core 2 ``Model`` (``mlops.seldon.io``): ``spec.storageUri`` (with
  ``artifactVersion`` when given, the version folder the server loads).

A field that names a model the webhook cannot turn into a reference (a ``valueFrom`` it cannot
read, a ``storage`` key whose bucket lies in a Secret) is :class:`Unresolved`: a deny in enforce
mode, never "no model". The object is read from ``request.object`` with ``request.kind`` (not
``requestKind``: under ``matchPolicy: Equivalent`` the object arrives converted to ``kind``).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mlgate.gatekeeper.config import TrustedStorage

from mlgate.store import ModelRef, StoreError

RELEASE_ANNOTATION = "mlgate.dev/release"
DIGEST_ANNOTATION = "mlgate.dev/model-digest"
#: Set by KServe on the pods (and raw-deployment templates) it makes: the URI its storage initializer downloads.
KSERVE_SOURCE_ANNOTATION = "internal.serving.kserve.io/storage-initializer-sourceuri"
STORAGE_URI_ENV = "STORAGE_URI"
#: Seldon v1's prepackaged servers read their graph node's parameters (``model_uri`` among them) from this env, as JSON.
SELDON_PARAMETERS_ENV = "PREDICTIVE_UNIT_PARAMETERS"
STORAGE_INITIALIZER = "storage-initializer"
#: Command-line flags of model servers whose value is the model to load: KServe's servers
#: (``--model_dir``), the Hugging Face and vLLM servers (``--model_id`` / ``--model``), Triton
#: (``--model-repository``, ``--model-store``), TensorFlow Serving (``--model_base_path``), OpenVINO
#: Model Server (``--model_path``), TorchServe (``--models NAME=URL``). Any unambiguous prefix of one
#: (``--model_d=``) counts as that flag: argparse and getopt_long accept abbreviations.
MODEL_FLAGS = ("--model_dir", "--model-dir", "--model_uri", "--model-uri", "--storage_uri", "--storage-uri",
               "--model_id", "--model-id", "--model", "--model-repository", "--model_repository", "--model-store",
               "--model_store", "--model_base_path", "--model-base-path", "--model_path", "--model-path", "--models")
#: Flags whose bare value (``org/name``) is a Hugging Face Hub model id, i.e. KServe's ``hf://org/name``.
HUB_FLAGS = ("--model_id", "--model-id", "--model")
#: KServe StorageSpec types whose URI the storage initializer builds as ``TYPE://BUCKET/PATH``.
STORAGE_TYPES = ("s3", "gs")
#: ``storage.parameters`` keys that only say which bucket: any other key (``endpoint_url``, ``region``,
#: credentials...) changes where the approved path is fetched from.
STORAGE_PLACE_KEYS = ("type", "bucket")
#: URI schemes that name a model wherever they appear in a command line or an env value (the storage
#: initializers of KServe and Seldon, rclone, Triton, the Hub, OCI model artifacts).
MODEL_SCHEMES = frozenset({"s3", "gs", "gcs", "hf", "pvc", "oci", "azure", "az", "abfs", "abfss", "wasb", "wasbs", "minio",
                           "hdfs", "webhdfs", "r2", "swift", "ftp", "sftp", "http", "https"})
#: http(s) is everywhere (proxies, collectors, callbacks): judged in a command line except as the value of
#: a flag that is not about models, and in an env value whose name is about models.
WEB_SCHEMES = frozenset({"http", "https"})
_MODELISH = re.compile(r"model|storage|weight|checkpoint|artifact|repo", re.IGNORECASE)
_URI_REST = re.compile(r"[^\s\"'`,;|&<>(){}\[\]\\]*")  # what follows "://" up to a delimiter
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
#: Env names that set where (or as whom) a downloader fetches: an approved URI fetched from another endpoint.
CREDENTIAL_ENV = re.compile(r"^(AWS_|S3_|RCLONE_CONFIG_|AZURE_|GCS_)|^(GOOGLE_APPLICATION_CREDENTIALS|HF_ENDPOINT|STORAGE_EMULATOR_HOST)$")
#: Credential env names whose value may be shown in a record (an address, not a secret).
_PUBLIC_ENV = re.compile(r"ENDPOINT|URL|HOST|REGION|PROVIDER|TYPE|HTTPS|SSL|BUCKET")
#: fieldRef paths whose value is the pod's own name, address or node: not chosen by the object's author.
BENIGN_FIELDS = frozenset({"metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName",
                           "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs"})
#: Seldon v1 node types whose node serves a model (a node with no type and no implementation is a custom model).
SELDON_MODEL_TYPES = (None, "", "MODEL", "UNKNOWN_TYPE")
_VAR = re.compile(r"\$\$|\$\(([^)]*)\)")  # kubelet's $(VAR) expansion; $$ is a literal $
_SHELL_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_UNKNOWN = "\ue000"  # marks text the webhook cannot know (a Secret's value): never part of a real value
MAX_GRAPH_DEPTH = 32
MAX_REFS = 16
MAX_CONTAINERS = 64
MAX_SHELL_CHARS = 32 * 1024
#: shlex reads about a character a microsecond: beyond this many characters per object, shell strings
#: are split on whitespace only (linear, and still read for model flags and URIs).
MAX_SHELL_TOTAL = 64 * 1024
#: Command-line words read per object (arguments and the words of shell strings): a bound on the work
#: one review can cause; more is refused (no real workload comes near it).
MAX_WORDS = 20_000
#: ``scheme://`` occurrences examined per object (the same bound, for URIs packed into one string).
MAX_URIS_SEEN = 20_000
MAX_SHELL_DEPTH = 3
MAX_PARAMETERS_CHARS = 64 * 1024

_POD_TEMPLATE = {
    ("apps", "Deployment"): ("spec", "template"),
    ("extensions", "Deployment"): ("spec", "template"),
    ("apps", "StatefulSet"): ("spec", "template"),
    ("apps", "DaemonSet"): ("spec", "template"),
    ("extensions", "DaemonSet"): ("spec", "template"),
    ("apps", "ReplicaSet"): ("spec", "template"),
    ("extensions", "ReplicaSet"): ("spec", "template"),
    ("", "ReplicationController"): ("spec", "template"),
    ("batch", "Job"): ("spec", "template"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template"),
}
KSERVE_GROUP = "serving.kserve.io"
SELDON_GROUP = "machinelearning.seldon.io"
SELDON2_GROUP = "mlops.seldon.io"
KSERVE_COMPONENTS = ("predictor", "transformer", "explainer")
#: Kinds whose model references mlgate reads (the webhook rules name these).
KINDS = sorted({k for _, k in _POD_TEMPLATE} | {"Pod", "InferenceService", "TrainedModel", "SeldonDeployment", "Model"})


@dataclass(frozen=True)
class Unresolved:
    """A field that names a model the webhook cannot resolve to a reference: judged as a deny."""

    source: str  # the field
    value: str
    reason: str

    def describe(self) -> str:
        return f"{self.source} names a model the webhook cannot resolve ({self.reason})"


@dataclass(frozen=True)
class Found:
    refs: tuple[ModelRef, ...]
    model_kind: str  # workload | kserve | seldon | other
    unresolved: tuple[Unresolved, ...] = ()

    @property
    def names_a_model(self) -> bool:
        return bool(self.refs or self.unresolved)


@dataclass(frozen=True)
class _Credential:
    """A field that says where (or as whom) a model is fetched: judged only when the object loads a model."""

    source: str
    kind: str  # TrustedStorage field: secrets | configMaps | serviceAccounts | storageKeys | env | initializerImages
    name: str  # what the settings must name to trust it (env: NAME=VALUE)
    what: str
    shown: str  # what the record shows (a secret-looking env value is not copied into the trail)


def _get(doc: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def _short(value: Any, limit: int = 120) -> str:
    text = " ".join(str(value).replace(_UNKNOWN, "?").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def uris_in(text: str) -> Iterator[tuple[str, str]]:
    """(scheme, URI) of every ``scheme://...`` in ``text``: one ``find`` per occurrence and a look back of
    at most 16 characters for the scheme, so the work is linear in ``text`` (a regex search for a
    scheme at every position is not)."""
    start = 0
    while True:
        k = text.find("://", start)
        if k < 0:
            return
        j = k
        while j > 0 and k - j < 16 and text[j - 1] in _SCHEME_CHARS:
            j -= 1
        while j < k and not text[j].isalpha():  # a scheme starts with a letter
            j += 1
        end = _URI_REST.match(text, k + 3).end()
        if j < k:
            yield text[j:k], text[j:end]
        start = max(end, k + 3)


def _model_flag(flag: str) -> tuple[str, bool] | None:
    """(the model flag, exact) for ``flag`` or an abbreviation of one; None if it is not one."""
    if flag in MODEL_FLAGS:
        return flag, True
    if flag.startswith("--") and len(flag) > 2:
        for known in MODEL_FLAGS:
            if known.startswith(flag):
                return known, False
    return None


@dataclass
class _Env:
    """One container's environment as the kubelet builds it: ``envFrom`` first, then ``env`` in order."""

    values: dict[str, str] = field(default_factory=dict)  # literal (after $(VAR) expansion) or a benign placeholder
    unknown: set[str] = field(default_factory=set)  # set from a Secret, ConfigMap or author-controlled field
    prefixes: list[str] = field(default_factory=list)  # envFrom prefixes: any name under one may be set there

    def lookup(self, name: str) -> str | None:
        if name in self.values:
            return self.values[name]
        if name in self.unknown or any(name.startswith(p) for p in self.prefixes):
            return _UNKNOWN + name + _UNKNOWN
        return None

    def expand(self, text: str) -> str:
        """Kubernetes' ``$(VAR)`` expansion: a defined variable is replaced, ``$$`` is ``$``, others stay as written."""
        if "$" not in text:
            return text

        def one(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            value = self.lookup(m.group(1))
            return m.group(0) if value is None else value

        return _VAR.sub(one, text)

    def expand_shell(self, text: str) -> str:
        """A shell's ``$VAR`` / ``${VAR}`` from the same environment (undefined ones stay: judged as unknown)."""
        if "$" not in text:
            return text

        def one(m: re.Match[str]) -> str:
            value = self.lookup(m.group(1) or m.group(2))
            return m.group(0) if value is None else value

        return _SHELL_VAR.sub(one, text)


class _Collector:
    def __init__(self, trusted: TrustedStorage | None = None) -> None:
        self.refs: list[ModelRef] = []
        self.unresolved: list[Unresolved] = []
        self.credentials: list[_Credential] = []
        self.if_model: list[Unresolved] = []  # unresolved only when the object loads a model
        self.trusted = trusted or TrustedStorage()
        self.object_annotated = False  # the object carries a release or digest annotation
        self.shell_budget = MAX_SHELL_TOTAL
        self.words = 0
        self.uris_seen = 0

    def count(self) -> int:
        return len(self.refs) + len(self.unresolved)

    # ---------------------------------------------------------------- primitives
    def _bound(self, where: str) -> None:
        if len(self.refs) + len(self.unresolved) >= 4 * MAX_REFS:
            raise StoreError(f"more than {4 * MAX_REFS} model references in one object; refusing to read further", field=where)

    def uri(self, value: Any, where: str) -> None:
        if not isinstance(value, str) or not value.strip():
            raise StoreError("must be a non-empty string", field=where)
        self._bound(where)
        if _UNKNOWN in value or "$" in value:
            self.cannot(where, value, "part of it comes from a variable the webhook cannot read")
            return
        self.refs.append(ModelRef("storage_uri", value.strip(), where))

    def cannot(self, where: str, value: Any, reason: str) -> None:
        self._bound(where)
        self.unresolved.append(Unresolved(where, _short(value), reason))

    def credential(self, where: str, kind: str, name: Any, what: str, shown: str | None = None) -> None:
        name = name if isinstance(name, str) else _short(name)
        self.credentials.append(_Credential(where, kind, name, what, _short(shown if shown is not None else name)))

    def annotations(self, meta: Any, where: str) -> bool:
        """Read the model annotations of ``meta``; True when it has a release or digest annotation."""
        annotations = _get(meta, "annotations")
        if annotations is None:
            return False
        if not isinstance(annotations, dict):
            raise StoreError("annotations must be an object", field=f"{where}.annotations")
        if RELEASE_ANNOTATION in annotations:
            self.refs.append(ModelRef.parse_release(annotations[RELEASE_ANNOTATION], f"{where}.annotations[{RELEASE_ANNOTATION}]"))
        if DIGEST_ANNOTATION in annotations:
            self.refs.append(ModelRef.parse_digest(annotations[DIGEST_ANNOTATION], f"{where}.annotations[{DIGEST_ANNOTATION}]"))
        if KSERVE_SOURCE_ANNOTATION in annotations:
            self.uri(annotations[KSERVE_SOURCE_ANNOTATION], f"{where}.annotations[{KSERVE_SOURCE_ANNOTATION}]")
        return RELEASE_ANNOTATION in annotations or DIGEST_ANNOTATION in annotations

    @staticmethod
    def _list(value: Any, where: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise StoreError("must be a list", field=where)
        if len(value) > MAX_CONTAINERS:
            raise StoreError(f"{len(value)} entries; at most {MAX_CONTAINERS} are read", field=where)
        return value

    def scan(self, text: str, where: str, *, web: bool) -> None:
        """Every ``scheme://`` URI of a model scheme in ``text`` (http(s) only when ``web``)."""
        if "://" not in text:
            return
        self.uris_seen += text.count("://")
        if self.uris_seen > MAX_URIS_SEEN:
            raise StoreError(f"more than {MAX_URIS_SEEN} URIs in one object's command lines and env; refusing to read further", field=where)
        for scheme, uri in uris_in(text):
            scheme = scheme.lower()
            if scheme in MODEL_SCHEMES and (web or scheme not in WEB_SCHEMES):
                self.uri(uri, where)

    # ---------------------------------------------------------------- containers and pod specs
    def environment(self, c: dict[str, Any], where: str) -> _Env:
        env = _Env()
        for j, source in enumerate(self._list(c.get("envFrom"), f"{where}.envFrom")):
            if not isinstance(source, dict):
                continue
            prefix = source.get("prefix") or ""
            if not isinstance(prefix, str):
                raise StoreError("must be a string", field=f"{where}.envFrom[{j}].prefix")
            env.prefixes.append(prefix)
            kind, ref = ("secrets", source.get("secretRef")) if source.get("secretRef") is not None else ("configMaps", source.get("configMapRef"))
            self.credential(f"{where}.envFrom[{j}]", kind, _get(ref, "name"),
                            "envFrom sets variables the webhook cannot read (a storage endpoint, credentials or the model's URI)")
        explicit_uri = False
        for i, item in enumerate(self._list(c.get("env"), f"{where}.env")):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                continue
            name, at = item["name"], f"{where}.env[{i}]"
            explicit_uri = explicit_uri or name == STORAGE_URI_ENV
            source = item.get("valueFrom")
            if source is not None:
                self._value_from(env, name, source, at)
                continue
            value = item.get("value")
            value = env.expand(value) if isinstance(value, str) else ""
            env.values[name] = value
            env.unknown.discard(name)
            self._env_value(name, value, at)
        if not explicit_uri and any(STORAGE_URI_ENV.startswith(p) for p in env.prefixes):
            self.if_model.append(Unresolved(f"{where}.envFrom", "envFrom", f"{STORAGE_URI_ENV} may come from envFrom, which the webhook "
                                            f"does not read; give {STORAGE_URI_ENV} as an env value"))
        return env

    def _value_from(self, env: _Env, name: str, source: Any, at: str) -> None:
        kind = next(iter(source), "valueFrom") if isinstance(source, dict) and source else "valueFrom"
        path = _get(source, "fieldRef", "fieldPath")
        if kind in ("fieldRef", "resourceFieldRef") and (kind == "resourceFieldRef" or path in BENIGN_FIELDS):
            env.values[name] = f"<{path or 'resource'}>"  # the pod's own name, address or resources: never a model
            env.unknown.discard(name)
        else:
            env.values.pop(name, None)
            env.unknown.add(name)
        if name == STORAGE_URI_ENV:
            self.cannot(at, source, f"{STORAGE_URI_ENV} comes from {kind}, which the webhook does not read; give the URI as the value")
        elif name == SELDON_PARAMETERS_ENV:
            self.cannot(at, source, f"{SELDON_PARAMETERS_ENV} (the node's model_uri) comes from {kind}, which the webhook does not read")
        if CREDENTIAL_ENV.match(name):
            ref = {"secretKeyRef": "secrets", "configMapKeyRef": "configMaps"}.get(kind)
            if ref is not None:
                self.credential(at, ref, _get(source, kind, "name"), f"{name} from {kind}")
            else:
                self.credential(at, "env", f"{name}=<{kind}>", f"{name} from {kind}")

    def _env_value(self, name: str, value: str, at: str) -> None:
        if name == STORAGE_URI_ENV:
            if value.strip():
                self.uri(value, f"{at}.value")
            return
        if name == SELDON_PARAMETERS_ENV:
            self.seldon_parameters(value, f"{at}.value", from_json=True)
            return
        if CREDENTIAL_ENV.match(name):
            shown = f"{name}={value}" if _PUBLIC_ENV.search(name) else f"{name}=<{len(value)} characters>"
            self.credential(at, "env", f"{name}={value}", f"{name} sets where or as whom the model is fetched", shown)
        self.scan(value, f"{at}.value", web=bool(_MODELISH.search(name)))

    def container(self, c: Any, where: str) -> None:
        if not isinstance(c, dict):
            return
        env = self.environment(c, where)
        argv, labels = [], []
        for key in ("command", "args"):
            for i, a in enumerate(self._list(c.get(key), f"{where}.{key}")):
                if not isinstance(a, str):
                    raise StoreError("command and args must be lists of strings", field=where)
                argv.append(env.expand(a))
                labels.append(f"{where}.{key}[{i}]")
        self.argv(argv, labels, where, env, 0)

    def argv(self, argv: list[str], labels: list[str] | None, where: str, env: _Env, depth: int) -> None:
        """A command line after the kubelet's expansion: model flags, every model URI, and shell strings inside it.
        ``labels``: each word's field (None inside a shell string: then ``where`` names them all)."""
        self.words += len(argv)
        if self.words > MAX_WORDS:
            raise StoreError(f"more than {MAX_WORDS} command-line words in one object; refusing to read further", field=where)
        i = 0
        while i < len(argv):
            arg = argv[i]
            at = labels[i] if labels is not None else where
            if _UNKNOWN in arg and arg.startswith(_UNKNOWN):
                # "$(F)" from a Secret: it may be any flag, a model flag among them.
                self.cannot(at, arg, "an argument comes whole from a variable the webhook cannot read (it may be a model flag)")
            flag, eq, value = arg.partition("=")
            model = _model_flag(flag) if arg.startswith("--") else None
            if model is not None:
                known, exact = model
                if not eq:
                    if i + 1 >= len(argv):
                        i += 1
                        continue
                    value, i = argv[i + 1], i + 1
                self._flag_value(known, exact, value.strip(), f"{where}.args[{flag}]")
            elif arg.startswith("-") and not eq and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                # The value of a flag that is not about models: model schemes only (and http(s) when the flag's name is about models).
                nxt = labels[i + 1] if labels is not None else where
                self.scan(argv[i + 1], nxt, web=bool(_MODELISH.search(arg)))
                self._shell(argv[i + 1], nxt, env, depth)
                i += 2
                continue
            else:
                self.scan(arg, at, web=not (arg.startswith("-") and eq and not _MODELISH.search(flag)))
            self._shell(arg, at, env, depth)
            i += 1

    def _flag_value(self, flag: str, exact: bool, value: str, at: str) -> None:
        if "://" in value:
            for _, uri in uris_in(value):
                self.uri(uri, at)
            if _UNKNOWN in value or "$" in value:
                self.cannot(at, value, "the model comes from a variable the webhook cannot read")
        elif _UNKNOWN in value or value.startswith("$") or ("$" in value and flag in HUB_FLAGS):
            self.cannot(at, value, "the model comes from an environment variable the webhook does not expand")
        elif flag in HUB_FLAGS and value and not value.startswith(("/", ".", "$")) and (exact or _HUB_ID.match(value)):
            self.refs.append(ModelRef("storage_uri", "hf://" + value, at))  # a Hub model id, as KServe's hf:// names it
        # A local path (/mnt/models) is where a volume or the storage initializer put the model: judged there.

    def _shell(self, text: str, where: str, env: _Env, depth: int) -> None:
        """A string holding a command line (``sh -c '...'``): split as a shell would, read like argv."""
        if depth >= MAX_SHELL_DEPTH or not any(ch in text for ch in " \t\n;&|"):
            return
        text = env.expand_shell(text)
        words = None
        if len(text) <= min(MAX_SHELL_CHARS, self.shell_budget):  # shlex is slow: beyond it, whitespace only
            self.shell_budget -= len(text)
            try:
                lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|()<>")
                lexer.whitespace_split = True
                words = list(lexer)
            except ValueError:
                pass  # unbalanced quotes: the shell would refuse it; read its words all the same
        self.argv(words if words is not None else text.split(), None, where, env, depth + 1)

    def pod_spec(self, spec: Any, where: str) -> None:
        if not isinstance(spec, dict):
            return
        for key in ("initContainers", "containers", "ephemeralContainers"):
            for i, c in enumerate(self._list(spec.get(key), f"{where}.{key}")):
                self.container(c, f"{where}.{key}[{i}]")
        for i, volume in enumerate(self._list(spec.get("volumes"), f"{where}.volumes")):
            reference = _get(volume, "image", "reference")
            if reference is not None:
                # An image volume (OCI artifact) mounts the image's files: a model packaged as an image.
                if not isinstance(reference, str) or not reference.strip():
                    raise StoreError("must be a non-empty string", field=f"{where}.volumes[{i}].image.reference")
                self.refs.append(ModelRef("storage_uri", "oci://" + reference.strip(), f"{where}.volumes[{i}].image.reference"))

    # ---------------------------------------------------------------- KServe
    def kserve_block(self, block: dict[str, Any], where: str) -> None:
        """A PredictorExtensionSpec / ExplainerExtensionSpec / ModelSpec: storageUri, storage, and its inline container."""
        if block.get("storageUri") is not None:
            self.uri(block["storageUri"], f"{where}.storageUri")
        if block.get("storage") is not None:
            self.kserve_storage(block["storage"], f"{where}.storage")
        self.container(block, where)

    def kserve_storage(self, storage: Any, where: str) -> None:
        """``storage: {key, path, parameters}``: the bucket, type and endpoint live in the ``storage-config``
        Secret under ``key``; ``parameters`` override them. Only a URI the webhook can build is a reference,
        and only from a place it can judge: another parameter (``endpoint_url``...) is unresolved, a
        ``key`` is a credential (trusted only when the settings file names it)."""
        if not isinstance(storage, dict):
            raise StoreError("must be an object", field=where)
        path, params = storage.get("path"), storage.get("parameters") or {}
        if not isinstance(params, dict):
            raise StoreError("must be an object", field=f"{where}.parameters")
        extra = sorted(str(k) for k in params if k not in STORAGE_PLACE_KEYS)
        if extra:
            self.cannot(f"{where}.parameters", {k: params[k] for k in extra},
                        f"parameters {', '.join(extra)} change where (or as whom) the storage initializer fetches the model; "
                        f"only {' and '.join(STORAGE_PLACE_KEYS)} are judged")
        if storage.get("key") not in (None, ""):
            self.credential(f"{where}.key", "storageKeys", storage["key"],
                            "the storage-config Secret entry sets the endpoint and credentials the model is fetched with")
        kind, bucket = params.get("type"), params.get("bucket")
        if isinstance(path, str) and path.strip() and kind in STORAGE_TYPES and isinstance(bucket, str) and bucket.strip():
            self.refs.append(ModelRef("storage_uri", f"{kind}://{bucket.strip()}/{path.strip().lstrip('/')}", where))
            return
        what = f"key {storage.get('key')!r} path {path!r}"
        self.cannot(where, what, "the storage type and bucket are in the storage-config Secret, which the webhook does not read; "
                    f"give parameters.type ({'/'.join(STORAGE_TYPES)}) and parameters.bucket, or a storageUri")

    def kserve_component(self, comp: Any, where: str) -> None:
        if comp is None:
            return
        if not isinstance(comp, dict):
            raise StoreError("must be an object", field=where)
        before = self.count()
        annotated = self.annotations(comp, where)  # ComponentExtensionSpec.annotations
        for i, entry in enumerate(self._list(comp.get("storageUris"), f"{where}.storageUris")):
            self.uri(_get(entry, "uri"), f"{where}.storageUris[{i}].uri")
        self.pod_spec(comp, where)
        self.pod_spec(comp.get("workerSpec"), f"{where}.workerSpec")
        for key in sorted(comp):
            # Every implementation block (model, sklearn, ..., art, alibi, and any newer one of the same shape).
            if key not in ("workerSpec", "annotations", "labels") and isinstance(comp[key], dict):
                self.kserve_block(comp[key], f"{where}.{key}")
        if self.count() == before and comp.get("containers") and not annotated and not self.object_annotated:
            images = [c.get("image") for c in comp["containers"] if isinstance(c, dict)]
            self.cannot(f"{where}.containers", ", ".join(map(str, images)),
                        "a custom container that names no model serves one the webhook cannot judge; give it a storageUri, "
                        f"or annotate the component or the object with {RELEASE_ANNOTATION}")
        self._service_account(comp, where, before)

    def _service_account(self, spec: dict[str, Any], where: str, before: int) -> None:
        """A model-loading component's service account: KServe and Seldon fetch the model with its Secrets."""
        account = spec.get("serviceAccountName")
        if self.count() > before and account not in (None, "", "default"):
            self.credential(f"{where}.serviceAccountName", "serviceAccounts", account,
                            "the model is fetched with the service account's Secrets (their endpoint and credentials)")

    # ---------------------------------------------------------------- Seldon
    def seldon_parameters(self, params: Any, where: str, *, from_json: bool = False) -> None:
        """Seldon v1 ``parameters`` (a graph node's, or the ``PREDICTIVE_UNIT_PARAMETERS`` env JSON): ``model_uri``."""
        if from_json:
            if not params.strip():
                return
            if len(params) > MAX_PARAMETERS_CHARS:
                self.cannot(where, params, f"{len(params)} characters of parameters (at most {MAX_PARAMETERS_CHARS} are read)")
                return
            try:
                params = json.loads(params)
            except (ValueError, RecursionError):
                self.cannot(where, params, "the parameters are not JSON the webhook can read")
                return
        if params is None:
            return
        for i, item in enumerate(self._list(params, where)):
            if isinstance(item, dict) and item.get("name") == "model_uri":
                value = item.get("value")
                at = f"{where}[{i}].value" if not from_json else where
                if isinstance(value, str) and value.strip() and "://" not in value and not value.startswith("$"):
                    continue  # a local path (a mounted volume): judged there
                self.uri(value, at)

    def seldon_graph(self, node: Any, where: str, depth: int, served: dict[str, bool]) -> None:
        if depth > MAX_GRAPH_DEPTH:
            raise StoreError(f"inference graph nested deeper than {MAX_GRAPH_DEPTH} levels", field=where)
        if not isinstance(node, dict):
            return
        before = self.count()
        if node.get("modelUri") not in (None, ""):
            self.uri(node["modelUri"], f"{where}.modelUri")
        self.seldon_parameters(node.get("parameters"), f"{where}.parameters")
        self._seldon_fetcher(node, where)
        if (self.count() == before and node.get("type") in SELDON_MODEL_TYPES and not node.get("implementation")
                and not self.object_annotated and not served.get(node.get("name"), False)):
            self.cannot(where, node.get("name"), "a MODEL node with no modelUri serves a model baked into its container image, which "
                        f"the webhook cannot judge; give modelUri, or annotate its componentSpec or the object with {RELEASE_ANNOTATION}")
        self._service_account(node, where, before)
        for i, child in enumerate(self._list(node.get("children"), f"{where}.children")):
            self.seldon_graph(child, f"{where}.children[{i}]", depth + 1, served)

    def _seldon_fetcher(self, spec: dict[str, Any], where: str) -> None:
        """A node's or explainer's downloader settings: the rclone Secret and the initializer image."""
        if spec.get("envSecretRefName") not in (None, ""):
            self.credential(f"{where}.envSecretRefName", "secrets", spec["envSecretRefName"],
                            "the Secret's RCLONE_CONFIG_* / AWS_* variables set the endpoint the model is fetched from")
        if spec.get("storageInitializerImage") not in (None, ""):
            self.credential(f"{where}.storageInitializerImage", "initializerImages", spec["storageInitializerImage"],
                            "the image that downloads the model is chosen by the object's author")

    def seldon_deployment(self, obj: dict[str, Any]) -> None:
        predictors = self._list(_get(obj, "spec", "predictors"), "spec.predictors")
        for i, predictor in enumerate(predictors):
            where = f"spec.predictors[{i}]"
            served: dict[str, bool] = {}  # container name -> it, or its componentSpec, names its model
            for j, component in enumerate(self._list(_get(predictor, "componentSpecs"), f"{where}.componentSpecs")):
                annotated = self.annotations(_get(component, "metadata"), f"{where}.componentSpecs[{j}].metadata")
                spec = _get(component, "spec")
                if not isinstance(spec, dict):
                    continue
                self.pod_spec({k: v for k, v in spec.items() if k != "containers"}, f"{where}.componentSpecs[{j}].spec")
                for k, c in enumerate(self._list(spec.get("containers"), f"{where}.componentSpecs[{j}].spec.containers")):
                    before = self.count()
                    self.container(c, f"{where}.componentSpecs[{j}].spec.containers[{k}]")
                    if isinstance(c, dict) and isinstance(c.get("name"), str):
                        served[c["name"]] = annotated or self.count() > before
            self.seldon_graph(_get(predictor, "graph"), f"{where}.graph", 0, served)
            explainer = _get(predictor, "explainer")
            if isinstance(explainer, dict):
                if explainer.get("modelUri") not in (None, ""):
                    self.uri(explainer["modelUri"], f"{where}.explainer.modelUri")
                self._seldon_fetcher(explainer, f"{where}.explainer")
                self.container(explainer.get("containerSpec"), f"{where}.explainer.containerSpec")

    # ---------------------------------------------------------------- the object's credentials
    def settle(self) -> None:
        """When the object loads a model: every credential it is fetched with that the settings do not trust is unresolved."""
        if not (self.refs or self.unresolved):
            return
        self.unresolved.extend(self.if_model)
        for cred in self.credentials:
            if self.trusted.allows(cred.kind, cred.name):
                continue
            self.cannot(cred.source, cred.shown, f"{cred.what}; the webhook cannot judge what it fetches (trust it in the settings file: "
                        f"trustedStorageCredentials.{cred.kind})")


def find_refs(group: str, kind: str, obj: dict[str, Any] | None, trusted: TrustedStorage | None = None) -> Found:
    """Every model reference in ``obj``, de-duplicated, in document order. Raises StoreError on a malformed one.

    ``trusted``: the environment's ``trustedStorageCredentials`` (Secrets, ConfigMaps, service accounts,
    storage keys, env values and initializer images an object may fetch its model with)."""
    if obj is None:
        return Found((), "other")
    c = _Collector(trusted)
    c.object_annotated = c.annotations(_get(obj, "metadata"), "metadata")
    if (group, kind) in _POD_TEMPLATE:
        model_kind = "workload"
        path = _POD_TEMPLATE[(group, kind)]
        if kind == "CronJob":
            c.annotations(_get(obj, "spec", "jobTemplate", "metadata"), "spec.jobTemplate.metadata")
        template = ".".join(path)
        c.annotations(_get(obj, *path, "metadata"), template + ".metadata")
        c.pod_spec(_get(obj, *path, "spec"), template + ".spec")
    elif group == "" and kind == "Pod":
        model_kind = "workload"
        c.pod_spec(_get(obj, "spec"), "spec")
    elif group == KSERVE_GROUP and kind == "InferenceService":
        model_kind = "kserve"
        for comp in KSERVE_COMPONENTS:
            c.kserve_component(_get(obj, "spec", comp), f"spec.{comp}")
    elif group == KSERVE_GROUP and kind == "TrainedModel":
        model_kind = "kserve"
        for key in ("model", "predictorModel"):
            block = _get(obj, "spec", key)
            if isinstance(block, dict) and block.get("storageUri") is not None:
                c.uri(block["storageUri"], f"spec.{key}.storageUri")
    elif group == SELDON_GROUP and kind == "SeldonDeployment":
        model_kind = "seldon"
        c.seldon_deployment(obj)
    elif group == SELDON2_GROUP and kind == "Model":
        model_kind = "seldon"
        uri = _get(obj, "spec", "storageUri")
        if uri is not None:
            version = _get(obj, "spec", "artifactVersion")
            if version is not None:
                if not isinstance(version, int) or isinstance(version, bool) or version < 0:
                    raise StoreError("must be a non-negative integer", field="spec.artifactVersion")
                if not isinstance(uri, str):
                    raise StoreError("must be a non-empty string", field="spec.storageUri")
                # The server loads the version folder under the URI: that folder is the model.
                c.refs.append(ModelRef("storage_uri", f"{uri.strip().rstrip('/')}/{version}", "spec.storageUri+spec.artifactVersion"))
            else:
                c.uri(uri, "spec.storageUri")
        if _get(obj, "spec", "secretName") not in (None, ""):
            c.credential("spec.secretName", "secrets", _get(obj, "spec", "secretName"),
                         "the rclone Secret sets the endpoint and credentials the model is fetched with")
    else:
        return Found((), "other")
    c.settle()
    unique: list[ModelRef] = []
    seen: set[tuple[str, str]] = set()
    for ref in c.refs:
        key = (ref.kind, ref.value.rstrip("/") if ref.kind == "storage_uri" else ref.value)
        if key not in seen:
            seen.add(key)
            unique.append(ref)
    if len(unique) + len(c.unresolved) > MAX_REFS:
        raise StoreError(f"{len(unique) + len(c.unresolved)} model references in one object; at most {MAX_REFS} are judged")
    return Found(tuple(unique), model_kind, tuple(c.unresolved))


_IGNORED_ON_SCALE = ("status",)


def is_scale_only(review_kind: str, sub_resource: str | None, operation: str, obj: Any, old: Any) -> bool:
    """A ``scale`` subresource request, or an UPDATE that changes nothing but ``spec.replicas``."""
    if sub_resource == "scale" or review_kind == "Scale":
        return True
    if operation != "UPDATE" or not isinstance(obj, dict) or not isinstance(old, dict):
        return False

    def strip(doc: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in doc.items() if k not in _IGNORED_ON_SCALE}
        meta = out.get("metadata")
        if isinstance(meta, dict):
            out["metadata"] = {k: v for k, v in meta.items() if k not in ("resourceVersion", "generation", "managedFields")}
        spec = out.get("spec")
        if isinstance(spec, dict):
            out["spec"] = {k: v for k, v in spec.items() if k != "replicas"}
        return out

    return strip(obj) == strip(old) and _get(obj, "spec", "replicas") != _get(old, "spec", "replicas")
