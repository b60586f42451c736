"""Signed checkpoints of the audit trail (issue #4 part 5): a whole rewritten chain is detectable.

A hash chain proves that no record was edited, deleted or reordered *relative to the others*;
it cannot prove that the chain is the one that was written: someone who can write the log may
recompute every hash from an edited record onwards (and the head file or head row with them),
and the rewritten chain verifies. A checkpoint closes that gap. ``mlgate audit checkpoint
--key KEY`` verifies the chain, then signs its head: an in-toto Statement v1 in a DSSE envelope
in a Sigstore bundle (:mod:`mlgate.signing.attestation`, the same container as approvals)::

    subject:  [{name: mlgate-audit-head, digest: {sha256: <hash of record N>}}]
    predicateType: https://mlgate.dev/attestation/audit-checkpoint/v1
    predicate: {trail: <location>, sequence: N, hash: <hash of record N>,
                time: <the injected clock, RFC 3339 UTC>, mlgate_version: ...}

stored beside the trail: ``PATH.checkpoints/<sequence>-<time>-<key id>.sigstore.json`` for a file
log, the append-only table ``mlgate_audit_checkpoints`` for PostgreSQL. Copies held elsewhere
(sent to a reviewer, a WORM bucket) are checked with ``mlgate audit verify --checkpoint FILE``:
deleting the stored checkpoints hides nothing from whoever holds a copy.

``mlgate audit verify`` checks every checkpoint: the signature against the trust policy's
checkpoint signers, the statement, and then the claim: record N of the trail must have exactly
the signed hash. A chain that verifies internally but contradicts a signed checkpoint was
rewritten; a trail shorter than a checkpoint's sequence was cut (and its head rewritten).

Who may sign checkpoints: ``checkpointSigners`` in the trust policy, read by
:func:`mlgate.signing.trust.parse_trust_policy` with the rest of the file (schema, key files, validity
windows and revocation; one key, one identity)::

    checkpointSigners:
      - id: audit-checkpointer@hospital.example
        name: Audit checkpoint service
        keys: [{path: keys/checkpointer.pub}]      # or {pem: ...}; optional keyId
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from mlgate.errors import AuditError, InputError, MlgateError

PREDICATE_TYPE = "https://mlgate.dev/attestation/audit-checkpoint/v1"
SUBJECT_NAME = "mlgate-audit-head"
CHECKPOINTS_TABLE = "mlgate_audit_checkpoints"
_PREDICATE_FIELDS = {"trail": str, "sequence": int, "hash": str, "time": str, "mlgate_version": str}
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class CheckpointRefused(AuditError):
    """The trail is not in a state that may be signed (not intact, contradicts a checkpoint)."""


# --------------------------------------------------------------------------- trust
@dataclass(frozen=True)
class CheckpointSigner:
    id: str
    name: str
    key_ids: tuple[str, ...]


@dataclass(frozen=True)
class CheckpointTrust:
    source: str
    signers: tuple[CheckpointSigner, ...]
    keys: dict[str, Any] = field(compare=False, repr=False)  # key id -> public key
    validity: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # key id -> mlgate.signing.trust.Validity
    authorities: tuple[Any, ...] = field(default=(), compare=False, repr=False)  # timestampAuthorities (mlgate.signing.trust.TimestampAuthority)

    def signer_for_key(self, kid: str) -> CheckpointSigner | None:
        return next((s for s in self.signers if kid in s.key_ids), None)


def load_checkpoint_trust(path: Path) -> CheckpointTrust:
    """Read ``checkpointSigners`` from a trust policy file (see the module docstring)."""
    return load_trust_with_checkpoints(path)[1]


def load_trust_with_checkpoints(path: Path):
    """(the :class:`mlgate.signing.trust.TrustPolicy`, its :class:`CheckpointTrust`) of one trust file."""
    from mlgate.safeio import display, read_bytes

    name = display(path)
    data = read_bytes(Path(path))
    return parse_trust_with_checkpoints(data, name, base_dir=Path(path).resolve().parent)


def parse_checkpoint_trust(data: bytes, name: str, *, base_dir: Path) -> CheckpointTrust:
    return parse_trust_with_checkpoints(data, name, base_dir=base_dir)[1]


def parse_trust_with_checkpoints(data: bytes, name: str, *, base_dir: Path):
    from mlgate.signing.trust import parse_trust_policy

    policy = parse_trust_policy(data, name, base_dir=base_dir)
    signers = tuple(CheckpointSigner(id=s.id, name=s.name, key_ids=tuple(k.key_id for k in s.keys)) for s in policy.checkpoint_signers)
    keys = {k.key_id: k.public_key for s in policy.checkpoint_signers for k in s.keys}
    validity = {k.key_id: getattr(k, "validity", None) for s in policy.checkpoint_signers for k in s.keys}
    return policy, CheckpointTrust(source=name, signers=signers, keys=keys, validity=validity, authorities=tuple(policy.timestamp_authorities))


# --------------------------------------------------------------------------- stores
@dataclass(frozen=True)
class StoredCheckpoint:
    where: str  # a file path, or "checkpoint row N", or the --checkpoint file as given
    data: bytes
    anchor: str | None = None  # the anchor sink it was read from (file:DIR, postgresql://...), if any
    anchored_at: str | None = None  # the anchor sink's own time for it (PostgreSQL: the server's clock), if it keeps one


def checkpoint_dir(log: Path) -> Path:
    return Path(log).with_name(Path(log).name + ".checkpoints")


_NAME = re.compile(r"^(\d{12})-(\d{8}T\d{12}Z)-[0-9a-zA-Z]+\.sigstore\.json$")


class DirCheckpointStore:
    """A directory of checkpoint bundles, one per file, never overwritten: ``PATH.checkpoints/``
    beside a file trail, or an anchor directory (``--checkpoint-anchor file:DIR``)."""

    def __init__(self, directory: Path, anchor: str | None = None):
        self.dir = Path(directory)
        self.anchor = anchor

    def latest(self) -> tuple[int, dt.datetime] | None:
        """(sequence, signing time) of the newest checkpoint by its file name (cheap: no bundle is
        read; used only to decide when the next one is due, never to verify anything)."""
        try:
            names = [m for m in map(_NAME.match, (p.name for p in self.dir.iterdir())) if m]
        except OSError:
            return None
        if not names:
            return None
        best = max(names, key=lambda m: (int(m.group(1)), m.group(2)))
        when = dt.datetime.strptime(best.group(2), "%Y%m%dT%H%M%S%fZ").replace(tzinfo=dt.timezone.utc)
        return int(best.group(1)), when

    def list(self) -> list[StoredCheckpoint]:
        from mlgate.signing.attestation import MAX_BUNDLE_BYTES
        from mlgate.safeio import read_bytes

        try:
            names = sorted(p.name for p in self.dir.iterdir())
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise AuditError(f"cannot list the checkpoints: {exc.strerror or exc}", file=str(self.dir)) from None
        out = []
        for n in names:
            if n.startswith("."):  # a write in progress
                continue
            try:
                out.append(StoredCheckpoint(str(self.dir / n), read_bytes(self.dir / n, limit=MAX_BUNDLE_BYTES), anchor=self.anchor))
            except InputError as exc:
                raise AuditError(f"cannot read the checkpoint: {exc.message}", file=str(self.dir / n)) from None
        return out

    def put(self, data: bytes, *, sequence: int, time: dt.datetime, key_id: str) -> str:
        stamp = time.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        target = self.dir / f"{sequence:012d}-{stamp}-{key_id[:16]}.sigstore.json"
        tmp = self.dir / f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, target)  # never replaces an existing checkpoint
            except FileExistsError:
                if target.read_bytes() != data:
                    raise AuditError("a different checkpoint with this name exists already; refusing to overwrite it", file=str(target)) from None
            fd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise AuditError(f"cannot write the checkpoint: {exc.strerror or exc}", file=str(target)) from None
        finally:
            try:
                tmp.unlink()
            except OSError:
                pass
        return str(target)


class FileCheckpointStore(DirCheckpointStore):
    """``PATH.checkpoints/`` beside a file trail."""

    def __init__(self, log: Path):
        super().__init__(checkpoint_dir(log))


class PostgresCheckpointStore:
    """The append-only table ``mlgate_audit_checkpoints`` beside the records (same triggers)."""

    def __init__(self, sink: Any):
        self.sink = sink  # a mlgate.audit.postgres.PostgresAuditSink (its pool, its schema)
        self._ready = False

    def _ensure(self) -> None:
        if self._ready:
            return
        # The trail's schema (mlgate.audit.postgres, or `mlgate audit init-db`) includes the
        # append-only checkpoints table with its triggers: reading the head makes sure it exists.
        self.sink.head()
        self._ready = True

    def list(self) -> list[StoredCheckpoint]:
        self._ensure()
        rows = self.sink._query(f"SELECT id, bundle FROM {CHECKPOINTS_TABLE} ORDER BY id", (), what="read the checkpoints")
        return [StoredCheckpoint(f"checkpoint row {int(i)}", str(b).encode("utf-8")) for i, b in rows]

    def put(self, data: bytes, *, sequence: int, time: dt.datetime, key_id: str) -> str:
        from mlgate.clock import rfc3339

        self._ensure()
        rows = self.sink._query(
            f"INSERT INTO {CHECKPOINTS_TABLE} (sequence, hash, signed_at, key_id, bundle) VALUES (%s, %s, %s, %s, %s) "
            f"ON CONFLICT (bundle) DO NOTHING RETURNING id",
            (sequence, _claims(data)["hash"], rfc3339(time), key_id, data.decode("ascii")), what="write the checkpoint")
        if not rows:  # the identical bundle is stored already
            rows = self.sink._query(f"SELECT id FROM {CHECKPOINTS_TABLE} WHERE bundle = %s", (data.decode("ascii"),), what="read the checkpoints")
        return f"{self.sink.location} checkpoint row {int(rows[0][0])}"

    def latest(self) -> tuple[int, dt.datetime] | None:
        from mlgate.clock import parse_time

        self._ensure()
        rows = self.sink._query(f"SELECT sequence, signed_at FROM {CHECKPOINTS_TABLE} ORDER BY sequence DESC, id DESC LIMIT 1", (),
                                what="read the checkpoints")
        return (int(rows[0][0]), parse_time(str(rows[0][1]))) if rows else None


def checkpoint_store(trail: Any):
    """The checkpoint store beside an open trail (:func:`mlgate.audit.verify.open_trail`)."""
    if trail.kind == "file":
        return FileCheckpointStore(trail.path)
    return PostgresCheckpointStore(trail.sink)


def anchor_store(url: str, *, field: str = "--anchor") -> DirCheckpointStore:
    """The anchor sink named by ``url``: ``file:DIR`` (or ``file:///abs/dir``), a directory the
    trail's writer can add files to but that lives elsewhere (another volume, another host's
    mount, a WORM bucket's mount). Copies there survive a deleted ``PATH.checkpoints/``."""
    text = (url or "").strip()
    if text.startswith("file://"):
        rest = text[len("file://"):]
        if not rest.startswith("/"):
            raise InputError("file URLs with a host are not supported (use file:DIR or file:///abs/dir)", field=field)
    elif text.startswith("file:"):
        rest = text[len("file:"):]
    else:
        raise InputError(f"not an anchor URL: {text!r} (expected file:DIR)", field=field)
    if not rest:
        raise InputError("no directory in the anchor URL", field=field)
    return DirCheckpointStore(Path(rest), anchor=f"file:{rest}")


_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_age(text: str, *, field: str = "--require-anchor") -> dt.timedelta:
    """``90s``, ``30m``, ``24h``, ``7d`` as a timedelta (positive, finite); InputError otherwise."""
    m = _AGE.match(str(text))
    if m is None:
        raise InputError(f"expected a duration such as 30m, 24h or 7d, got {text!r}", field=field)
    seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if not 0 < seconds <= 3650 * 86400:
        raise InputError(f"expected a duration from 1s to 3650d, got {text!r}", field=field)
    return dt.timedelta(seconds=seconds)


# --------------------------------------------------------------------------- reading a checkpoint
def _claims(data: bytes) -> dict[str, Any]:
    """The predicate of a bundle WITHOUT verifying it (to refuse signing a contradicted chain)."""
    from mlgate.signing.attestation import parse_bundle

    try:
        bundle = parse_bundle(data, "<checkpoint>")
        statement = json.loads(bundle.payload)
        pred = statement.get("predicate") if isinstance(statement, dict) else None
        return pred if isinstance(pred, dict) else {}
    except (MlgateError, ValueError):
        return {}


def check_statement(statement: dict[str, Any], name: str) -> dict[str, Any]:
    """The checkpoint predicate of a verified statement, or InputError naming the field."""
    if statement.get("predicateType") != PREDICATE_TYPE:
        raise InputError(f"got {statement.get('predicateType')!r}, expected {PREDICATE_TYPE!r}", file=name, field="dsseEnvelope.payload.predicateType")
    pred = statement.get("predicate")
    if not isinstance(pred, dict):
        raise InputError("missing predicate", file=name, field="dsseEnvelope.payload.predicate")
    for key in pred:
        if key not in _PREDICATE_FIELDS:
            raise InputError(f"unexpected field {key!r}", file=name, field=f"dsseEnvelope.payload.predicate.{key}")
    for key, kind in _PREDICATE_FIELDS.items():
        if type(pred.get(key)) is not kind:
            raise InputError(f"expected {'an integer' if kind is int else 'a string'}", file=name, field=f"dsseEnvelope.payload.predicate.{key}")
    if pred["sequence"] < 1:
        raise InputError("a checkpoint's sequence starts at 1", file=name, field="dsseEnvelope.payload.predicate.sequence")
    if not _HEX64.match(pred["hash"]):
        raise InputError("expected 64 lowercase hex digits", file=name, field="dsseEnvelope.payload.predicate.hash")
    from mlgate.clock import parse_time

    try:
        parse_time(pred["time"])
    except (ValueError, OverflowError):
        raise InputError(f"not an RFC 3339 time with a timezone: {pred['time']!r}", file=name, field="dsseEnvelope.payload.predicate.time") from None
    subjects = statement["subject"]
    if subjects != [{"name": SUBJECT_NAME, "digest": {"sha256": pred["hash"]}}]:
        raise InputError(f"the subject must be exactly [{SUBJECT_NAME} with sha256 = predicate.hash]", file=name, field="dsseEnvelope.payload.subject")
    return pred


@dataclass
class CheckpointResult:
    where: str
    status: str  # ok | contradicted | beyond | invalid | untrusted | unchecked
    reason: str | None = None
    sequence: int | None = None
    hash: str | None = None
    time: str | None = None
    signer_id: str | None = None
    signer_name: str | None = None
    key_id: str | None = None
    found: str | None = None  # the trail's hash at that sequence, when it differs
    anchors: list[str] = field(default_factory=list)  # "tsa:<id>" (a verified RFC 3161 timestamp), the anchor sinks holding a copy
    anchored_at: str | None = None  # the earliest time an anchor proves (the TSA's; else the anchor copy's signed time)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("where", "status", "reason", "sequence", "hash", "time", "signer_id", "signer_name", "key_id", "found",
                                              "anchors", "anchored_at")}


