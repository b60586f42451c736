"""``mlgate audit checkpoint``: verify the chain, then sign its head (:mod:`mlgate.audit.checkpoint`
holds the checkpoint format, stores and checks; this module sits above it and above
:mod:`mlgate.audit.verify`, which checks stored checkpoints)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from mlgate.audit.checkpoint import (
    PREDICATE_TYPE,
    SUBJECT_NAME,
    CheckpointPolicy,
    CheckpointRefused,
    CheckpointTrust,
    _claims,
    checkpoint_store,
    hashes_at,
)
from mlgate.errors import AuditError


@dataclass(frozen=True)
class SignedCheckpoint:
    location: str
    sequence: int
    hash: str
    time: str
    key_id: str
    signer_id: str | None


def create_checkpoint(trail: Any, private_key: Any, *, now: dt.datetime, trust: CheckpointTrust | None = None) -> SignedCheckpoint:
    """Verify the chain and sign its head. Refuses (:class:`CheckpointRefused`) a chain that is
    not intact or that contradicts a stored checkpoint, and an empty trail; with ``trust``, also
    a key that is not a checkpoint signer's and a stored checkpoint that does not verify."""
    from mlgate import __version__
    from mlgate.signing.attestation import make_statement, sign_statement
    from mlgate.audit.verify import verify_trail
    from mlgate.clock import rfc3339
    from mlgate.signing.keys import key_id as _key_id

    kid = _key_id(private_key.public_key())
    signer = None
    if trust is not None:
        signer = trust.signer_for_key(kid)
        if signer is None:
            raise CheckpointRefused(f"key {kid} is not a checkpoint signer in the trust policy {trust.source}", field="--key")
    result = verify_trail(trail, checkpoints=CheckpointPolicy(trust=trust) if trust is not None else None)
    if result.status == "unreadable":
        raise AuditError(result.problem or "cannot read the audit trail", file=trail.location)
    if not result.ok:
        raise CheckpointRefused(f"the chain is not intact, refusing to sign it: {result.status}: {result.problem}", file=trail.location)
    if result.records == 0:
        raise AuditError("the audit trail has no records; nothing to checkpoint", file=trail.location)
    if trust is None:
        # Unverified claims of the stored checkpoints still must not contradict the chain:
        # signing a new head over a rewritten chain would look like an endorsement of it.
        claims = [(item.where, _claims(item.data)) for item in checkpoint_store(trail).list()]
        wanted = {c["sequence"] for _w, c in claims if type(c.get("sequence")) is int and 1 <= c["sequence"] <= result.records}
        found = hashes_at(trail, wanted)
        for where, c in claims:
            seq = c.get("sequence")
            if type(seq) is not int or not isinstance(c.get("hash"), str):
                continue
            if seq > result.records or found.get(seq) != c["hash"]:
                raise CheckpointRefused(f"checkpoint {where} attests sequence {seq} with hash {c['hash']}, which the chain contradicts; "
                                        f"refusing to sign (run mlgate audit verify --trust FILE)", file=trail.location)
    time = now.astimezone(dt.timezone.utc)
    predicate = {"trail": trail.location, "sequence": result.head_sequence, "hash": result.head_hash, "time": rfc3339(time),
                 "mlgate_version": __version__}
    statement = make_statement([{"name": SUBJECT_NAME, "digest": {"sha256": result.head_hash}}], PREDICATE_TYPE, predicate)
    data = sign_statement(statement, private_key)
    location = checkpoint_store(trail).put(data, sequence=result.head_sequence, time=time, key_id=kid)
    return SignedCheckpoint(location=location, sequence=result.head_sequence, hash=result.head_hash, time=predicate["time"],
                            key_id=kid, signer_id=signer.id if signer else None)
