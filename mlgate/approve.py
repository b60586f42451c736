"""Signing an approval of one release (``mlgate approve``).

The approval binds the signer's printed name, role, meaning and time (21 CFR 11.50) to the
model digest and to the digest of every evidence file it approves (11.70): it cannot be moved
to another model or survive a change of the evidence.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from mlgate.canonical import sha256_hex
from mlgate.clock import parse_time
from mlgate.errors import InputError
from mlgate.manifest import load_release
from mlgate.safeio import display, read_bytes


def evidence_digests(release) -> dict[str, str]:
    return {rel: sha256_hex(read_bytes(path)) for path, rel in release.evaluated_evidence()}


def _default_output(release, signer_id: str, meaning: str, environment: str) -> Path:
    if not release.approval_dirs:
        raise InputError("the manifest lists no approvals directory; pass -o/--output", file=display(release.manifest_path),
                         field="spec.evidence.approvals")
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", signer_id)
    return release.approval_dirs[0] / f"{safe}.{meaning}.{environment}.sigstore.json"


def approve_release(release_dir: Path, *, key_path: Path, printed_name: str, signer_id: str, role: str, meaning: str,
                    environment: str, expires: str | None, comment: str | None, out: Path | None, now: dt.datetime) -> Path:
    from mlgate.evidence.approval import create_approval
    from mlgate.evidence.model_digest import compute_model_digest

    release = load_release(release_dir)
    expires_at = None
    if expires:
        try:
            expires_at = parse_time(expires)
        except ValueError as exc:
            raise InputError(f"invalid time: {exc}", field="--expires") from None
        if expires_at <= now:
            raise InputError(f"{expires} is not in the future", field="--expires")
    bundle = create_approval(
        read_bytes(key_path),
        release_name=release.name,
        model_digest=compute_model_digest(release.model_path).root,
        printed_name=printed_name,
        signer_id=signer_id,
        role=role,
        meaning=meaning,
        environment=environment,
        signed_at=now,
        expires_at=expires_at,
        evidence_digests=evidence_digests(release),
        comment=comment,
        key_name=display(key_path),
    )
    target = out or _default_output(release, signer_id, meaning, environment)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(bundle)
    except OSError as exc:
        raise InputError(f"cannot write the approval: {exc.strerror}", file=display(target)) from None
    return target