def read_checkpoint(item: StoredCheckpoint, trust: CheckpointTrust) -> CheckpointResult:
    """Verify one checkpoint's signature and statement (not yet its claim about the trail)."""
    from mlgate.signing.attestation import AttestationError, SignatureMismatch, verify_bundle

    out = CheckpointResult(where=item.where, status="invalid")
    try:
        verified = verify_bundle(item.data, item.where, trust.keys)
    except SignatureMismatch as exc:
        out.status, out.reason = "untrusted", exc.diagnostics()
        return out
    except AttestationError as exc:
        out.reason = exc.diagnostics()
        return out
    try:
        pred = check_statement(verified.statement, item.where)
    except InputError as exc:
        out.reason = exc.diagnostics()
        return out
    signer = trust.signer_for_key(verified.key_id)
    tsa = None
    if trust.authorities:  # an RFC 3161 timestamp over the signature: the checkpoint existed at a time its signer cannot choose
        from mlgate.signing.attestation import parse_bundle
        from mlgate.signing.timestamp import MAX_CLAIM_AHEAD, TimestampError, verify_timestamps

        bundle = parse_bundle(item.data, item.where)
        try:
            tsa = verify_timestamps(bundle.timestamps, bundle.signature, trust.authorities, item.where)
        except TimestampError as exc:
            out.status, out.reason = "untrusted", exc.diagnostics()
            return out
        if tsa is not None:
            from mlgate.clock import parse_time

            if parse_time(pred["time"]) > tsa.at + MAX_CLAIM_AHEAD:
                out.status = "untrusted"
                out.reason = f"the checkpoint claims it was signed at {pred['time']}, after its own timestamp by {tsa.authority_id}"
                return out
    out.status = "unchecked"
    out.sequence, out.hash, out.time = pred["sequence"], pred["hash"], pred["time"]
    out.key_id = verified.key_id
    out.signer_id, out.signer_name = (signer.id, signer.name) if signer else (None, None)
    if tsa is not None:
        from mlgate.clock import rfc3339

        out.anchors.append(f"tsa:{tsa.authority_id}")
        out.anchored_at = rfc3339(tsa.at)
    validity = trust.validity.get(verified.key_id)
    if validity is not None:  # the key's validity window and revocation, at the signed time
        from mlgate.clock import parse_time

        _status, problem = validity.judge(parse_time(pred["time"]))
        if problem is not None:
            out.status, out.reason = "untrusted", f"key {verified.key_id}: {problem}"
    return out


