"""The audit record ``mlgate.dev/audit/v1``: content, sealing, and what every backend shares.

A record is one object of canonical JSON (sorted keys, no spaces, UTF-8). :func:`seal` adds
``apiVersion``, ``sequence`` (from 1, no gaps), ``prev_hash`` (the previous record's ``hash``;
64 zeros for the first) and ``hash`` = sha256 of the canonical JSON of the record without
``hash``. Editing, deleting or reordering a record breaks the chain (``mlgate audit verify``).

Fields (design.md section 8, after OPA's decision log): decision_id, sequence, timestamp (UTC,
the injected clock's), actor, action (``promote`` for ``mlgate check``, ``monitor``, the admission operation
``CREATE``/``UPDATE``/... for the webhook, ``recheck`` for ``mlgate recheck``), source (``cli``, ``admission``,
``recheck``), namespace, dry_run, release {name, version,
owner}, subject_digest (the model digest), environment, policy_revision (sha256 over every input
to the decision but the release: the policy's files, each data override, the trust policy used and
every file it names, the settings file ``.mlgate.yaml``, the engine and its version;
:func:`mlgate.gate.prepare`), trust_policy ``{path, digest, files, from}`` (the trust policy used:
its sha256, the sha256 of each key/CA/trusted-root file it names, and whether ``--trust``, the
settings file or the policy named it), revision_inputs (everything the revision digests:
``policy {path, revision}``, ``data_overrides [{path, digest}]``, ``trust_policy``, ``settings
{path, digest}`` or null, ``engine {name, version[, bundle_revision]}``; trust_policy and
revision_inputs are null on a decision made without a policy, and absent from records written
before they were added), policy_git (the commit of the policy directory when
it is a git checkout), engine and engine_version, mlgate_version, input_digest, the input
document (``--audit-input store``, the default: ``input`` holds its small per-decision part and
``input_facts`` the sha256 of each collected fact, stored content-addressed in the evidence
store once however many decisions read it; :func:`store_input`, :func:`load_input`) or
``erased: ["/input"]`` (OPA's erased idea), evidence_digests
(every file read, by sha256) and evidence_retained, result, violations and warnings (ids and
messages; a violation a signed waiver covers is a warning with its ``waiver``), ``waivers`` (when
the release carries any: each with signer, rules, expiry, applied or the reason not), error,
prev_hash, hash. Secrets and signatures are never stored: the record holds
digests, and the input document holds verified facts only (design.md section 5).

Every value is made JSON-safe before sealing (:func:`mlgate.canonical.record_json`), so a record
naming hostile input can always be written:

* a date or datetime (YAML reads ``trained_on: 2026-11-01`` as a date) is an RFC 3339 string,
  ``"2026-11-01"`` or ``"2026-11-01T09:00:00Z"`` (UTC; a zoneless YAML timestamp is UTC);
* a lone surrogate (``owner: "x\\uD800"``: no UTF-8 form) is written as the six characters
  ``\\ud800`` (Python's ``backslashreplace``): valid UTF-8 that every JSON parser (orjson,
  PostgreSQL) reads back, and that re-serialises to the same bytes, so the hash verifies.
  The escape is visible, not silent; a string that held the literal text ``\\ud800`` reads the
  same (an accepted ambiguity: the gate already refused such an input, see below);
* a non-finite number (NaN, Infinity) never gets this far: the input document refuses it
  earlier (the decision is an ``error`` naming the field), and ``--timeout nan`` is a usage error.

The input document stays strict: a lone surrogate or non-finite number in it is an ``error``
decision (the policy never evaluates it), recorded with the escaped values. A record that still
cannot be sealed (a value of a type JSON has none for) fails alone with :class:`UnsealableRecord`,
never the other records of its group commit; the gate then records a reduced ``error`` record
(ids and digests, the reason, none of the release's values).

Other record kinds share the chain: ``"kind": "repair"`` (``mlgate audit repair``: a torn last
line moved aside; names the quarantine file and its sha256) and ``"kind": "recover-head"``
(``mlgate audit recover-head``: the head rebuilt after a full verify). A record without
``kind`` is a decision.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

from mlgate.canonical import NotCanonical, record_json, sha256_hex
from mlgate.errors import AuditError

RECORD_VERSION = "mlgate.dev/audit/v1"
GENESIS_HASH = "0" * 64
INPUT_MODES = ("erase", "store")


@dataclass(frozen=True)
class AuditReceipt:
    location: str
    sequence: int
    hash: str


class AuditSink(Protocol):
    def append(self, record: dict[str, Any]) -> AuditReceipt:
        """Chain and durably store ``record``; raise AuditError if it cannot."""
        ...


class DecisionRecord(dict):
    """The record (a plain dict on the wire) that still knows the Decision it was built from.

    Sinks need more than the record for two options: evidence retention (which files, where the
    release lies) and storing the input document. Both are taken from ``.decision``; nothing
    of it is written unless an option asks for it."""

    decision: Any = None
    request: Any = None


def decision_record(decision: Any, request: Any) -> DecisionRecord:
    """The audit record of one decision (design.md section 8), before chaining.

    Digests only: no keys, no signatures, no evidence contents."""
    from mlgate import __version__
    from mlgate.clock import rfc3339

    record = DecisionRecord(
        decision_id=decision.decision_id,
        timestamp=rfc3339(decision.evaluated_at),
        actor=request.user,
        action=request.operation,
        source=request.source,
        namespace=request.namespace,
        dry_run=request.dry_run,
        release=decision.release,
        subject_digest=decision.model_digest,
        environment=decision.environment,
        policy_revision=decision.policy_revision,
        policy_git=None,
        # What the policy revision digests, so an auditor sees --trust/--policy/--data and the settings file at work.
        trust_policy=(getattr(decision, "revision_inputs", None) or {}).get("trust_policy"),
        revision_inputs=getattr(decision, "revision_inputs", None),
        engine=decision.engine,
        engine_version=decision.engine_version,
        **({"engine_decision_id": decision.engine_decision_id} if getattr(decision, "engine_decision_id", None) else {}),  # OPA's decision_id
        mlgate_version=__version__,
        input_digest=decision.input_digest,
        erased=["/input"],
        evidence_digests=dict(decision.evidence_digests),
        evidence_retained=False,
        result=decision.result,
        violations=[{"id": v.id, "message": v.message} for v in decision.violations],
        warnings=[{"id": w.id, "message": w.message, **({"waiver": dict(w.waiver)} if getattr(w, "waiver", None) else {})}
                  for w in decision.warnings],
        error=decision.error,
        exempt=getattr(decision, "exempt", None),
        admission=None if getattr(request, "mode", None) is None else {  # the webhook's mode, and whether it let a deny through
            "mode": request.mode, "deny_admitted": decision.result != "allow" and request.mode != "enforce", "actor_groups": list(request.groups)},
    )
    if getattr(decision, "waivers", ()):  # every waiver the release carried: who, until when, applied or why not
        record["waivers"] = [dict(w) for w in decision.waivers]
    relied = (getattr(decision, "static", None) or {}).get("summary")
    if relied:  # the signed verification summary whose time-independent findings this decision took (webhook acceptSummaries)
        record["summary"] = dict(relied)
    record.decision, record.request = decision, request
    return record


class UnsealableRecord(AuditError):
    """This one record has no canonical JSON form; the sink is fine, the other records of its
    batch are written."""


def seal(record: dict[str, Any], *, sequence: int, prev_hash: str) -> dict[str, Any]:
    """The sealed record (the JSON-safe copy of ``record`` with apiVersion, sequence, prev_hash,
    hash). Raises :class:`UnsealableRecord` when it cannot be made JSON-safe."""
    body = {k: v for k, v in record.items() if k != "hash"}
    body.update(apiVersion=RECORD_VERSION, sequence=sequence, prev_hash=prev_hash)
    try:
        data = record_json(body)
    except NotCanonical as exc:
        raise UnsealableRecord(f"the decision record cannot be sealed: {exc}", field="record") from None
    body["hash"] = sha256_hex(data)  # sinks write record_json(body): the same JSON-safe bytes, with the hash
    return body


def seal_batch(records: Sequence[dict[str, Any]], *, sequence: int, prev_hash: str
               ) -> tuple[list[dict[str, Any] | UnsealableRecord], int, str]:
    """Seal ``records`` in order, extending the chain from (sequence, prev_hash). A record that
    cannot be sealed takes no sequence number: its place in the list holds the error, and the
    next record follows the last sealed one. Returns (sealed or error per record, last sequence,
    last hash)."""
    out: list[dict[str, Any] | UnsealableRecord] = []
    for record in records:
        try:
            sealed = seal(record, sequence=sequence + 1, prev_hash=prev_hash)
        except UnsealableRecord as exc:
            out.append(exc)
            continue
        sequence, prev_hash = sequence + 1, sealed["hash"]
        out.append(sealed)
    return out, sequence, prev_hash


@dataclass(frozen=True)
class AuditOptions:
    """What a sink adds to each record before sealing it (the front door sets these).

    ``policy_dir``: the policy directory the gate evaluated (None: the bundled one), for the
    git commit. ``input_mode``: ``erase`` (this class's default, for hand-made
    and tool records) records only the input digest; ``store`` (what ``mlgate check`` and
    ``mlgate serve`` pass by default) keeps the input document for replay (:func:`store_input`). ``retain_evidence``: keep a content-addressed
    copy of every file the decision read (21 CFR 11.10(b))."""

    policy_dir: Path | None = None
    input_mode: str = "erase"
    retain_evidence: bool = False


_GIT_CACHE: dict[Any, dict[str, Any] | None] = {}  # by the directory as given and by its real path


def policy_git(policy_dir: Path | None) -> dict[str, Any] | None:
    """``{"commit", "dirty", "path"}`` of the policy directory when it is inside a git checkout.

    Informational next to the authoritative ``policy_revision`` digest: it says where the
    policy came from; ``dirty`` means the directory differs from that commit. None when the
    directory is not in a checkout or git is not installed."""
    if policy_dir in _GIT_CACHE:  # looked up once per directory and process (the webhook asks on every record)
        return _GIT_CACHE[policy_dir]
    if policy_dir is None:
        from mlgate.policy import bundled_policy_dir

        info = policy_git(bundled_policy_dir())
        _GIT_CACHE[None] = info
        return info
    key = os.path.realpath(policy_dir)
    if key in _GIT_CACHE:
        _GIT_CACHE[policy_dir] = _GIT_CACHE[key]
        return _GIT_CACHE[key]
    info = _git_status(key)
    _GIT_CACHE[key] = _GIT_CACHE[policy_dir] = info
    return info


#: git answers in milliseconds; a repository that takes longer (a network file system) records no git facts.
_GIT_TIMEOUT_S = 10.0


def _git_status(directory: str) -> dict[str, Any] | None:
    """``{"commit", "dirty", "path"}`` from ONE ``git status --porcelain=v2 --branch`` of the
    directory: ``# branch.oid`` is the HEAD commit (``(initial)`` when there is none yet), and
    any entry line, untracked files included, means the directory differs from it (what
    GitPython's ``is_dirty(untracked_files=True, path=...)`` answered, with its import and its
    several git processes). The work tree is found by looking for ``.git`` upwards first, so a
    directory outside any checkout (an installed package) costs no process at all."""
    import subprocess

    top = Path(directory)
    while not (top / ".git").exists():
        if top.parent == top:
            return None
        top = top.parent
    try:
        run = subprocess.run(["git", "-C", directory, "status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all", "--", "."],
                             stdin=subprocess.DEVNULL, capture_output=True, timeout=_GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):  # no git binary, a timeout: no git facts
        return None
    if run.returncode != 0:  # not a work tree after all, a repository git refuses (safe.directory): no git facts
        return None
    commit, dirty = None, False
    for item in run.stdout.split(b"\0"):
        if item.startswith(b"# branch.oid "):
            commit = item[len(b"# branch.oid "):].decode("ascii", "replace")
        elif item and not item.startswith(b"# "):
            dirty = True
    if commit is None or not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", commit):  # "(initial)": no commit yet
        return None
    return {"commit": commit, "dirty": dirty, "path": Path(os.path.relpath(directory, top)).as_posix()}


def prepare(record: dict[str, Any], options: AuditOptions, store: Any | None) -> dict[str, Any]:
    """Apply the sink's options to a record (both backends): policy git commit, the input
    document (stored or erased) and evidence retention into ``store``. Raises AuditError when
    an option cannot be honoured: the decision then fails closed."""
    out = dict(record)
    decision = getattr(record, "decision", None)
    if decision is None:  # a hand-made record (tests, tools): sealed as given
        return out
    out["policy_git"] = policy_git(options.policy_dir) if decision.policy_revision else None
    if options.retain_evidence:
        if store is None:  # pragma: no cover - sinks always pass their store
            raise AuditError("evidence retention was asked for but this audit backend has no evidence store")
        retain(decision, store)
        out["evidence_retained"] = True
    if options.input_mode == "store" and decision.input_digest:
        if store is None:  # pragma: no cover - sinks always pass their store
            raise AuditError("storing the input document was asked for but this audit backend has no evidence store")
        out["input"], out["input_facts"] = store_input(_input_document(decision), store, getattr(decision, "input_blobs", None))
        out["erased"] = []
    return out


def _input_document(decision: Any) -> dict[str, Any]:
    """The input document the policy saw, as the gate kept it on the Decision."""
    doc = getattr(decision, "input_document", None)
    if doc is None:
        # An error before evaluation (no release, no policy): there was no input document.
        raise AuditError("cannot store the input document: the decision was made without one", field="input")
    return doc


#: The input document's keys stored apart from the record, content-addressed: the collected facts
#: (about 90% of the document's bytes), the same for every decision about the same release
#: (mlgate.inputdoc.FACT_KEYS; the audit package does not import the input document).
INPUT_FACT_KEYS = ("datasets", "evidence", "evidence_files", "model")


def store_input(doc: dict[str, Any], store: Any, blobs: dict[str, bytes] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """Store the input document for replay: (what the record keeps inline, ``input_facts``).

    Each of :data:`INPUT_FACT_KEYS` is written to the evidence store once, as its canonical JSON
    under its sha256 (``blobs`` holds those bytes when the gate already serialised them); the
    record keeps the rest of the document (time, request, release: a few hundred bytes) and the
    digest of each part. The same facts decided again cost a lookup and no bytes."""
    from mlgate.canonical import canonical_json

    inline: dict[str, Any] = {}
    refs: dict[str, str] = {}
    for key, value in doc.items():
        if key not in INPUT_FACT_KEYS:
            inline[key] = value
            continue
        blob = (blobs or {}).get(key)
        if blob is None:
            blob = canonical_json(value)
        digest = _blob_digest(blob)
        store.put_bytes(digest, blob, f"input document {key}")
        refs[key] = digest
    return inline, refs


_DIGESTS: dict[int, tuple[bytes, str]] = {}  # id(blob) -> (blob, sha256): the gate hands the same cached bytes for every decision about one release


def _blob_digest(blob: bytes) -> str:
    import hashlib

    known = _DIGESTS.get(id(blob))
    if known is not None and known[0] is blob:
        return known[1]
    digest = hashlib.sha256(blob).hexdigest()
    if len(_DIGESTS) >= 256:
        _DIGESTS.clear()
    _DIGESTS[id(blob)] = (blob, digest)
    return digest


class InputNotStored(AuditError):
    """The record holds no input document to replay (erased, or a decision made without one)."""


def load_input(record: dict[str, Any], store: Any) -> dict[str, Any]:
    """The input document a recorded decision was evaluated on, rebuilt from the record and the
    evidence store and checked against the recorded ``input_digest``. Raises
    :class:`InputNotStored` when it was not kept, AuditError when a stored part is missing or
    does not have its digest (the store was changed)."""
    import hashlib
    import json

    from mlgate.canonical import digest_json

    where = f"decision {record.get('decision_id')} (sequence {record.get('sequence')})"
    inline = record.get("input")
    if not isinstance(inline, dict) or not record.get("input_digest"):
        erased = "/input" in (record.get("erased") or [])
        reason = "its input document was erased (--audit-input erase)" if erased else "it was made without an input document"
        raise InputNotStored(f"{where} is not replayable: {reason}", field="input")
    refs = record.get("input_facts") or {}
    if not isinstance(refs, dict):
        raise AuditError(f"{where}: input_facts must be an object", field="input_facts")
    doc = dict(inline)
    for key, digest in sorted(refs.items()):
        if key not in INPUT_FACT_KEYS or not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise AuditError(f"{where}: input_facts.{key} is not a stored fact of the input document", field=f"input_facts.{key}")
        data = store.read(digest) if store is not None else None
        if data is None:
            raise AuditError(f"{where}: the stored input document part {key} (sha256 {digest}) is missing from the evidence store",
                             field=f"input_facts.{key}")
        if hashlib.sha256(data).hexdigest() != digest:
            raise AuditError(f"{where}: the stored input document part {key} does not have its sha256 {digest} (the store was changed)",
                             field=f"input_facts.{key}")
        try:
            doc[key] = json.loads(data)
        except ValueError:
            raise AuditError(f"{where}: the stored input document part {key} is not JSON", field=f"input_facts.{key}") from None
    try:
        actual = digest_json(doc)
    except (TypeError, ValueError):
        actual = None
    if actual != record["input_digest"]:
        raise AuditError(f"{where}: the stored input document does not have the recorded input_digest {record['input_digest']}",
                         field="input_digest")
    return doc


def retain(decision: Any, store: Any) -> None:
    """Copy every file the decision read into the content-addressed store, checking that its
    bytes still have the digest the decision recorded."""
    if not decision.evidence_digests:
        return
    if not decision.manifest_path:
        raise AuditError("cannot retain evidence: the decision does not say where the release lies", field="evidence_digests")
    root = Path(decision.manifest_path).parent.resolve()
    for rel, digest in sorted(decision.evidence_digests.items()):
        path = (root / rel).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise AuditError(f"cannot retain evidence {rel}: not a file inside the release {root}", field="evidence_digests")
        store.put(digest, path, rel)
