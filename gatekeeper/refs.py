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

from dataclasses import dataclass
from typing import Any

from mlgate.store import ModelRef, StoreError

RELEASE_ANNOTATION = "mlgate.dev/release"
DIGEST_ANNOTATION = "mlgate.dev/model-digest"
#: Set by KServe on the pods (and raw-deployment templates) it makes: the URI its storage initializer downloads.
KSERVE_SOURCE_ANNOTATION = "internal.serving.kserve.io/storage-initializer-sourceuri"
STORAGE_URI_ENV = "STORAGE_URI"
STORAGE_INITIALIZER = "storage-initializer"
#: Command-line flags of model servers whose value is the model to load (KServe's servers take
#: ``--model_dir``; the Hugging Face and vLLM servers ``--model_id`` / ``--model``).
MODEL_FLAGS = ("--model_dir", "--model-dir", "--model_uri", "--model-uri", "--storage_uri", "--storage-uri",
               "--model_id", "--model-id", "--model")
#: Flags whose bare value (``org/name``) is a Hugging Face Hub model id, i.e. KServe's ``hf://org/name``.
HUB_FLAGS = ("--model_id", "--model-id", "--model")
#: KServe StorageSpec types whose URI the storage initializer builds as ``TYPE://BUCKET/PATH``.
STORAGE_TYPES = ("s3", "gs")
MAX_GRAPH_DEPTH = 32
MAX_REFS = 16
MAX_CONTAINERS = 64

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


