"""Signing an approval (``mlgate approve``) or a waiver (``mlgate waive``) of one release.

The approval binds the signer's printed name, role, meaning and time (21 CFR 11.50) to the
model digest, to the release (name, version, owner, storage URIs and every manifest field:
:func:`mlgate.manifest.release_binding`) and to the digest of every evidence file it approves
(11.70): it cannot be moved to another model or release, or survive a change of the manifest or
the evidence. So sign last: run ``mlgate evidence collect`` and finish the manifest first.
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
                    environment: str, expires: str | None, comment: str | None, out: Path | None, now: dt.datetime,
                    force: bool = False, tsa: str | None = None) -> Path:
    from mlgate.evidence.approval import create_approval
    from mlgate.evidence.model_digest import compute_model_digest

    release = load_release(release_dir)
    expires_at = _future(expires, now) if expires else None
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
        release=release.binding,
        timestamper=_timestamper(tsa),
    )
    return _write(out or _default_output(release, signer_id, meaning, environment), bundle, "approval", force=force)


def _timestamper(tsa: str | None):
    """``--tsa URL``: an RFC 3161 timestamp over the signature from that authority (None: none).
    Only a timestamp of an authority the trust policy lists is a trusted signing time."""
    if tsa is None:
        return None
    from mlgate.signing.timestamp import request_timestamp

    return lambda signature: request_timestamp(tsa, signature)


def _future(expires: str, now: dt.datetime) -> dt.datetime:
    """``--expires`` as a time after ``now``."""
    try:
        expires_at = parse_time(expires)
    except ValueError as exc:
        raise InputError(f"invalid time: {exc}", field="--expires") from None
    if expires_at <= now:
        raise InputError(f"{expires} is not in the future", field="--expires")
    return expires_at


def _write(target: Path, bundle: bytes, what: str, *, force: bool = False) -> Path:
    """Write a signed statement; an existing file (a signature someone made) is replaced only with ``force``."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb" if force else "xb") as fh:  # "x": O_EXCL, no check-then-write race
            fh.write(bundle)
    except FileExistsError:
        raise InputError(f"exists; not overwriting the {what} there (use --force to replace it)", file=display(target)) from None
    except OSError as exc:
        raise InputError(f"cannot write the {what}: {exc.strerror}", file=display(target)) from None
    return target


def waive_release(release_dir: Path, *, key_path: Path, printed_name: str, signer_id: str, role: str, rules: list[str],
                  environment: str, justification: str, expires: str, ticket: str | None, out: Path | None, now: dt.datetime,
                  force: bool = False, tsa: str | None = None) -> Path:
    """Sign a waiver of ``rules`` for the release's model digest in ``environment`` (``mlgate waive``).

    ``expires`` is required: a waiver without an end is a policy change, not a waiver. Whether it
    applies (role, maximum validity, waivable rule) is the policy's decision at check time."""
    from mlgate.evidence.model_digest import compute_model_digest
    from mlgate.evidence.waiver import create_waiver

    release = load_release(release_dir)
    expires_at = _future(expires, now)
    bundle = create_waiver(
        read_bytes(key_path),
        release_name=release.name,
        model_digest=compute_model_digest(release.model_path).root,
        rules=rules,
        environment=environment,
        justification=justification,
        printed_name=printed_name,
        signer_id=signer_id,
        role=role,
        signed_at=now,
        expires_at=expires_at,
        ticket=ticket,
        key_name=display(key_path),
        release=release.binding,
        timestamper=_timestamper(tsa),
    )
    if out is None:
        if not release.waiver_dirs:
            raise InputError("the manifest lists no waivers directory; pass -o/--output", file=display(release.manifest_path),
                             field="spec.evidence.waivers")
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", signer_id)
        out = release.waiver_dirs[0] / f"{safe}.waiver.{environment}.{now.strftime('%Y%m%dT%H%M%SZ')}.sigstore.json"
    return _write(out, bundle, "waiver", force=force)


def signer_warnings(key_path: Path, *, signer_id: str, role: str, meaning: str, environment: str, trust) -> list[str]:
    """Why the gate would not count a statement signed with ``key_path`` as ``signer_id`` under
    ``trust`` (a :class:`~mlgate.signing.trust.TrustPolicy`); empty when nothing is wrong.
    Signing still works (the trust policy may be updated later); the signer is told now."""
    from mlgate.signing.keys import key_id, load_private_key

    kid = key_id(load_private_key(key_path).public_key())
    owner = trust.approver_for_key(kid)
    if owner is None:
        return [(f"key {display(key_path)} (key id {kid[:16]}) is not an approver key in the trust policy {trust.source}; "
                 "the gate will not count this signature until the trust policy lists it")]
    problems = []
    if owner.id != signer_id:
        problems.append(f"key {display(key_path)} belongs to approver {owner.id!r} in {trust.source}, not {signer_id!r}")
    if role not in owner.roles:
        problems.append(f"approver {owner.id!r} holds no role {role!r} in {trust.source} (roles: {', '.join(owner.roles) or 'none'})")
    if meaning is not None and meaning not in owner.meanings:
        problems.append(f"approver {owner.id!r} may not sign with meaning {meaning!r} in {trust.source} (meanings: {', '.join(owner.meanings) or 'none'})")
    if not owner.may_act_in(environment):
        problems.append(f"approver {owner.id!r} may not sign for environment {environment!r} in {trust.source}")
    return problems
