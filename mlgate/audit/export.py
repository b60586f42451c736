"""``mlgate audit show`` (filtered listing) and ``mlgate audit export`` (a tar for an auditor).

The export is an accurate and complete copy (21 CFR 11.10(b)): ``records.jsonl`` holds the
whole chain byte for byte (so ``mlgate audit verify --audit file:records.jsonl`` proves it
again on the auditor's side), ``evidence/sha256/<digest>`` the retained bytes of every evidence
file the selected decisions relied on, and ``MANIFEST.json`` the sha256 and size of every
other member, the chain's head and verification result, the selection, and each policy
revision used (digest and git commit) with the decisions taken under it. ``SHA256SUMS`` repeats
the digests in the format ``sha256sum -c`` reads. Members are sorted, owned by root, and dated
with the export time, so the same trail exported at the same time gives the same bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from mlgate.errors import AuditError, InputError

EXPORT_VERSION = "mlgate.dev/audit-export/v1"


@dataclass(frozen=True)
class RecordFilter:
    model_digest: str | None = None
    release: str | None = None  # NAME or NAME@VERSION
    environment: str | None = None
    result: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.model_digest, self.release, self.environment, self.result, self.since, self.until))

    def as_dict(self) -> dict[str, Any]:
        from mlgate.clock import rfc3339

        return {"model_digest": self.model_digest, "release": self.release, "environment": self.environment, "result": self.result,
                "since": rfc3339(self.since) if self.since else None, "until": rfc3339(self.until) if self.until else None}

    def matches(self, rec: dict[str, Any]) -> bool:
        from mlgate.clock import parse_time

        if self.model_digest is not None:
            want = self.model_digest.lower().removeprefix("sha256:")
            if not str(rec.get("subject_digest") or "").startswith(want):
                return False
        if self.release is not None:
            name, _, version = self.release.partition("@")
            rel = rec.get("release") if isinstance(rec.get("release"), dict) else {}
            if rel.get("name") != name or (version and rel.get("version") != version):
                return False
        if self.environment is not None and rec.get("environment") != self.environment:
            return False
        if self.result is not None and rec.get("result") != self.result:
            return False
        if self.since is not None or self.until is not None:
            try:
                ts = parse_time(str(rec.get("timestamp")))
            except ValueError:
                return False
            if (self.since is not None and ts < self.since) or (self.until is not None and ts > self.until):
                return False
        return True


def select(trail, filt: RecordFilter) -> list[dict[str, Any]]:
    from mlgate.audit.verify import iter_records

    return [rec for _where, _raw, rec in iter_records(trail) if filt.matches(rec)]


def is_event(rec: dict[str, Any]) -> bool:
    """A record of something other than a decision (``kind``: ``policy-change``, ...; a replay is
    told apart by itself)."""
    kind = rec.get("kind")
    return isinstance(kind, str) and kind not in ("", "decision", "replay") and not rec.get("decision_id")


def table(records: Iterable[dict[str, Any]]) -> str:
    """A plain text table, one decision per line."""
    rows = [("SEQ", "TIMESTAMP", "RESULT", "ENV", "RELEASE", "MODEL", "DECISION", "VIOLATIONS")]
    for rec in records:
        rel = rec.get("release") if isinstance(rec.get("release"), dict) else {}
        release = f"{rel.get('name')}@{rel.get('version')}" if rel.get("name") else "-"
        ids = sorted({str(v.get("id")) for v in rec.get("violations") or [] if isinstance(v, dict)})
        result = str(rec.get("result")).upper()
        if rec.get("action") == "replay" or rec.get("kind") == "replay":  # mlgate audit replay --record: a what-if, never a decision
            result = f"REPLAY:{result}"
        elif is_event(rec):  # the webhook's policy change (and any other event): what happened, never a decision
            result = str(rec.get("kind")).upper()
            new = rec.get("new") if isinstance(rec.get("new"), dict) else {}
            release = str(rec.get("policy_source") or new.get("digest") or "-")
        rows.append((str(rec.get("sequence")), str(rec.get("timestamp")), result, str(rec.get("environment") or "-"),
                     release, str(rec.get("subject_digest") or "-")[:12], str(rec.get("decision_id") or rec.get("event_id")), ",".join(ids) or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _tar_add(tar, name: str, data: bytes | None, mtime: int, *, fileobj=None, size: int | None = None) -> None:
    import tarfile

    info = tarfile.TarInfo(name)
    info.size = len(data) if data is not None else int(size or 0)
    info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = mtime, 0o444, 0, 0, "root", "root"
    tar.addfile(info, io.BytesIO(data) if data is not None else fileobj)


def export_trail(trail, out: Path, filt: RecordFilter, *, now: dt.datetime) -> dict[str, Any]:
    """Write the export tar to ``out`` (atomically) and return its manifest."""
    import tarfile

    from mlgate.audit.verify import iter_records, verify_trail
    from mlgate.canonical import canonical_json
    from mlgate.clock import rfc3339, epoch_ns

    verification = verify_trail(trail)
    if verification.status == "unreadable":
        raise AuditError(verification.problem or "cannot read the audit trail", file=trail.location)
    lines: list[bytes] = []
    selected: list[dict[str, Any]] = []
    for _where, raw, rec in iter_records(trail):
        lines.append(raw + b"\n")
        if filt.matches(rec):
            selected.append(rec)
    records_blob = b"".join(lines)

    evidence: dict[str, dict[str, Any]] = {}
    revisions: dict[str, dict[str, Any]] = {}
    for rec in selected:
        rev = rec.get("policy_revision")
        if rev:
            entry = revisions.setdefault(rev, {"git": rec.get("policy_git"), "decisions": []})
            if rec.get("action") == "replay" or rec.get("kind") == "replay":  # a what-if (mlgate audit replay --record), not a decision
                entry.setdefault("replays", []).append(rec.get("sequence"))
            else:
                entry["decisions"].append(rec.get("sequence"))
        if not rec.get("evidence_retained"):
            continue
        for rel, digest in sorted((rec.get("evidence_digests") or {}).items()):
            e = evidence.setdefault(digest, {"paths": [], "decisions": []})
            if rel not in e["paths"]:
                e["paths"].append(rel)
            e["decisions"].append(rec.get("sequence"))

    mtime = epoch_ns(now) // 1_000_000_000
    files: dict[str, dict[str, Any]] = {"records.jsonl": {"sha256": hashlib.sha256(records_blob).hexdigest(), "size": len(records_blob)}}
    out = Path(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with tarfile.open(tmp, "w") as tar:
            _tar_add(tar, "records.jsonl", records_blob, mtime)
            for digest in sorted(evidence):
                data = _evidence_bytes(trail, digest, evidence[digest])
                name = f"evidence/sha256/{digest}"
                evidence[digest]["size"] = len(data)
                files[name] = {"sha256": digest, "size": len(data)}
                _tar_add(tar, name, data, mtime)
            manifest = {
                "apiVersion": EXPORT_VERSION,
                "exported_at": rfc3339(now),
                "source": trail.location,
                "filter": filt.as_dict(),
                "chain": {"records": len(lines), "head": {"sequence": verification.head_sequence, "hash": verification.head_hash},
                          "verification": verification.as_dict()},
                "selected": [rec.get("sequence") for rec in selected],
                "policy_revisions": revisions,
                "evidence": evidence,
                "files": files,
            }
            manifest_blob = canonical_json(manifest) + b"\n"
            sums = "".join(f"{files[n]['sha256']}  {n}\n" for n in sorted(files)).encode()
            _tar_add(tar, "MANIFEST.json", manifest_blob, mtime)
            _tar_add(tar, "SHA256SUMS", sums, mtime)
        os.replace(tmp, out)
    except OSError as exc:
        _unlink(tmp)
        raise InputError(f"cannot write the export: {exc.strerror or exc}", file=str(out)) from None
    except BaseException:
        _unlink(tmp)
        raise
    return manifest


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _evidence_bytes(trail, digest: str, entry: dict[str, Any]) -> bytes:
    """The retained bytes for ``digest``, checked: a missing or altered copy is an error."""
    who = f"retained evidence sha256:{digest} ({entry['paths'][0]}, decision sequence {entry['decisions'][0]})"
    store = trail.evidence
    if hasattr(store, "read"):
        data = store.read(digest)
    else:
        try:
            with store.open(digest) as fh:
                data = fh.read()
        except FileNotFoundError:
            data = None
        except OSError as exc:
            raise AuditError(f"cannot read {who}: {exc.strerror or exc}", file=trail.location) from None
    if data is None:
        raise AuditError(f"{who} is missing from the evidence store", file=trail.location)
    actual = hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise AuditError(f"{who} was altered in the evidence store: its sha256 is {actual}", file=trail.location)
    return data
