"""AdmissionReview in and out (``admission.k8s.io/v1`` and ``v1beta1``), typed like the wire.

Parsing is at the edge (kopf's habit): :func:`parse_review` either returns a :class:`Review`
or raises :class:`WebhookError`, which the HTTP layer answers with a 400 and a JSON error.
Nothing here knows about HTTP, the gate or the store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, TypedDict

API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
OPERATIONS = ("CREATE", "UPDATE", "DELETE", "CONNECT")
#: auditAnnotations keys must be the name part of a qualified name, or the apiserver drops them.
ANNOTATION_KEY = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
MAX_WARNING_CHARS = 256  # each warning, once their total passes MAX_WARNINGS_TOTAL_RUNES
MAX_WARNINGS_TOTAL_RUNES = 4096
MAX_MESSAGE_CHARS = 1024
MAX_UID_CHARS = 256


class WebhookError(Exception):
    """The body is not an AdmissionReview we can answer: HTTP 4xx with a one-line JSON error."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = " ".join(message.split())
        self.status = status


class GroupVersionKind(TypedDict):
    group: str
    version: str
    kind: str


class StatusDict(TypedDict, total=False):
    status: str
    code: int
    reason: str
    message: str


class ResponseDict(TypedDict, total=False):
    uid: str
    allowed: bool
    status: StatusDict
    warnings: list[str]
    auditAnnotations: dict[str, str]


@dataclass(frozen=True)
class Review:
    api_version: str
    uid: str
    kind: GroupVersionKind
    resource: dict[str, Any]
    sub_resource: str | None
    name: str | None
    namespace: str | None
    operation: str
    user: str | None
    groups: tuple[str, ...]
    obj: dict[str, Any] | None
    old_obj: dict[str, Any] | None
    dry_run: bool


def _encodable(value: str, where: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise WebhookError(f"{where}: not valid Unicode (lone surrogate escape)") from None
    return value


def _opt_str(req: dict[str, Any], key: str, where: str) -> str | None:
    value = req.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise WebhookError(f"{where}.{key} must be a string, got {type(value).__name__}")
    return _encodable(value, f"{where}.{key}")


def parse_review(doc: Any) -> Review:
    """Validate the parts of an AdmissionReview the webhook relies on."""
    if not isinstance(doc, dict):
        raise WebhookError(f"expected an AdmissionReview object, got {type(doc).__name__}")
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if api_version not in API_VERSIONS:
        raise WebhookError(f"apiVersion must be one of {', '.join(API_VERSIONS)}, got {str(api_version)[:80]!r}")
    if kind != "AdmissionReview":
        raise WebhookError(f"kind must be AdmissionReview, got {str(kind)[:80]!r}")
    req = doc.get("request")
    if not isinstance(req, dict):
        raise WebhookError("request must be an object")
    uid = req.get("uid")
    if not isinstance(uid, str) or not uid or len(uid) > MAX_UID_CHARS:
        raise WebhookError("request.uid must be a non-empty string")
    _encodable(uid, "request.uid")
    gvk = req.get("kind")
    if not isinstance(gvk, dict) or not all(isinstance(gvk.get(k, ""), str) for k in ("group", "version", "kind")) or not gvk.get("kind"):
        raise WebhookError("request.kind must be an object with group, version and kind strings")
    operation = req.get("operation")
    if operation not in OPERATIONS:
        raise WebhookError(f"request.operation must be one of {', '.join(OPERATIONS)}, got {str(operation)[:40]!r}")
    obj, old = req.get("object"), req.get("oldObject")
    for name, value in (("object", obj), ("oldObject", old)):
        if value is not None and not isinstance(value, dict):
            raise WebhookError(f"request.{name} must be an object or null")
    if operation in ("CREATE", "UPDATE") and obj is None:
        raise WebhookError(f"request.object is null on {operation}")
    dry_run = req.get("dryRun", False)
    if dry_run is None:
        dry_run = False
    if not isinstance(dry_run, bool):
        raise WebhookError("request.dryRun must be a boolean")
    user_info = req.get("userInfo") or {}
    if not isinstance(user_info, dict):
        raise WebhookError("request.userInfo must be an object")
    groups = user_info.get("groups") or []
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise WebhookError("request.userInfo.groups must be a list of strings")
    resource = req.get("resource") if isinstance(req.get("resource"), dict) else {}
    return Review(
        api_version=api_version,
        uid=uid,
        kind=GroupVersionKind(group=_encodable(gvk.get("group", ""), "request.kind.group"), version=_encodable(gvk.get("version", ""), "request.kind.version"),
                              kind=_encodable(gvk["kind"], "request.kind.kind")),
        resource=resource,
        sub_resource=_opt_str(req, "subResource", "request"),
        name=_opt_str(req, "name", "request"),
        namespace=_opt_str(req, "namespace", "request"),
        operation=operation,
        user=_opt_str(user_info, "username", "request.userInfo"),
        groups=tuple(_encodable(g, "request.userInfo.groups") for g in groups),
        obj=obj,
        old_obj=old,
        dry_run=dry_run,
    )


def peek_uid_and_version(doc: Any) -> tuple[str | None, str]:
    """uid and apiVersion of a review that failed validation later (for a 500-with-uid answer)."""
    if isinstance(doc, dict) and isinstance(doc.get("request"), dict):
        uid = doc["request"].get("uid")
        version = doc.get("apiVersion") if doc.get("apiVersion") in API_VERSIONS else API_VERSIONS[0]
        return (uid if isinstance(uid, str) and uid else None), version
    return None, API_VERSIONS[0]


#: A JSON string or a structural character: enough to follow keys and nesting without building the document.
_JSON_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\]:,]')