def _get(doc: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def _short(value: Any, limit: int = 120) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Collector:
    def __init__(self) -> None:
        self.refs: list[ModelRef] = []
        self.unresolved: list[Unresolved] = []

    # ---------------------------------------------------------------- primitives
    def uri(self, value: Any, where: str) -> None:
        if not isinstance(value, str) or not value.strip():
            raise StoreError("must be a non-empty string", field=where)
        self.refs.append(ModelRef("storage_uri", value.strip(), where))

    def cannot(self, where: str, value: Any, reason: str) -> None:
        self.unresolved.append(Unresolved(where, _short(value), reason))

    def annotations(self, meta: Any, where: str) -> None:
        annotations = _get(meta, "annotations")
        if annotations is None:
            return
        if not isinstance(annotations, dict):
            raise StoreError("annotations must be an object", field=f"{where}.annotations")
        if RELEASE_ANNOTATION in annotations:
            self.refs.append(ModelRef.parse_release(annotations[RELEASE_ANNOTATION], f"{where}.annotations[{RELEASE_ANNOTATION}]"))
        if DIGEST_ANNOTATION in annotations:
            self.refs.append(ModelRef.parse_digest(annotations[DIGEST_ANNOTATION], f"{where}.annotations[{DIGEST_ANNOTATION}]"))
        if KSERVE_SOURCE_ANNOTATION in annotations:
            self.uri(annotations[KSERVE_SOURCE_ANNOTATION], f"{where}.annotations[{KSERVE_SOURCE_ANNOTATION}]")

    @staticmethod
    def _list(value: Any, where: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise StoreError("must be a list", field=where)
        if len(value) > MAX_CONTAINERS:
            raise StoreError(f"{len(value)} entries; at most {MAX_CONTAINERS} are read", field=where)
        return value

    # ---------------------------------------------------------------- containers and pod specs
    def container(self, c: Any, where: str, *, init: bool = False) -> None:
        if not isinstance(c, dict):
            return
        for i, env in enumerate(self._list(c.get("env"), f"{where}.env")):
            if not isinstance(env, dict) or env.get("name") != STORAGE_URI_ENV:
                continue
            at = f"{where}.env[{i}]"
            if env.get("valueFrom") is not None:
                source = next(iter(env["valueFrom"]), "valueFrom") if isinstance(env["valueFrom"], dict) else "valueFrom"
                self.cannot(at, env["valueFrom"], f"{STORAGE_URI_ENV} comes from {source}, which the webhook does not read; "
                            "give the URI as the value")
            elif isinstance(env.get("value"), str) and env["value"].strip():
                self.uri(env["value"], f"{at}.value")
        argv = [a for key in ("command", "args") for a in self._list(c.get(key), f"{where}.{key}")]
        if not all(isinstance(a, str) for a in argv):
            raise StoreError("command and args must be lists of strings", field=where)
        if init and c.get("name") == STORAGE_INITIALIZER:
            # KServe's injected downloader: ``args: [SOURCE_URI, /mnt/models]``.
            args = self._list(c.get("args"), f"{where}.args")
            if args and "://" in args[0]:
                self.uri(args[0], f"{where}.args[0]")
        self._flags(argv, where)

    def _flags(self, argv: list[str], where: str) -> None:
        for i, arg in enumerate(argv):
            flag, eq, value = arg.partition("=")
            if flag not in MODEL_FLAGS:
                continue
            if not eq:
                if i + 1 >= len(argv):
                    continue
                value = argv[i + 1]
            value = value.strip()
            at = f"{where}.args[{flag}]"
            if "://" in value:
                self.uri(value, at)
            elif flag in HUB_FLAGS and value and not value.startswith(("/", ".", "$")):
                self.refs.append(ModelRef("storage_uri", "hf://" + value, at))  # a Hub model id, as KServe's hf:// names it
            elif value.startswith("$"):
                self.cannot(at, value, "the model comes from an environment variable the webhook does not expand")
            # A local path (/mnt/models) is where a volume or the storage initializer put the model: judged there.

    def pod_spec(self, spec: Any, where: str) -> None:
        if not isinstance(spec, dict):
            return
        for key, init in (("initContainers", True), ("containers", False)):
            for i, c in enumerate(self._list(spec.get(key), f"{where}.{key}")):
                self.container(c, f"{where}.{key}[{i}]", init=init)

    # ---------------------------------------------------------------- KServe
    def kserve_block(self, block: dict[str, Any], where: str) -> None:
        """A PredictorExtensionSpec / ExplainerExtensionSpec / ModelSpec: storageUri, storage, and its inline container."""
        if block.get("storageUri") is not None:
            self.uri(block["storageUri"], f"{where}.storageUri")
        if block.get("storage") is not None:
            self.kserve_storage(block["storage"], f"{where}.storage")
        self.container(block, where)

    def kserve_storage(self, storage: Any, where: str) -> None:
        """``storage: {key, path, parameters}``: the bucket and type live in the ``storage-config``
        Secret under ``key``; ``parameters`` override them. Only a URI the webhook can build is a reference."""
        if not isinstance(storage, dict):
            raise StoreError("must be an object", field=where)
        path, params = storage.get("path"), storage.get("parameters") or {}
        if not isinstance(params, dict):
            raise StoreError("must be an object", field=f"{where}.parameters")
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
        for i, entry in enumerate(self._list(comp.get("storageUris"), f"{where}.storageUris")):
            self.uri(_get(entry, "uri"), f"{where}.storageUris[{i}].uri")
        self.pod_spec(comp, where)
        self.pod_spec(comp.get("workerSpec"), f"{where}.workerSpec")
        for key in sorted(comp):
            # Every implementation block (model, sklearn, ..., art, alibi, and any newer one of the same shape).
            if key != "workerSpec" and isinstance(comp[key], dict):
                self.kserve_block(comp[key], f"{where}.{key}")

    # ---------------------------------------------------------------- Seldon
    def seldon_graph(self, node: Any, where: str, depth: int) -> None:
        if depth > MAX_GRAPH_DEPTH:
            raise StoreError(f"inference graph nested deeper than {MAX_GRAPH_DEPTH} levels", field=where)
        if not isinstance(node, dict):
            return
        if node.get("modelUri") not in (None, ""):
            self.uri(node["modelUri"], f"{where}.modelUri")
        for i, child in enumerate(self._list(node.get("children"), f"{where}.children")):
            self.seldon_graph(child, f"{where}.children[{i}]", depth + 1)


def find_refs(group: str, kind: str, obj: dict[str, Any] | None) -> Found:
    """Every model reference in ``obj``, de-duplicated, in document order. Raises StoreError on a malformed one."""
    if obj is None:
        return Found((), "other")
    c = _Collector()
    c.annotations(_get(obj, "metadata"), "metadata")
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
        predictors = c._list(_get(obj, "spec", "predictors"), "spec.predictors")
        for i, predictor in enumerate(predictors):
            where = f"spec.predictors[{i}]"
            c.seldon_graph(_get(predictor, "graph"), f"{where}.graph", 0)
            explainer = _get(predictor, "explainer")
            if isinstance(explainer, dict):
                if explainer.get("modelUri") not in (None, ""):
                    c.uri(explainer["modelUri"], f"{where}.explainer.modelUri")
                c.container(explainer.get("containerSpec"), f"{where}.explainer.containerSpec")
            for j, component in enumerate(c._list(_get(predictor, "componentSpecs"), f"{where}.componentSpecs")):
                c.annotations(_get(component, "metadata"), f"{where}.componentSpecs[{j}].metadata")
                c.pod_spec(_get(component, "spec"), f"{where}.componentSpecs[{j}].spec")
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
    else:
        return Found((), "other")
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
