"""Find the model references in an admitted object (issue #3, part 2).

- pod templates of Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job,
  CronJob, and bare Pods: annotations ``mlgate.dev/release: NAME@VERSION`` and/or
  ``mlgate.dev/model-digest: sha256:HEX`` (on the template, and on the workload itself);
- KServe ``serving.kserve.io`` InferenceService: ``spec.predictor.model.storageUri``, the legacy
  ``spec.predictor.<framework>.storageUri``, and the annotations on the object;
- Seldon ``machinelearning.seldon.io`` SeldonDeployment: ``spec.predictors[].graph.modelUri``
  and nested ``children``, and the annotations.

The object is read from ``request.object`` with ``request.kind`` (not ``requestKind``: under
``matchPolicy: Equivalent`` the object arrives converted to ``kind``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlgate.store import ModelRef, StoreError

RELEASE_ANNOTATION = "mlgate.dev/release"
DIGEST_ANNOTATION = "mlgate.dev/model-digest"
MAX_GRAPH_DEPTH = 32
MAX_REFS = 16

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
#: Kinds whose model references mlgate reads (the webhook rules name these).
KINDS = sorted({k for _, k in _POD_TEMPLATE} | {"Pod", "InferenceService", "SeldonDeployment"})


@dataclass(frozen=True)
class Found:
    refs: tuple[ModelRef, ...]
    model_kind: str  # workload | kserve | seldon | other


def _get(doc: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def _annotations(meta: Any, where: str) -> list[ModelRef]:
    annotations = _get(meta, "annotations")
    if annotations is None:
        return []
    if not isinstance(annotations, dict):
        raise StoreError("annotations must be an object", field=where)
    out = []
    if RELEASE_ANNOTATION in annotations:
        out.append(ModelRef.parse_release(annotations[RELEASE_ANNOTATION], f"{where}.annotations[{RELEASE_ANNOTATION}]"))
    if DIGEST_ANNOTATION in annotations:
        out.append(ModelRef.parse_digest(annotations[DIGEST_ANNOTATION], f"{where}.annotations[{DIGEST_ANNOTATION}]"))
    return out


def _uri(value: Any, where: str) -> ModelRef:
    if not isinstance(value, str) or not value.strip():
        raise StoreError("must be a non-empty string", field=where)
    return ModelRef("storage_uri", value.strip(), where)


def _seldon_graph(node: Any, where: str, depth: int, out: list[ModelRef]) -> None:
    if depth > MAX_GRAPH_DEPTH:
        raise StoreError(f"inference graph nested deeper than {MAX_GRAPH_DEPTH} levels", field=where)
    if not isinstance(node, dict):
        return
    if node.get("modelUri") is not None:
        out.append(_uri(node["modelUri"], f"{where}.modelUri"))
    children = node.get("children") or []
    if isinstance(children, list):
        for i, child in enumerate(children):
            _seldon_graph(child, f"{where}.children[{i}]", depth + 1, out)


def find_refs(group: str, kind: str, obj: dict[str, Any] | None) -> Found:
    """Every model reference in ``obj``, de-duplicated, in document order. Raises StoreError on a malformed one."""
    if obj is None:
        return Found((), "other")
    refs: list[ModelRef] = []
    if (group, kind) in _POD_TEMPLATE:
        model_kind = "workload"
        refs += _annotations(_get(obj, "metadata"), "metadata")
        path = _POD_TEMPLATE[(group, kind)]
        refs += _annotations(_get(obj, *path, "metadata"), ".".join(path) + ".metadata")
    elif group == "" and kind == "Pod":
        model_kind = "workload"
        refs += _annotations(_get(obj, "metadata"), "metadata")
    elif group == KSERVE_GROUP and kind == "InferenceService":
        model_kind = "kserve"
        refs += _annotations(_get(obj, "metadata"), "metadata")
        predictor = _get(obj, "spec", "predictor")
        if isinstance(predictor, dict):
            # spec.predictor.model (the current form) first, then legacy spec.predictor.<framework>.
            keys = (["model"] if "model" in predictor else []) + sorted(k for k in predictor if k != "model")
            for key in keys:
                block = predictor[key]
                if isinstance(block, dict) and block.get("storageUri") is not None:
                    refs.append(_uri(block["storageUri"], f"spec.predictor.{key}.storageUri"))
    elif group == SELDON_GROUP and kind == "SeldonDeployment":
        model_kind = "seldon"
        refs += _annotations(_get(obj, "metadata"), "metadata")
        predictors = _get(obj, "spec", "predictors") or []
        if not isinstance(predictors, list):
            raise StoreError("must be a list", field="spec.predictors")
        for i, predictor in enumerate(predictors):
            _seldon_graph(_get(predictor, "graph"), f"spec.predictors[{i}].graph", 0, refs)
    else:
        return Found((), "other")
    unique: list[ModelRef] = []
    seen: set[tuple[str, str]] = set()
    for ref in refs:
        if (ref.kind, ref.value) not in seen:
            seen.add((ref.kind, ref.value))
            unique.append(ref)
    if len(unique) > MAX_REFS:
        raise StoreError(f"{len(unique)} model references in one object; at most {MAX_REFS} are judged")
    return Found(tuple(unique), model_kind)


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