def peek_raw_uid_and_version(body: bytes) -> tuple[str | None, str]:
    """``request.uid`` and ``apiVersion`` of a body the JSON parser refused (nested too deeply, a bad byte
    far in): one linear pass of a tokenising regex that tracks keys and nesting, never recursion, so a
    malformed review is still answered by uid and recorded. (None, v1) when they cannot be found."""
    path: list[str | None] = []  # the key each open container sits under (None: an array element or the top)
    key: str | None = None
    after_colon = False
    last: bytes | None = None
    uid, version = None, None
    for m in _JSON_TOKEN.finditer(body):
        tok = m.group()
        if tok in (b"{", b"["):
            path.append(key if after_colon else None)
            key, after_colon = None, False
        elif tok in (b"}", b"]"):
            if path:
                path.pop()
            key, after_colon = None, False
        elif tok == b":":
            key, after_colon = _json_str(last), True
        elif tok == b",":
            key, after_colon = None, False
        else:  # a string: a key (a colon follows) or a value
            if after_colon and key is not None and len(tok) <= 4 * MAX_UID_CHARS:
                if len(path) == 2 and path[1] == "request" and key == "uid" and uid is None:
                    uid = _json_str(tok)
                elif len(path) == 1 and key == "apiVersion" and version is None:
                    version = _json_str(tok)
                if uid is not None and version is not None:
                    break
            after_colon = False
            last = tok
    return uid, (version if version in API_VERSIONS else API_VERSIONS[0])


def _json_str(tok: bytes | None) -> str | None:
    import json

    if tok is None or len(tok) > 4096:
        return None
    try:
        value = json.loads(tok.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, str) else None


# ---------------------------------------------------------------------------- responses
def one_line(text: str, limit: int) -> str:
    """No control characters (the apiserver silently drops a warning holding one), bounded length."""
    clean = " ".join(_CONTROL.sub(" ", text).split())
    return clean if len(clean) <= limit else clean[: limit - 3].rstrip() + "..."


def clean_warnings(items: list[str]) -> list[str]:
    """The warnings as the apiserver will show them (k8s.io/apiserver endpoints/filters/warning.go):
    control characters out (a warning holding one is dropped), duplicates once; whole while their
    total is at most 4,096 runes, else each cut to 256 runes and no more added once the total
    reaches 4,096 (Python's str length counts runes, as Go's utf8.RuneCountInString does)."""
    out: list[str] = []
    for item in items:
        text = one_line(item, 10**9)
        if text and text not in out:
            out.append(text)
    if sum(map(len, out)) <= MAX_WARNINGS_TOTAL_RUNES:
        return out
    cut, written = [], 0
    for text in out:
        if written >= MAX_WARNINGS_TOTAL_RUNES:
            break
        text = text if len(text) <= MAX_WARNING_CHARS else text[:MAX_WARNING_CHARS - 3].rstrip() + "..."
        cut.append(text)
        written += len(text)
    return cut


def clean_annotations(items: dict[str, str]) -> dict[str, str]:
    return {k: one_line(v, 1024) for k, v in items.items() if len(k) <= 63 and ANNOTATION_KEY.match(k)}


def response(review_version: str, uid: str, *, allowed: bool, code: int | None = None, message: str | None = None,
             warnings: list[str] | None = None, audit_annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """An AdmissionReview answer in the version it was asked in. Never a patch (validating webhook)."""
    resp: ResponseDict = {"uid": uid, "allowed": allowed}
    if not allowed:
        code = code or 403
        resp["status"] = {"status": "Failure", "code": code, "reason": "Forbidden" if code == 403 else "InternalError",
                          "message": one_line(message or "denied by mlgate", MAX_MESSAGE_CHARS)}
    if warnings:
        cleaned = clean_warnings(warnings)
        if cleaned:
            resp["warnings"] = cleaned
    if audit_annotations:
        resp["auditAnnotations"] = clean_annotations(audit_annotations)
    return {"apiVersion": review_version, "kind": "AdmissionReview", "response": resp}