# --------------------------------------------------------------------------- verify's part
@dataclass
class CheckpointPolicy:
    """What ``verify`` checks checkpoints with: the trust policy file (None: none given) and
    checkpoint copies held elsewhere."""

    trust_path: Path | None = None
    extra: tuple[Path, ...] = ()
    trust: CheckpointTrust | None = None
    anchors: tuple[str, ...] = ()  # anchor sinks holding copies (file:DIR): a copy there anchors its checkpoint
    require_anchor: dt.timedelta | None = None  # records older than this must be covered by an anchored checkpoint
    now: dt.datetime | None = None  # the verifier's clock, for require_anchor

    def load_trust(self) -> CheckpointTrust | None:
        if self.trust is None and self.trust_path is not None:
            self.trust = load_checkpoint_trust(self.trust_path)
        return self.trust


def gather(trail: Any, extra: Iterable[Path] = (), anchors: Iterable[str] = ()) -> list[StoredCheckpoint]:
    from mlgate.signing.attestation import MAX_BUNDLE_BYTES
    from mlgate.safeio import display, read_bytes

    items = checkpoint_store(trail).list()
    for path in extra:
        try:
            items.append(StoredCheckpoint(display(path), read_bytes(Path(path), limit=MAX_BUNDLE_BYTES)))
        except InputError as exc:
            raise AuditError(f"cannot read the checkpoint: {exc.message}", file=display(path)) from None
    for url in anchors:
        store = anchor_store(url)
        if not store.dir.is_dir():  # an anchor sink that is gone is not "no checkpoints": fail closed
            raise AuditError("cannot read the anchor directory: no such directory", file=str(store.dir))
        items.extend(store.list())
    return items


