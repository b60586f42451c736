"""The trust policy: which approvers and model signers exist, with which keys, roles and meanings.

A YAML file versioned with the policies::

    apiVersion: mlgate.dev/v1
    kind: TrustPolicy
    metadata: {name: hospital-trust, version: "2026.11"}
    approvers:
      - id: jane.roe@hospital.example
        name: Dr. Jane Roe                      # the printed name (21 CFR 11.50)
        roles: [clinical-safety-officer]
        meanings: [review, approval]            # review | approval | responsibility | authorship
        environments: [staging, production]     # optional; absent = every environment
        keys:
          - path: keys/jane.roe.pub.pem         # relative to this file, may not leave its directory
          - pem: |                              # or inline
              -----BEGIN PUBLIC KEY-----
              ...
              -----END PUBLIC KEY-----
            keyId: 0b4c...                      # optional: must equal the computed key id
    modelSigners:
      - id: ml-platform-ci
        name: ML Platform CI
        keys: [{path: keys/ci.pub.pem}]

The key id is :func:`mlgate.keys.key_id` (hex SHA-256 of the PEM SubjectPublicKeyInfo, the hint
model-signing writes). A key id may appear only once in the whole policy, so one key always
means one identity. Every failure is an :class:`InputError` naming the file and the JSON path.

Keys are :class:`TrustedKey` objects rather than bare public keys so that validity windows and
revocation can be added to them (and checked in :meth:`TrustPolicy.approver_keys`) later.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlgate import schemas
from mlgate.errors import InputError
from mlgate.keys import MAX_KEY_FILE_BYTES, key_id, key_kind, load_public_key_pem
from mlgate.safeio import decode_text, display, parse_yaml, read_bytes, resolve_inside

API_VERSION = "mlgate.dev/v1"
KIND = "TrustPolicy"
MEANINGS = ("review", "approval", "responsibility", "authorship")

def schema_errors(doc: Any, schema_file: str, *, limit: int = 20) -> list[tuple[str, str]]:
    """(JSON path, message) for each schema violation, in document order; [] when valid."""
    return schemas.errors(schema_file, doc, limit=limit)


# --------------------------------------------------------------------------- types
@dataclass(frozen=True)
class TrustedKey:
    key_id: str
    public_key: Any = field(compare=False, repr=False)
    kind: str = ""
    source: str = ""  # "inline" or the key file as displayed


@dataclass(frozen=True)
class Approver:
    id: str
    name: str
    roles: tuple[str, ...]
    meanings: tuple[str, ...]
    environments: tuple[str, ...] | None  # None: every environment
    keys: tuple[TrustedKey, ...]

    def may_act_in(self, environment: str | None) -> bool:
        return self.environments is None or environment in self.environments


@dataclass(frozen=True)
class ModelSigner:
    id: str
    name: str
    keys: tuple[TrustedKey, ...]


@dataclass(frozen=True)
class TrustPolicy:
    source: str
    digest: str  # sha256 of the trust file bytes, for the decision record
    name: str | None
    version: str | None
    approvers: tuple[Approver, ...]
    model_signers: tuple[ModelSigner, ...]

    def approver(self, approver_id: str) -> Approver | None:
        return next((a for a in self.approvers if a.id == approver_id), None)

    def model_signer(self, signer_id: str) -> ModelSigner | None:
        return next((s for s in self.model_signers if s.id == signer_id), None)

    def approver_for_key(self, kid: str) -> Approver | None:
        return next((a for a in self.approvers if any(k.key_id == kid for k in a.keys)), None)

    def model_signer_for_key(self, kid: str) -> ModelSigner | None:
        return next((s for s in self.model_signers if any(k.key_id == kid for k in s.keys)), None)

    def approver_keys(self) -> dict[str, Any]:
        """key id -> public key for every approver key (the candidates for approvals)."""
        return {k.key_id: k.public_key for a in self.approvers for k in a.keys}

    def model_signer_keys(self) -> dict[str, Any]:
        """key id -> public key for every model-signer key (the candidates for model signatures)."""
        return {k.key_id: k.public_key for s in self.model_signers for k in s.keys}


# --------------------------------------------------------------------------- load
def load_trust_policy(path: Path) -> TrustPolicy:
    """Read and validate a trust policy file; key paths are resolved next to it."""
    data = read_bytes(path)
    return parse_trust_policy(data, display(path), base_dir=Path(path).resolve().parent)


def parse_trust_policy(data: bytes, name: str, *, base_dir: Path) -> TrustPolicy:
    doc = parse_yaml(decode_text(data, name), name)
    errors = schema_errors(doc, "trust_policy.schema.json")
    if errors:
        where, message = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise InputError(message + more, file=name, field=where)

    seen_keys: dict[str, str] = {}

    def keys_of(entries: list[dict], where: str, owner: str) -> tuple[TrustedKey, ...]:
        out = []
        for i, entry in enumerate(entries):
            field_path = f"{where}.keys[{i}]"
            if "pem" in entry:
                public = load_public_key_pem(entry["pem"].encode("utf-8"), name, field=f"{field_path}.pem")
                source = "inline"
            else:
                key_file = resolve_inside(base_dir, entry["path"], file=name, field=f"{field_path}.path")
                try:
                    pem = read_bytes(key_file, limit=MAX_KEY_FILE_BYTES)
                except InputError as exc:
                    raise InputError(f"key file {entry['path']!r}: {exc.message}", file=name, field=f"{field_path}.path") from None
                source = display(key_file)
                public = load_public_key_pem(pem, source, field=None)
            kid = key_id(public)
            if "keyId" in entry and entry["keyId"] != kid:
                raise InputError(f"keyId {entry['keyId']} does not match the key, whose id is {kid}", file=name, field=f"{field_path}.keyId")
            if kid in seen_keys:
                raise InputError(f"key {kid} is already listed for {seen_keys[kid]}; one key must mean one identity", file=name, field=field_path)
            seen_keys[kid] = owner
            out.append(TrustedKey(key_id=kid, public_key=public, kind=key_kind(public), source=source))
        return tuple(out)

    approvers = []
    for i, entry in enumerate(doc.get("approvers", [])):
        where = f"approvers[{i}]"
        if any(a.id == entry["id"] for a in approvers):
            raise InputError(f"duplicate approver id {entry['id']!r}", file=name, field=f"{where}.id")
        envs = entry.get("environments")
        approvers.append(Approver(
            id=entry["id"], name=entry["name"], roles=tuple(entry["roles"]), meanings=tuple(entry["meanings"]),
            environments=tuple(envs) if envs is not None else None,
            keys=keys_of(entry["keys"], where, f"approver {entry['id']!r}"),
        ))
    signers = []
    for i, entry in enumerate(doc.get("modelSigners", [])):
        where = f"modelSigners[{i}]"
        if any(s.id == entry["id"] for s in signers):
            raise InputError(f"duplicate model signer id {entry['id']!r}", file=name, field=f"{where}.id")
        signers.append(ModelSigner(id=entry["id"], name=entry["name"], keys=keys_of(entry["keys"], where, f"model signer {entry['id']!r}")))
    meta = doc.get("metadata") or {}
    return TrustPolicy(
        source=name, digest=hashlib.sha256(data).hexdigest(), name=meta.get("name"), version=meta.get("version"),
        approvers=tuple(approvers), model_signers=tuple(signers),
    )
