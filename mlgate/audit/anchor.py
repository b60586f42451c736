"""``mlgate audit checkpoint``: verify the chain, then sign its head (:mod:`mlgate.audit.checkpoint`
holds the checkpoint format, stores and checks; this module sits above it and above
:mod:`mlgate.audit.verify`, which checks stored checkpoints).

Anchoring (issue 16 part 2): a signed checkpoint beside the trail can be deleted by whoever can
write the trail. Two anchors put it out of that reach: ``timestamper`` (an RFC 3161 TSA, see
:func:`mlgate.signing.timestamp.request_timestamp`) stores a timestamp over the checkpoint's
signature in the bundle, so the checkpoint provably existed at the TSA's time; ``anchors``
(anchor sinks, :func:`mlgate.audit.checkpoint.anchor_store`) receive a copy of the bundle.
With ``trust``, a timestamp must verify against the trust policy's ``timestampAuthorities``
before the checkpoint is stored (a TSA the verifier will not accept anchors nothing).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from mlgate.audit.checkpoint import (
    PREDICATE_TYPE,
    SUBJECT_NAME,
    CheckpointPolicy,
    CheckpointRefused,
    CheckpointTrust,
    _claims,
    anchor_store,
    checkpoint_store,
    gather,
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
    anchors: tuple[str, ...] = ()  # "tsa:<id>" or "tsa" (not checked here: no trust policy), and the anchor sinks written


def create_checkpoint(trail: Any, private_key: Any, *, now: dt.datetime, trust: CheckpointTrust | None = None,
                      timestamper: Callable[[bytes], bytes] | None = None, anchors: Sequence[str] = ()) -> SignedCheckpoint:
    """Verify the chain and sign its head. Refuses (:class:`CheckpointRefused`) a chain that is
    not intact or that contradicts a stored checkpoint, and an empty trail; with ``trust``, also
    a key that is not a checkpoint signer's and a stored checkpoint that does not verify.
    ``timestamper`` and ``anchors`` anchor it (see the module docstring)."""
    from mlgate.audit.verify import verify_trail

    _signer(private_key, trust)
    for url in anchors:  # the writer creates its anchor directories; a verifier finding one missing fails
        store = anchor_store(url, field="--checkpoint-anchor")
        try:
            store.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AuditError(f"cannot create the anchor directory: {exc.strerror or exc}", file=str(store.dir)) from None
    result = verify_trail(trail, checkpoints=CheckpointPolicy(trust=trust, anchors=tuple(anchors)) if trust is not None else None)
    if result.status == "unreadable":
        raise AuditError(result.problem or "cannot read the audit trail", file=trail.location)
    if not result.ok:
        raise CheckpointRefused(f"the chain is not intact, refusing to sign it: {result.status}: {result.problem}", file=trail.location)
    if result.records == 0:
        raise AuditError("the audit trail has no records; nothing to checkpoint", file=trail.location)
    if trust is None:
        # Unverified claims of the stored checkpoints still must not contradict the chain:
        # signing a new head over a rewritten chain would look like an endorsement of it.
        claims = [(item.where, _claims(item.data)) for item in gather(trail, (), anchors)]
        wanted = {c["sequence"] for _w, c in claims if type(c.get("sequence")) is int and 1 <= c["sequence"] <= result.records}
        found = hashes_at(trail, wanted)
        for where, c in claims:
            seq = c.get("sequence")
            if type(seq) is not int or not isinstance(c.get("hash"), str):
                continue
            if seq > result.records or found.get(seq) != c["hash"]:
                raise CheckpointRefused(f"checkpoint {where} attests sequence {seq} with hash {c['hash']}, which the chain contradicts; "
                                        f"refusing to sign (run mlgate audit verify --trust FILE)", file=trail.location)
    return sign_head(trail, private_key, sequence=result.head_sequence, digest=result.head_hash, now=now, trust=trust,
                     timestamper=timestamper, anchors=anchors)


def _signer(private_key: Any, trust: CheckpointTrust | None):
    from mlgate.signing.keys import key_id as _key_id

    kid = _key_id(private_key.public_key())
    if trust is None:
        return kid, None
    signer = trust.signer_for_key(kid)
    if signer is None:
        raise CheckpointRefused(f"key {kid} is not a checkpoint signer in the trust policy {trust.source}", field="--key")
    return kid, signer


def sign_head(trail: Any, private_key: Any, *, sequence: int, digest: str, now: dt.datetime, trust: CheckpointTrust | None = None,
              timestamper: Callable[[bytes], bytes] | None = None, anchors: Sequence[str] = ()) -> SignedCheckpoint:
    """Sign (sequence, digest) as the trail's head and store it, with its anchors. The caller has
    verified the chain up to ``sequence`` (:func:`create_checkpoint` the whole chain;
    :class:`mlgate.audit.autocheckpoint.Checkpointer` the records since its last checkpoint)."""
    from mlgate import __version__
    from mlgate.clock import rfc3339
    from mlgate.signing.attestation import make_statement, sign_statement

    kid, signer = _signer(private_key, trust)
    stores = [anchor_store(url, field="--checkpoint-anchor") for url in anchors]
    time = now.astimezone(dt.timezone.utc)
    predicate = {"trail": trail.location, "sequence": sequence, "hash": digest, "time": rfc3339(time), "mlgate_version": __version__}
    statement = make_statement([{"name": SUBJECT_NAME, "digest": {"sha256": digest}}], PREDICATE_TYPE, predicate)
    data = sign_statement(statement, private_key, timestamper=timestamper)
    anchored: list[str] = []
    if timestamper is not None:
        anchored.append(_check_timestamp(data, trust))
    location = checkpoint_store(trail).put(data, sequence=sequence, time=time, key_id=kid)
    for store in stores:
        store.put(data, sequence=sequence, time=time, key_id=kid)
        anchored.append(store.anchor)
    return SignedCheckpoint(location=location, sequence=sequence, hash=digest, time=predicate["time"], key_id=kid,
                            signer_id=signer.id if signer else None, anchors=tuple(anchored))


def _check_timestamp(data: bytes, trust: CheckpointTrust | None) -> str:
    """The TSA's id once its timestamp verifies against the trust policy (``tsa`` without one)."""
    if trust is None:
        return "tsa"
    from mlgate.signing.attestation import parse_bundle
    from mlgate.signing.timestamp import TimestampError, verify_timestamps

    if not trust.authorities:
        raise CheckpointRefused(f"the trust policy {trust.source} lists no timestampAuthorities: a timestamp of this TSA would anchor nothing",
                                field="--tsa")
    bundle = parse_bundle(data, "<checkpoint>")
    try:
        found = verify_timestamps(bundle.timestamps, bundle.signature, trust.authorities, "<checkpoint>")
    except TimestampError as exc:
        raise CheckpointRefused(f"the TSA's timestamp does not verify against the trust policy {trust.source}: {exc.message}", field="--tsa") from None
    return f"tsa:{found.authority_id}"