def _merge(items: list[StoredCheckpoint]) -> list[tuple[StoredCheckpoint, list[StoredCheckpoint]]]:
    """One entry per distinct bundle (the copy beside the trail first), with every copy of it."""
    groups: dict[bytes, list[StoredCheckpoint]] = {}
    for item in items:
        groups.setdefault(item.data, []).append(item)
    out = []
    for copies in groups.values():
        copies.sort(key=lambda c: c.anchor is not None)
        out.append((copies[0], copies))
    return out


def hashes_at(trail: Any, sequences: set[int]) -> dict[int, str]:
    """The ``hash`` of the records at the given sequences, read from the trail's first records.

    Only called for sequences within the prefix that verified, where the k-th record holds
    sequence k; only those lines are parsed, and reading stops after the last one wanted."""
    from mlgate.audit.trail import parse_record

    out: dict[int, str] = {}
    if not sequences:
        return out
    last = max(sequences)
    for index, (_where, raw, complete, _key) in enumerate(trail.items(), start=1):
        if index in sequences and complete:
            rec = parse_record(raw)
            if isinstance(rec, dict) and rec.get("sequence") == index and isinstance(rec.get("hash"), str):
                out[index] = rec["hash"]
        if index >= last:
            break
    return out


def check_checkpoints(trail: Any, result: Any, policy: CheckpointPolicy) -> None:
    """Check every checkpoint of ``trail`` (and ``policy.extra``) against the verified chain in
    ``result`` (a :class:`mlgate.audit.verify.VerifyResult`), recording each in
    ``result.checkpoints`` and, when the chain itself verified, failing ``result`` on the first
    checkpoint that does not hold (fail closed: an unverifiable checkpoint is not ignored)."""
    from mlgate.audit.trail import _fail

    try:
        items = gather(trail, policy.extra, policy.anchors)
    except (AuditError, InputError) as exc:
        if result.ok:
            _fail(result, "unreadable", exc.diagnostics(), field="checkpoint")
        result.checkpoints = []
        return
    result.checkpoints = []
    if not items:
        result.notes.append("no signed checkpoints: a rewritten chain cannot be detected (sign one: mlgate audit checkpoint --key KEY)")
        if policy.require_anchor is not None and result.ok:
            check_anchor_coverage(trail, result, [], policy)
        return
    try:
        trust = policy.load_trust()
    except MlgateError as exc:
        if result.ok:
            _fail(result, "unreadable", f"cannot check the {len(items)} checkpoint(s): {exc.diagnostics()}", field="checkpoint")
        return
    if trust is None or not trust.signers:
        source = f"the trust policy {trust.source}" if trust is not None else "no trust policy"
        for item in items:
            result.checkpoints.append(CheckpointResult(where=item.where, status="untrusted", reason="no checkpoint signers are trusted").as_dict())
        if result.ok:
            _fail(result, "unverifiable", f"{len(items)} checkpoint(s) cannot be verified: {source} lists no checkpointSigners "
                  f"(pass --trust FILE with checkpointSigners)", field="checkpoint")
        return

    checked = []
    for item, copies in _merge(items):
        c = read_checkpoint(item, trust)
        for copy in copies:
            if copy.anchor is not None and copy.anchor not in c.anchors:
                c.anchors.append(copy.anchor)
                # A copy in an anchor sink proves the time it was put there when the sink keeps one;
                # a directory does not (its mtimes are the writer's to set): the signed time then.
                at = copy.anchored_at or c.time
                if at is not None and (c.anchored_at is None or _before(at, c.anchored_at)):
                    c.anchored_at = at
        checked.append(c)
    verified_prefix = result.records
    wanted = {c.sequence for c in checked if c.status == "unchecked" and c.sequence <= verified_prefix}
    found = hashes_at(trail, wanted)
    for c in checked:
        if c.status != "unchecked":
            continue
        if c.sequence > verified_prefix:
            if result.ok:
                c.status = "beyond"
                c.reason = (f"the checkpoint signed at {c.time} attests sequence {c.sequence}, but the trail ends at sequence "
                            f"{verified_prefix}: records were cut from the end (and the head rewritten)")
            else:
                c.reason = f"sequence {c.sequence} lies beyond the first broken link; not checked"
            continue
        actual = found.get(c.sequence)
        if actual == c.hash:
            c.status = "ok"
        else:
            c.status, c.found = "contradicted", actual
            c.reason = (f"sequence {c.sequence}: field hash: expected {c.hash} (signed by {c.signer_id} at {c.time}), found {actual}: "
                        f"the chain was rewritten after the checkpoint")
    checked.sort(key=lambda c: (c.sequence or 0, c.time or "", c.where))
    result.checkpoints = [c.as_dict() for c in checked]
    if not result.ok:
        return
    # Fail on the earliest problem: a contradiction or a cut tail, then a bad or unknown signature.
    for status, verdict in (("contradicted", "tampered"), ("beyond", "truncated"), ("invalid", "tampered"), ("untrusted", "tampered")):
        bad = next((c for c in checked if c.status == status), None)
        if bad is None:
            continue
        if status == "contradicted":
            _fail(result, verdict, f"checkpoint {bad.where}: {bad.reason}", sequence=bad.sequence, where=bad.where, field="hash",
                  expected=bad.hash, found=bad.found)
        elif status == "beyond":
            _fail(result, verdict, f"checkpoint {bad.where}: {bad.reason}", sequence=bad.sequence, where=bad.where, field="sequence",
                  expected=bad.sequence, found=verified_prefix)
        else:
            what = "is not signed by a checkpoint signer of the trust policy" if status == "untrusted" else "is not a valid checkpoint"
            _fail(result, verdict, f"checkpoint {bad.where} {what}: {bad.reason}", where=bad.where, field="checkpoint")
        return
    if policy.require_anchor is not None:
        check_anchor_coverage(trail, result, [c for c in checked if c.status == "ok" and c.anchors], policy)


