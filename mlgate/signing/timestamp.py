"""RFC 3161 timestamps: a signing time that the signer cannot choose.

A signature's ``signedAt`` is what the signer wrote. A timestamping authority (TSA) the trust
policy lists (``timestampAuthorities``) can prove instead that the signature bytes existed at a
time: ``mlgate approve --tsa URL`` asks the TSA for a timestamp over the DSSE signature bytes
(:func:`request_timestamp`) and stores the DER ``TimeStampResp`` in the Sigstore bundle, as
sigstore-python does::

    "verificationMaterial": {..., "timestampVerificationData":
        {"rfc3161Timestamps": [{"signedTimestamp": "<base64 DER TimeStampResp>"}]}}

:func:`verify_timestamps` checks each stored timestamp with ``rfc3161-client`` (the library
sigstore-python uses): the CMS signature, the TSA certificate's chain to a root the trust
policy lists for that TSA, valid at the timestamp's time, its critical timeStamping
extendedKeyUsage, the pinned signing certificate when the policy pins one, and that the message
imprint is the hash of *this* signature. The earliest verified time is the trusted signing time.

Fail closed: a bundle whose timestamp does not verify (an unlisted TSA, a timestamp over other
bytes, a tampered token) does not verify at all; the reason names the timestamp and the check.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from mlgate.errors import InputError
from mlgate.signing.attestation import SignatureMismatch

#: A TimeStampResp is a few KiB (the TSA's certificate chain included).
MAX_TIMESTAMP_BYTES = 64 * 1024
#: How far the signer's claimed time may lie after the trusted time (clocks differ; a claim much
#: later than the timestamp of its own signature is impossible).
MAX_CLAIM_AHEAD = dt.timedelta(minutes=5)
#: Seconds a TSA request may take.
REQUEST_TIMEOUT_S = 10.0
MEDIA_QUERY = "application/timestamp-query"
MEDIA_REPLY = "application/timestamp-reply"


@dataclass(frozen=True)
class TrustedTime:
    """A signing time proven by a third party: a listed TSA or the transparency log (Rekor)."""

    at: dt.datetime
    source: str  # "tsa" | "transparency_log"
    authority: str  # the TSA's name in the trust policy, or "Rekor"
    authority_id: str | None = None  # the TSA's id in the trust policy


class TimestampError(SignatureMismatch):
    """A stored timestamp does not verify against the trust policy's timestamping authorities."""


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


def decode(der: bytes, name: str, field: str) -> Any:
    """Parse a DER TimeStampResp (rfc3161-client); a malformed one is a one-line error."""
    from rfc3161_client import decode_timestamp_response

    try:
        response = decode_timestamp_response(der)
        response.tst_info.gen_time  # noqa: B018 - force the parse of the token
    except Exception as exc:  # noqa: BLE001 - the Rust parser raises ValueError and friends
        raise TimestampError(f"not an RFC 3161 timestamp response ({' '.join(str(exc).split())[:160]})", file=name, field=field) from None
    return response


def _verify_one(response: Any, message: bytes, authority: Any) -> dt.datetime:
    """The timestamp's time if ``authority`` vouches for it over ``message``; raises VerificationError."""
    from rfc3161_client import VerificationError, VerifierBuilder

    builder = VerifierBuilder()
    for root in authority.roots:
        builder = builder.add_root_certificate(root)
    for inter in authority.intermediates:
        builder = builder.add_intermediate_certificate(inter)
    if authority.certificate is not None:
        builder = builder.tsa_certificate(authority.certificate)
    try:
        builder.build().verify_message(response, message)
    except VerificationError:
        raise
    except Exception as exc:  # noqa: BLE001 - unusual tokens surface as assorted errors: not verified
        raise VerificationError(f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}") from None
    return _utc(response.tst_info.gen_time)


def verify_timestamps(tokens: tuple[bytes, ...], signature: bytes, authorities: tuple[Any, ...], name: str) -> TrustedTime | None:
    """The earliest time a listed TSA proves for ``signature``; None when there is no timestamp.

    Every timestamp must verify (fail closed): raises :class:`TimestampError` naming the first
    one that does not, and why.
    """
    if not tokens:
        return None
    best: TrustedTime | None = None
    for i, der in enumerate(tokens):
        field = f"verificationMaterial.timestampVerificationData.rfc3161Timestamps[{i}].signedTimestamp"
        response = decode(der, name, field)
        if not authorities:
            raise TimestampError("a signed timestamp, but the trust policy lists no timestampAuthorities to verify it with", file=name, field=field)
        problems = []
        found: TrustedTime | None = None
        for authority in authorities:
            try:
                at = _verify_one(response, signature, authority)
            except Exception as exc:  # noqa: BLE001 - rfc3161_client.VerificationError (or any failure): not this TSA
                problems.append(f"{authority.id}: {' '.join(str(exc).split())[:160]}")
                continue
            found = TrustedTime(at=at, source="tsa", authority=authority.name, authority_id=authority.id)
            break
        if found is None:
            raise TimestampError(f"the timestamp does not verify with any timestamping authority the trust policy lists ({'; '.join(problems)})",
                                 file=name, field=field)
        if best is None or found.at < best.at:
            best = found
    return best


# --------------------------------------------------------------------------- request (mlgate approve --tsa)
def request_timestamp(url: str, signature: bytes, *, timeout: float = REQUEST_TIMEOUT_S) -> bytes:
    """Ask the TSA at ``url`` for a timestamp over ``signature``; the DER TimeStampResp.

    The answer is checked before it is stored: granted, for this request's nonce and message
    imprint. (Whether the TSA is trusted is the verifier's question, against the trust policy.)
    Raises :class:`InputError` (field ``--tsa``) with one line on any failure.
    """
    import hashlib
    import urllib.error
    import urllib.parse
    import urllib.request

    from rfc3161_client import HashAlgorithm, PKIStatus, TimestampRequestBuilder

    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InputError(f"{url!r} is not an http(s) URL of a timestamping authority", field="--tsa")
    query = TimestampRequestBuilder().data(signature).hash_algorithm(HashAlgorithm.SHA256).nonce(nonce=True).cert_request(cert_request=True).build()
    request = urllib.request.Request(url, data=query.as_bytes(), method="POST", headers={"Content-Type": MEDIA_QUERY, "Accept": MEDIA_REPLY})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310 - the scheme is checked above
            body = reply.read(MAX_TIMESTAMP_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise InputError(f"the timestamping authority {url} answered HTTP {exc.code} {exc.reason}", field="--tsa") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InputError(f"cannot reach the timestamping authority {url}: {' '.join(str(reason).split())[:160]}", field="--tsa") from None
    if len(body) > MAX_TIMESTAMP_BYTES:
        raise InputError(f"the timestamping authority {url} answered more than {MAX_TIMESTAMP_BYTES} bytes", field="--tsa")
    try:
        response = decode(body, url, "--tsa")
    except TimestampError as exc:
        raise InputError(exc.message, field="--tsa") from None
    if response.status != PKIStatus.GRANTED:
        raise InputError(f"the timestamping authority {url} refused the request (status {response.status}: {' '.join(response.status_string) or 'no text'})", field="--tsa")
    info = response.tst_info
    if info.nonce != query.nonce:
        raise InputError(f"the timestamping authority {url} answered another request (nonce differs)", field="--tsa")
    if info.message_imprint.message != hashlib.sha256(signature).digest():
        raise InputError(f"the timestamping authority {url} timestamped other bytes than the signature", field="--tsa")
    return body
