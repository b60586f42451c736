"""The trust policy: who may sign approvals and models, with which keys or identities, when.

A YAML file versioned with the policies (schema: ``schemas/trust_policy.schema.json``)::

    apiVersion: mlgate.dev/v1
    kind: TrustPolicy
    metadata: {name: hospital-trust, version: "2026.11"}
    certificateAuthorities:                     # organisation PKI (optional)
      - id: hospital-staff-ca
        name: Hospital Staff CA
        roots: [{path: pki/root.pem}]           # trust anchors
        intermediates: [{path: pki/staff-ica.pem}]   # optional; bundles may carry them too
    sigstore:                                   # Sigstore keyless, verified offline (optional)
      trustedRoot: {path: sigstore/trusted_root.json}
    approvers:
      - id: jane.roe@hospital.example
        name: Dr. Jane Roe                      # the printed name (21 CFR 11.50)
        roles: [clinical-safety-officer]
        meanings: [review, approval]            # review | approval | responsibility | authorship
        environments: [staging, production]     # optional; absent = every environment
        keys:                                   # any of keys / certificates / keyless
          - path: keys/jane.roe.2025.pub.pem    # relative to this file, may not leave its directory
            notAfter: "2026-06-30T00:00:00Z"    # rotated out: signatures made before still count
          - pem: |
              -----BEGIN PUBLIC KEY-----
              ...
            keyId: 0b4c...                      # optional: must equal the computed key id
            notBefore: "2026-06-30T00:00:00Z"
            revoked: {at: "2026-11-01T00:00:00Z", reason: keyCompromise}
        certificates:
          - {ca: hospital-staff-ca, email: jane.roe@hospital.example}   # email defaults to the id
        keyless:
          - {issuer: "https://login.hospital.example", subject: jane.roe@hospital.example}
    modelSigners:
      - id: ml-platform-ci
        name: ML Platform CI
        keys: [{path: keys/ci.pub.pem}]
    summarySigners:                             # who may sign verification summaries (mlgate check --attest)
      - id: ci.hospital.example
        name: Release CI
        keys: [{path: keys/ci-summary.pub.pem}]

**Validity at signing time.** Every key and identity may carry ``notBefore``/``notAfter`` (the
signing times it is valid for) and ``revoked: {at, reason}``. A signature counts when its
signing time is inside the window and before the revocation, and only a *trusted* time
(an RFC 3161 timestamp of a ``timestampAuthorities`` entry, a keyless bundle's Rekor time) can
show that: then a signature made before a revocation still counts and the record says the key
was revoked later (``revoked_after_signing``). The signer's claimed time never rescues a key
(:meth:`Validity.judge_signature`): revoked for a possible compromise, every signature is void;
past ``notAfter`` or revoked for another reason, it counts only until then. Rotation is two
keys for one person with adjoining windows; sign with ``--tsa`` so that approvals made with the
old key outlive it.

    timestampAuthorities:                       # RFC 3161 TSAs (optional)
      - id: hospital-tsa
        name: Hospital Timestamping Authority
        roots: [{path: tsa/root.pem}]
        certificate: {path: tsa/tsa.pem}        # optional: the pinned TSA signing certificate

**Uniqueness.** A key id may appear only once in the whole policy, an X.509 identity (CA, email)
and a keyless identity (issuer, subject) only once per list kind, so one credential always means
one identity. Every failure is an :class:`InputError` naming the file and the JSON path.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mlgate import schemas
from mlgate.clock import parse_time, rfc3339
from mlgate.errors import InputError
from mlgate.signing.keys import MAX_KEY_FILE_BYTES, key_id, key_kind, load_public_key_pem
from mlgate.safeio import decode_text, display, parse_yaml, read_bytes, resolve_inside

API_VERSION = "mlgate.dev/v1"
KIND = "TrustPolicy"
MEANINGS = ("review", "approval", "responsibility", "authorship")
#: A trusted root is a small JSON document; anything larger is refused.
MAX_TRUSTED_ROOT_BYTES = 1024 * 1024
MAX_CERT_FILE_BYTES = 256 * 1024

Purpose = Literal["approver", "model_signer"]


def schema_errors(doc: Any, schema_file: str, *, limit: int = 20) -> list[tuple[str, str]]:
    """(JSON path, message) for each schema violation, in document order; [] when valid."""
    return schemas.errors(schema_file, doc, limit=limit)


# --------------------------------------------------------------------------- validity
@dataclass(frozen=True)
class Validity:
    """When a credential may sign: a window of signing times and an optional revocation."""

    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    revoked_at: dt.datetime | None = None
    revocation_reason: str | None = None
    compromised_at: dt.datetime | None = None  # a compromise's invalidity date: when the key may first have been stolen

    @property
    def unbounded(self) -> bool:
        return self.not_before is None and self.not_after is None and self.revoked_at is None

    def judge(self, signed_at: dt.datetime | None) -> tuple[str, str | None]:
        """(status, problem) for a signature made at ``signed_at``; ``problem`` is None when it counts.

        Statuses: ``valid``, ``revoked_after_signing`` (counts), ``not_yet_valid``, ``expired``,
        ``revoked``, ``unknown_signing_time`` (do not count).
        """
        if signed_at is None:
            if self.unbounded:
                return "valid", None
            return "unknown_signing_time", "the signature has no signing time, so its validity window and revocation cannot be checked"
        when = rfc3339(signed_at)
        if self.not_before is not None and signed_at < self.not_before:
            return "not_yet_valid", f"signed at {when}, before the credential's validity starts at {rfc3339(self.not_before)}"
        if self.not_after is not None and signed_at >= self.not_after:
            return "expired", f"signed at {when}, after the credential's validity ended at {rfc3339(self.not_after)}"
        if self.revoked_at is not None:
            reason = f" ({self.revocation_reason})" if self.revocation_reason else ""
            if signed_at >= self.revoked_at:
                return "revoked", f"signed at {when}, at or after the credential was revoked at {rfc3339(self.revoked_at)}{reason}"
            return "revoked_after_signing", None
        return "valid", None

    @property
    def compromised(self) -> bool:
        """A revocation whose reason does not rule out a compromise (keyCompromise, unspecified
        or no reason): without a trusted time, nothing the key signed can be told from a forgery."""
        return self.revoked_at is not None and self.revocation_reason not in SAFE_REVOCATION_REASONS

    def judge_signature(self, claimed: dt.datetime | None, trusted: dt.datetime | None) -> Judgement:
        """Judge a signature whose signer claims ``claimed`` and whose time a timestamping
        authority or a transparency log proves (``trusted``; None when nothing proves it).

        Only a trusted time can show that a signature predates a revocation or the end of the
        validity window (:meth:`judge` at that time). Without one the claimed time is a claim:

        * revoked for a compromise (:attr:`compromised`): every signature is void; with a trusted
          time, one made before ``compromisedAt`` (the revoker's invalidity date) still counts, and
          without a ``compromisedAt`` none does (forgeries may be timestamped before the revocation);
        * revoked for another reason (superseded, affiliationChanged, cessationOfOperation), or a
          ``notAfter``: the signature counts only until then (``valid_until``; the policy compares
          it with the evaluation time, so the facts stay time-independent), and not at all when
          even the claimed time is at or after it;
        * ``notBefore`` is judged at the claimed time (a claim before it is refused; a claim after
          it gains nothing, since a signing time after the evaluation is refused by the policy).
        """
        if trusted is not None:
            if self.compromised and (self.compromised_at is None or trusted >= self.compromised_at):
                # A thief can timestamp forgeries between the theft and the revocation: a trusted
                # time helps only when it is before the key was (by the revoker's word) at risk.
                since = (f"compromised from {rfc3339(self.compromised_at)}" if self.compromised_at is not None else
                         "no compromisedAt says since when it was at risk")
                return Judgement("revoked", (
                    f"revoked at {rfc3339(self.revoked_at)} ({self.revocation_reason or 'no reason given'}; {since}); the trusted time "
                    f"{rfc3339(trusted)} does not show the signature predates the compromise"), None)
            status, problem = self.judge(trusted)
            return Judgement(status, problem, None)
        if claimed is None:
            status, problem = self.judge(None)
            return Judgement(status, problem, None)
        when = rfc3339(claimed)
        if self.not_before is not None and claimed < self.not_before:
            return Judgement("not_yet_valid", f"signed at {when}, before the credential's validity starts at {rfc3339(self.not_before)}", None)
        if self.revoked_at is not None and self.compromised:
            return Judgement("revoked", (
                f"revoked at {rfc3339(self.revoked_at)} ({self.revocation_reason or 'no reason given'}) and no trusted timestamp shows "
                f"when it signed: every signature of a credential revoked for a possible compromise is void (the signed time {when} is the signer's claim)"
            ), None)
        if self.not_after is not None and claimed >= self.not_after:
            return Judgement("expired", f"signed at {when}, after the credential's validity ended at {rfc3339(self.not_after)}", None)
        if self.revoked_at is not None and claimed >= self.revoked_at:
            return Judgement("revoked", f"signed at {when}, at or after the credential was revoked at {rfc3339(self.revoked_at)} ({self.revocation_reason})", None)
        until = min((t for t in (self.not_after, self.revoked_at) if t is not None), default=None)
        return Judgement("valid", None, until)

    def as_facts(self) -> dict[str, Any]:
        from mlgate.clock import epoch_ns

        return {
            "revoked_at": rfc3339(self.revoked_at) if self.revoked_at else None,
            "revoked_at_ns": epoch_ns(self.revoked_at) if self.revoked_at else None,
            "revocation_reason": self.revocation_reason if self.revoked_at else None,
        }


#: Revocation reasons that say the key was not compromised: signatures a trusted time shows
#: predate the revocation still count, and, without a trusted time, signatures count until it.
SAFE_REVOCATION_REASONS = frozenset({"superseded", "affiliationChanged", "cessationOfOperation"})


@dataclass(frozen=True)
class Judgement:
    """How a credential's validity judges one signature: ``status`` (see :meth:`Validity.judge`),
    ``problem`` (None when it counts) and ``valid_until`` (when it stops counting because its
    signing time is only claimed; None when nothing ends it)."""

    status: str
    problem: str | None
    valid_until: dt.datetime | None = None


# --------------------------------------------------------------------------- types
@dataclass(frozen=True)
class TrustedKey:
    key_id: str
    public_key: Any = field(compare=False, repr=False)
    kind: str = ""
    source: str = ""  # "inline" or the key file as displayed
    validity: Validity = field(default_factory=Validity)


@dataclass(frozen=True)
class CertificateIdentity:
    ca: str  # the certificateAuthorities id
    email: str  # SAN rfc822Name the certificate must carry (compared case-insensitively)
    subject: str | None = None  # exact RFC 4514 subject, when pinned
    validity: Validity = field(default_factory=Validity)


@dataclass(frozen=True)
class KeylessIdentity:
    issuer: str  # OIDC issuer Fulcio recorded
    subject: str  # SAN (email or URI)
    validity: Validity = field(default_factory=Validity)


@dataclass(frozen=True)
class CertificateAuthority:
    id: str
    name: str | None
    roots: tuple[Any, ...] = field(compare=False, repr=False)  # cryptography x509.Certificate
    intermediates: tuple[Any, ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True)
class TimestampAuthority:
    """An RFC 3161 timestamping authority the trust policy lists (:mod:`mlgate.signing.timestamp`)."""

    id: str
    name: str
    roots: tuple[Any, ...] = field(compare=False, repr=False)  # cryptography x509.Certificate
    intermediates: tuple[Any, ...] = field(default=(), compare=False, repr=False)
    certificate: Any = field(default=None, compare=False, repr=False)  # the pinned signing certificate, or None


@dataclass(frozen=True)
class Signer:
    """What approvers and model signers share: who, and the credentials that identify them."""

    id: str
    name: str
    keys: tuple[TrustedKey, ...] = ()
    certificates: tuple[CertificateIdentity, ...] = ()
    keyless: tuple[KeylessIdentity, ...] = ()


@dataclass(frozen=True)
class Approver(Signer):
    roles: tuple[str, ...] = ()
    meanings: tuple[str, ...] = ()
    environments: tuple[str, ...] | None = None  # None: every environment

    def may_act_in(self, environment: str | None) -> bool:
        return self.environments is None or environment in self.environments


@dataclass(frozen=True)
class ModelSigner(Signer):
    pass


@dataclass(frozen=True)
class TrustPolicy:
    source: str
    digest: str  # sha256 of the trust file bytes, for the decision record
    name: str | None
    version: str | None
    approvers: tuple[Approver, ...]
    model_signers: tuple[ModelSigner, ...]
    certificate_authorities: tuple[CertificateAuthority, ...] = ()
    sigstore_trusted_root: bytes | None = field(default=None, repr=False)  # TrustedRoot JSON bytes
    sigstore_trusted_root_source: str | None = None
    checkpoint_signers: tuple[Signer, ...] = ()  # audit-trail checkpoints (mlgate.audit.checkpoint)
    summary_signers: tuple[Signer, ...] = ()  # verification summaries (mlgate.signing.summary)
    timestamp_authorities: tuple[TimestampAuthority, ...] = ()  # RFC 3161 TSAs: trusted signing times
    files: dict[str, str] = field(default_factory=dict, compare=False)  # every file it names (keys, CAs, trusted root): path as written -> sha256

    @property
    def revision(self) -> str:
        """sha256 over this file and every file it names: what the decision's policy revision takes from it."""
        from mlgate.canonical import digest_json

        return digest_json({"trust_policy": self.digest, "files": self.files})

    def as_record(self) -> dict[str, Any]:
        """What the audit record says of the trust policy used: where, its own digest, the files it names."""
        return {"path": self.source, "digest": self.digest, "files": dict(sorted(self.files.items()))}

    def approver(self, approver_id: str) -> Approver | None:
        return next((a for a in self.approvers if a.id == approver_id), None)

    def model_signer(self, signer_id: str) -> ModelSigner | None:
        return next((s for s in self.model_signers if s.id == signer_id), None)

    def signers(self, purpose: Purpose) -> tuple[Signer, ...]:
        return self.approvers if purpose == "approver" else self.model_signers

    def approver_for_key(self, kid: str) -> Approver | None:
        return next((a for a in self.approvers if any(k.key_id == kid for k in a.keys)), None)

    def model_signer_for_key(self, kid: str) -> ModelSigner | None:
        return next((s for s in self.model_signers if any(k.key_id == kid for k in s.keys)), None)

    def key_for(self, purpose: Purpose, kid: str) -> tuple[Signer, TrustedKey] | None:
        for signer in self.signers(purpose):
            for k in signer.keys:
                if k.key_id == kid:
                    return signer, k
        return None

    def approver_keys(self) -> dict[str, Any]:
        """key id -> public key for every approver key (the candidates for approvals)."""
        return {k.key_id: k.public_key for a in self.approvers for k in a.keys}

    def model_signer_keys(self) -> dict[str, Any]:
        """key id -> public key for every model-signer key (the candidates for model signatures)."""
        return {k.key_id: k.public_key for s in self.model_signers for k in s.keys}

    def keys_for(self, purpose: Purpose) -> dict[str, Any]:
        return self.approver_keys() if purpose == "approver" else self.model_signer_keys()

    def ca(self, ca_id: str) -> CertificateAuthority | None:
        return next((c for c in self.certificate_authorities if c.id == ca_id), None)


# --------------------------------------------------------------------------- load
def load_trust_policy(path: Path) -> TrustPolicy:
    """Read and validate a trust policy file; key paths are resolved next to it."""
    data = read_bytes(path)
    return parse_trust_policy(data, display(path), base_dir=Path(path).resolve().parent)


def _times_to_text(value: Any) -> Any:
    """YAML reads an unquoted ``2026-11-01T00:00:00Z`` as a datetime; give the schema text back."""
    if isinstance(value, dict):
        return {k: _times_to_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_times_to_text(v) for v in value]
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return rfc3339(value)
    return value


def parse_trust_policy(data: bytes, name: str, *, base_dir: Path) -> TrustPolicy:
    doc = _times_to_text(parse_yaml(decode_text(data, name), name))
    errors = schema_errors(doc, "trust_policy.schema.json")
    if errors:
        where, message = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise InputError(message + more, file=name, field=where)
    loader = _Loader(name, base_dir)
    cas = loader.authorities(doc.get("certificateAuthorities", []))
    trusted_root, trusted_root_source = loader.trusted_root(doc.get("sigstore"))
    tsas = loader.timestamp_authorities(doc.get("timestampAuthorities", []))

    approvers: list[Approver] = []
    for i, entry in enumerate(doc.get("approvers", [])):
        where = f"approvers[{i}]"
        if any(a.id == entry["id"] for a in approvers):
            raise InputError(f"duplicate approver id {entry['id']!r}", file=name, field=f"{where}.id")
        envs = entry.get("environments")
        approvers.append(Approver(
            id=entry["id"], name=entry["name"], roles=tuple(entry["roles"]), meanings=tuple(entry["meanings"]),
            environments=tuple(envs) if envs is not None else None,
            **loader.credentials(entry, where, f"approver {entry['id']!r}", "approver", cas),
        ))
    signers: list[ModelSigner] = []
    for i, entry in enumerate(doc.get("modelSigners", [])):
        where = f"modelSigners[{i}]"
        if any(s.id == entry["id"] for s in signers):
            raise InputError(f"duplicate model signer id {entry['id']!r}", file=name, field=f"{where}.id")
        signers.append(ModelSigner(
            id=entry["id"], name=entry["name"],
            **loader.credentials(entry, where, f"model signer {entry['id']!r}", "model_signer", cas),
        ))
    checkpointers: list[Signer] = []
    for i, entry in enumerate(doc.get("checkpointSigners", [])):
        where = f"checkpointSigners[{i}]"
        if any(s.id == entry["id"] for s in checkpointers):
            raise InputError(f"duplicate checkpoint signer id {entry['id']!r}", file=name, field=f"{where}.id")
        checkpointers.append(Signer(id=entry["id"], name=entry["name"], keys=loader.keys(entry["keys"], where, f"checkpoint signer {entry['id']!r}")))
    summarizers: list[Signer] = []
    for i, entry in enumerate(doc.get("summarySigners", [])):
        where = f"summarySigners[{i}]"
        if any(s.id == entry["id"] for s in summarizers):
            raise InputError(f"duplicate summary signer id {entry['id']!r}", file=name, field=f"{where}.id")
        summarizers.append(Signer(id=entry["id"], name=entry["name"], keys=loader.keys(entry["keys"], where, f"summary signer {entry['id']!r}")))
    if any(s.keyless for s in (*approvers, *signers)) and trusted_root is None:
        raise InputError("keyless identities are listed but no sigstore.trustedRoot is given to verify them with", file=name, field="sigstore")
    meta = doc.get("metadata") or {}
    return TrustPolicy(
        source=name, digest=hashlib.sha256(data).hexdigest(), name=meta.get("name"), version=meta.get("version"),
        approvers=tuple(approvers), model_signers=tuple(signers), certificate_authorities=cas,
        sigstore_trusted_root=trusted_root, sigstore_trusted_root_source=trusted_root_source,
        checkpoint_signers=tuple(checkpointers), files=dict(loader.files), timestamp_authorities=tsas,
        summary_signers=tuple(summarizers),
    )


class _Loader:
    """Turns the validated document's credentials into objects, checking uniqueness as it goes."""

    def __init__(self, name: str, base_dir: Path):
        self.name = name
        self.base_dir = base_dir
        self.seen_keys: dict[str, str] = {}
        self.seen_identities: dict[tuple, str] = {}
        self.files: dict[str, str] = {}  # every file read, as the policy names it -> sha256 (for the revision)

    def _file(self, relative: str, field_path: str, limit: int, what: str = "file") -> tuple[bytes, str]:
        path = resolve_inside(self.base_dir, relative, file=self.name, field=field_path)
        try:
            data = read_bytes(path, limit=limit)
        except InputError as exc:
            raise InputError(f"{what} {relative!r}: {exc.message}", file=self.name, field=field_path) from None
        self.files[relative] = hashlib.sha256(data).hexdigest()
        return data, display(path)

    def validity(self, entry: dict, field_path: str) -> Validity:
        def t(key: str) -> dt.datetime | None:
            return parse_time(entry[key]) if key in entry else None

        revoked = entry.get("revoked") or {}
        validity = Validity(
            not_before=t("notBefore"), not_after=t("notAfter"),
            revoked_at=parse_time(revoked["at"]) if revoked else None, revocation_reason=revoked.get("reason"),
            compromised_at=parse_time(revoked["compromisedAt"]) if revoked.get("compromisedAt") else None,
        )
        if validity.compromised_at is not None:
            if validity.revocation_reason in SAFE_REVOCATION_REASONS:
                raise InputError(f"compromisedAt belongs to a compromise, not to a revocation for {validity.revocation_reason}",
                                 file=self.name, field=f"{field_path}.revoked.compromisedAt")
            if validity.compromised_at > validity.revoked_at:
                raise InputError(f"compromisedAt {rfc3339(validity.compromised_at)} is after the revocation at {rfc3339(validity.revoked_at)}",
                                 file=self.name, field=f"{field_path}.revoked.compromisedAt")
        if validity.not_before and validity.not_after and validity.not_after <= validity.not_before:
            raise InputError(f"notAfter {rfc3339(validity.not_after)} is not after notBefore {rfc3339(validity.not_before)}", file=self.name, field=f"{field_path}.notAfter")
        return validity

    def keys(self, entries: list[dict], where: str, owner: str) -> tuple[TrustedKey, ...]:
        out = []
        for i, entry in enumerate(entries):
            field_path = f"{where}.keys[{i}]"
            if "pem" in entry:
                public = load_public_key_pem(entry["pem"].encode("utf-8"), self.name, field=f"{field_path}.pem")
                source = "inline"
            else:
                pem, source = self._file(entry["path"], f"{field_path}.path", MAX_KEY_FILE_BYTES, "key file")
                public = load_public_key_pem(pem, source, field=None)
            kid = key_id(public)
            if "keyId" in entry and entry["keyId"] != kid:
                raise InputError(f"keyId {entry['keyId']} does not match the key, whose id is {kid}", file=self.name, field=f"{field_path}.keyId")
            if kid in self.seen_keys:
                raise InputError(f"key {kid} is already listed for {self.seen_keys[kid]}; one key must mean one identity", file=self.name, field=field_path)
            self.seen_keys[kid] = owner
            out.append(TrustedKey(key_id=kid, public_key=public, kind=key_kind(public), source=source, validity=self.validity(entry, field_path)))
        return tuple(out)

    def _unique(self, key: tuple, owner: str, what: str, field_path: str) -> None:
        if key in self.seen_identities:
            raise InputError(f"{what} is already listed for {self.seen_identities[key]}; one identity must mean one signer", file=self.name, field=field_path)
        self.seen_identities[key] = owner

    def credentials(self, entry: dict, where: str, owner: str, purpose: str, cas: tuple[CertificateAuthority, ...]) -> dict[str, Any]:
        certificates = []
        for i, item in enumerate(entry.get("certificates", [])):
            field_path = f"{where}.certificates[{i}]"
            if not any(c.id == item["ca"] for c in cas):
                known = ", ".join(c.id for c in cas) or "none"
                raise InputError(f"names CA {item['ca']!r}, which is not in certificateAuthorities (listed: {known})", file=self.name, field=f"{field_path}.ca")
            email = item.get("email", entry["id"])
            if "@" not in email:
                raise InputError(f"certificate identity {email!r} is not an email address (set 'email' explicitly)", file=self.name, field=f"{field_path}.email")
            self._unique((purpose, "x509", item["ca"], email.lower()), owner, f"certificate identity {email} (CA {item['ca']})", field_path)
            certificates.append(CertificateIdentity(ca=item["ca"], email=email, subject=item.get("subject"), validity=self.validity(item, field_path)))
        keyless = []
        for i, item in enumerate(entry.get("keyless", [])):
            field_path = f"{where}.keyless[{i}]"
            self._unique((purpose, "keyless", item["issuer"], item["subject"]), owner, f"keyless identity {item['subject']} ({item['issuer']})", field_path)
            keyless.append(KeylessIdentity(issuer=item["issuer"], subject=item["subject"], validity=self.validity(item, field_path)))
        return {
            "keys": self.keys(entry.get("keys", []), where, owner),
            "certificates": tuple(certificates),
            "keyless": tuple(keyless),
        }

    def timestamp_authorities(self, entries: list[dict]) -> tuple[TimestampAuthority, ...]:
        if not entries:  # most trust policies name none: no x509 import (~20 ms of a CLI start) for them
            return ()
        from cryptography import x509

        out: list[TimestampAuthority] = []
        for i, entry in enumerate(entries):
            where = f"timestampAuthorities[{i}]"
            if any(t.id == entry["id"] for t in out):
                raise InputError(f"duplicate timestamping authority id {entry['id']!r}", file=self.name, field=f"{where}.id")
            pinned = None
            if "certificate" in entry:
                (pinned,) = self._certificates([entry["certificate"]], f"{where}.certificate", ca=False)
                try:
                    eku = pinned.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
                    stamps = eku.critical and x509.ExtendedKeyUsageOID.TIME_STAMPING in eku.value
                except (x509.ExtensionNotFound, ValueError):
                    stamps = False
                if not stamps:
                    raise InputError(f"certificate {pinned.subject.rfc4514_string()} may not sign timestamps (expected a critical extendedKeyUsage timeStamping, RFC 3161 2.3)",
                                     file=self.name, field=f"{where}.certificate")
            out.append(TimestampAuthority(
                id=entry["id"], name=entry["name"],
                roots=self._certificates(entry["roots"], f"{where}.roots"),
                intermediates=self._certificates(entry.get("intermediates", []), f"{where}.intermediates"),
                certificate=pinned,
            ))
        return tuple(out)

    def _certificates(self, entries: list[dict], where: str, *, ca: bool = True) -> tuple[Any, ...]:
        from cryptography import x509

        out = []
        for i, entry in enumerate(entries):
            field_path = f"{where}[{i}]"
            if "pem" in entry:
                data, shown, field_name = entry["pem"].encode("utf-8"), self.name, f"{field_path}.pem"
            else:
                data, shown = self._file(entry["path"], f"{field_path}.path", MAX_CERT_FILE_BYTES, "certificate file")
                field_name = None
            if b"-----BEGIN CERTIFICATE-----" not in data:
                raise InputError("not a PEM certificate (no '-----BEGIN CERTIFICATE-----' block)", file=shown, field=field_name)
            try:
                certs = x509.load_pem_x509_certificates(data)
            except ValueError:
                raise InputError("not a valid PEM certificate (cannot decode it)", file=shown, field=field_name) from None
            if not ca:
                if len(certs) != 1:
                    raise InputError(f"expected one certificate, got {len(certs)}", file=shown, field=field_name)
                out.extend(certs)
                continue
            for cert in certs:
                try:
                    is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
                except x509.ExtensionNotFound:
                    is_ca = False
                if not is_ca:
                    raise InputError(f"certificate {cert.subject.rfc4514_string()} is not a CA certificate (basicConstraints CA:TRUE is required)", file=shown, field=field_name)
                out.append(cert)
        return tuple(out)

    def authorities(self, entries: list[dict]) -> tuple[CertificateAuthority, ...]:
        out: list[CertificateAuthority] = []
        for i, entry in enumerate(entries):
            where = f"certificateAuthorities[{i}]"
            if any(c.id == entry["id"] for c in out):
                raise InputError(f"duplicate CA id {entry['id']!r}", file=self.name, field=f"{where}.id")
            out.append(CertificateAuthority(
                id=entry["id"], name=entry.get("name"),
                roots=self._certificates(entry["roots"], f"{where}.roots"),
                intermediates=self._certificates(entry.get("intermediates", []), f"{where}.intermediates"),
            ))
        return tuple(out)

    def trusted_root(self, block: dict | None) -> tuple[bytes | None, str | None]:
        if not block:
            return None, None
        field_path = "sigstore.trustedRoot.path"
        data, shown = self._file(block["trustedRoot"]["path"], field_path, MAX_TRUSTED_ROOT_BYTES, "trusted root")
        from mlgate.safeio import parse_json

        doc = parse_json(data, shown)
        media = doc.get("mediaType") if isinstance(doc, dict) else None
        if not (isinstance(media, str) and media.startswith("application/vnd.dev.sigstore.trustedroot")):
            raise InputError(f"not a Sigstore TrustedRoot (mediaType {media!r}, expected application/vnd.dev.sigstore.trustedroot+json;version=0.1)", file=shown)
        return data, shown