def _before(a: str, b: str) -> bool:
    from mlgate.clock import parse_time

    return parse_time(a) < parse_time(b)


def check_anchor_coverage(trail: Any, result: Any, anchored: list[CheckpointResult], policy: CheckpointPolicy) -> None:
    """``--require-anchor AGE``: every record older than AGE must be covered by an anchored
    checkpoint (one that holds, at its sequence or later, and carries a verified RFC 3161
    timestamp or sits in an anchor sink), and that anchor must be no more than AGE younger than
    the record. Fails ``result`` as ``unanchored`` on the first record that is not.

    Why the second condition: a writer that rewrites old records can sign and timestamp a new
    checkpoint today; its anchor proves only that the rewritten chain existed today. A record
    that claims to be a month old but was first anchored today was not anchored in time."""
    import bisect

    from mlgate.clock import parse_time, rfc3339
    from mlgate.audit.trail import _fail, parse_record

    age, now = policy.require_anchor, policy.now
    if now is None:
        raise ValueError("require_anchor needs the verifier's clock (CheckpointPolicy.now)")
    cutoff = now - age
    points = sorted((c.sequence, parse_time(c.anchored_at)) for c in anchored if c.anchored_at is not None)
    seqs = [p[0] for p in points]
    earliest: list[dt.datetime] = []  # earliest anchor time among the anchored checkpoints from index i on
    for _seq, at in reversed(points):
        earliest.append(at if not earliest else min(at, earliest[-1]))
    earliest.reverse()
    last = seqs[-1] if seqs else 0
    for index, (where, raw, complete, _key) in enumerate(trail.items(), start=1):
        if index > result.records or not complete:
            break
        try:
            rec = parse_record(raw)
            ts = parse_time(rec["timestamp"])
        except (ValueError, KeyError, TypeError, OverflowError):
            ts = None  # no time to judge by: it must be covered whatever its age
        j = bisect.bisect_left(seqs, index)
        shown = rfc3339(ts) if ts is not None else "an unreadable time"
        if j == len(seqs):
            if ts is None or ts <= cutoff:
                _fail(result, "unanchored",
                      f"sequence {index} ({where}, recorded at {shown}) is older than {_age(age)} and no anchored checkpoint covers it "
                      f"(anchored checkpoints cover sequence {last} and before): records after the last anchor may have been "
                      f"rewritten, cut or replaced unnoticed", sequence=index, where=where, field="anchor", expected=index, found=last)
                return
            continue
        if ts is not None and earliest[j] > ts + age:
            _fail(result, "unanchored",
                  f"sequence {index} ({where}, recorded at {shown}) was first anchored at {rfc3339(earliest[j])}, more than "
                  f"{_age(age)} later: the anchor proves only that the chain existed then", sequence=index, where=where,
                  field="anchor", expected=rfc3339(ts + age), found=rfc3339(earliest[j]))
            return
    if result.records and last < result.records:
        result.notes.append(f"sequences {last + 1} to {result.records} are not anchored yet (younger than {_age(age)})")


def _age(age: dt.timedelta) -> str:
    seconds = age.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0 and (unit != "d" or seconds > 86400):  # 24h reads as 24h
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
