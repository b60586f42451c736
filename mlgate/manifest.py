"""The release manifest ``mlgate.yaml``: parsed at the edge into an immutable :class:`Release`.

A :class:`Release` that exists is valid: its schema was checked and every path it names
resolves inside the release directory.

**What a signature binds** (:func:`release_binding`): approvals and waivers sign the release's
identity (name, version, every storage URI it declares for its model) and the sha256 of the
*bound manifest*: the parsed manifest as canonical JSON, less ``spec.evidence.approvals`` and
``spec.evidence.waivers`` (the signed statements cannot sign their own listing). So ``owner``,
the datasets and their digests, each validation record's ``validatedAt``, the lineage, privacy
and provenance blocks are all covered. Beside the digest the signature carries one digest per
manifest field, so a change after signing is reported by field (:func:`binding_changes`:
``metadata.name: approved 'readmission-risk', now 'sepsis-alert'``), not just as "changed".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlgate import schemas
from mlgate.canonical import NotCanonical, canonical_json, escape_surrogates, sha256_hex
from mlgate.errors import InputError
from mlgate.safeio import decode_text, display, parse_yaml, read_bytes, resolve_inside

MANIFEST_NAME = "mlgate.yaml"
# The listings of signed statements: not part of what those statements sign.
_UNBOUND_EVIDENCE = ("approvals", "waivers")


@dataclass(frozen=True)
class Dataset:
    name: str
    uri: str
    declared_sha256: str
    local_path: Path | None  # the file, when the uri is a path inside the release
    missing: bool = False  # the uri is a path inside the release and nothing is there: a deny, like a changed file


@dataclass(frozen=True)
class ValidationRef:
    path: Path
    rel: str
    dataset: str | None
    format: str | None = None  # the adapter named in the manifest; None: recognised from the content
    validated_at: str | None = None  # when the result carries no time of its own (Evidently, pandera, TFDV)


@dataclass(frozen=True)
class Release:
    root: Path
    manifest_path: Path
    manifest_digest: str
    name: str
    version: str
    owner: str
    model_path: Path
    model_rel: str
    signature_path: Path | None
    signature_rel: str | None
    storage_uri: str | None
    datasets: tuple[Dataset, ...]
    model_card: tuple[Path, str] | None
    data_validation: tuple[ValidationRef, ...]
    bias_audit: tuple[Path, str] | None
    approvals: tuple[tuple[Path, str], ...]  # expanded: directories become their files
    approval_dirs: tuple[Path, ...] = ()  # directories named in spec.evidence.approvals
    waivers: tuple[tuple[Path, str], ...] = ()  # signed waivers (risk acceptances), expanded like approvals
    waiver_dirs: tuple[Path, ...] = ()  # directories named in spec.evidence.waivers
    provenance: dict[str, Any] | None = None  # spec.provenance as written by `mlgate evidence collect`
    lineage: dict[str, Any] | None = None  # spec.lineage: initial or retrain (predecessor, PCCP modification)
    privacy: dict[str, Any] | None = None  # spec.privacy: the HIPAA de-identification declaration
    binding: dict[str, Any] | None = None  # what an approval or waiver of this release signs (release_binding)

    def evaluated_evidence(self) -> tuple[tuple[Path, str], ...]:
        """The evidence an approval signs for: model card, data validation, bias audit (not approvals)."""
        items = [self.model_card] if self.model_card else []
        items += [(ref.path, ref.rel) for ref in self.data_validation]
        items += [self.bias_audit] if self.bias_audit else []
        return tuple(items)


def _is_local_uri(uri: str) -> bool:
    return "://" not in uri and not uri.startswith(("s3:", "gs:", "hf:"))


def load_release(path: Path | str) -> Release:
    """Load ``DIR/mlgate.yaml`` (or the manifest file itself)."""
    given = Path(path)
    if given.is_dir():
        root, manifest_path = given, given / MANIFEST_NAME
    elif given.name == MANIFEST_NAME or given.suffix in (".yaml", ".yml"):
        root, manifest_path = given.parent, given
    elif not given.exists():
        raise InputError("release directory not found", file=display(given))
    else:
        raise InputError(f"expected a release directory containing {MANIFEST_NAME}", file=display(given))
    name = display(manifest_path)
    raw = read_bytes(manifest_path)
    doc = parse_yaml(decode_text(raw, name), name)
    if doc is None:
        raise InputError("empty manifest", file=name)
    problems = schemas.errors("manifest.schema.json", doc)
    if problems:
        where, message = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InputError(message + more, file=name, field=where)
    return _build(root, manifest_path, name, sha256_hex(raw), doc)


def _build(root: Path, manifest_path: Path, name: str, digest: str, doc: dict[str, Any]) -> Release:
    meta, spec = doc["metadata"], doc["spec"]
    model = spec["model"]

    def inside(rel: str, field: str, *, must_exist: bool = True) -> Path:
        resolved = resolve_inside(root, rel, file=name, field=field)
        if must_exist and not resolved.exists():
            raise InputError(f"{rel!r} does not exist", file=name, field=field)
        return resolved

    model_path = inside(model["path"], "spec.model.path")
    signature = model.get("signature")
    signature_path = inside(signature, "spec.model.signature") if signature else None

    datasets = []
    seen: set[str] = set()
    for i, ds in enumerate(spec.get("datasets", [])):
        field = f"spec.datasets[{i}]"
        if ds["name"] in seen:
            raise InputError(f"duplicate dataset name {ds['name']!r}", file=name, field=field + ".name")
        seen.add(ds["name"])
        local, missing = None, False
        if _is_local_uri(ds["uri"]):
            local = resolve_inside(root, ds["uri"], file=name, field=field + ".uri")
            # Declared inside the release, and gone (or a directory where a file belongs: nothing
            # whose digest can match): the evidence facts say so, a deny naming it (MLG-DATA-006).
            missing = not local.exists() or local.is_dir()
            if missing:  # a FIFO or a device stays: hashing it is an error naming it, never a remote uri
                local = None
        datasets.append(Dataset(ds["name"], ds["uri"], ds["digest"]["sha256"], local, missing))

    evidence = spec.get("evidence", {})
    card = evidence.get("modelCard")
    validations = []
    for i, item in enumerate(evidence.get("dataValidation", [])):
        rel, ds_name = (item, None) if isinstance(item, str) else (item["path"], item.get("dataset"))
        fmt, validated_at = (None, None) if isinstance(item, str) else (item.get("format"), item.get("validatedAt"))
        if ds_name is not None and ds_name not in seen:
            raise InputError(f"names dataset {ds_name!r}, which spec.datasets does not declare", file=name, field=f"spec.evidence.dataValidation[{i}].dataset")
        vpath = inside(rel, f"spec.evidence.dataValidation[{i}]")
        validations.append(ValidationRef(vpath, vpath.relative_to(root.resolve()).as_posix(), ds_name, fmt, validated_at))
    bias = evidence.get("biasAudit")

    rroot = root.resolve()

    def signed_files(key: str) -> tuple[list[Path], list[Path]]:
        """The files named in spec.evidence.<key>: directories expand to the files in them."""
        files: list[Path] = []
        dirs: list[Path] = []
        for i, rel in enumerate(evidence.get(key, [])):
            field = f"spec.evidence.{key}[{i}]"
            p = inside(rel, field)
            if not p.is_dir():
                files.append(p)
                continue
            dirs.append(p)
            for child in sorted(p.iterdir(), key=lambda c: c.name):
                if child.name.startswith("."):
                    continue
                # Each file in such a directory is resolved on its own: a symlink cannot leave the release.
                resolved = resolve_inside(root, (p / child.name).relative_to(rroot).as_posix(), file=name, field=field)
                if resolved.exists() and not resolved.is_dir():  # a FIFO or a device too: reading it is an error naming it
                    files.append(resolved)
        return files, dirs

    approvals, approval_dirs = signed_files("approvals")
    waivers, waiver_dirs = signed_files("waivers")
    overlap = {w for w in waivers} & {a for a in approvals}
    if overlap:
        raise InputError(f"{sorted(overlap)[0].relative_to(rroot).as_posix()!r} is listed both as an approval and as a waiver",
                         file=name, field="spec.evidence.waivers")

    def _with_rel(p: Path) -> tuple[Path, str]:
        return p, p.relative_to(rroot).as_posix()

    return Release(
        root=root,
        manifest_path=manifest_path,
        manifest_digest=digest,
        name=doc["metadata"]["name"],
        version=meta["version"],
        owner=meta["owner"],
        model_path=model_path,
        model_rel=model["path"],
        signature_path=signature_path,
        signature_rel=signature,
        storage_uri=model.get("storageUri"),
        datasets=tuple(datasets),
        model_card=_with_rel(inside(card, "spec.evidence.modelCard")) if card else None,
        data_validation=tuple(validations),
        bias_audit=_with_rel(inside(bias, "spec.evidence.biasAudit")) if bias else None,
        approvals=tuple(_with_rel(p) for p in approvals),
        approval_dirs=tuple(approval_dirs),
        waivers=tuple(_with_rel(p) for p in waivers),
        waiver_dirs=tuple(waiver_dirs),
        provenance=spec.get("provenance"),
        lineage=spec.get("lineage"),
        privacy=spec.get("privacy"),
        binding=_binding(doc, name),
    )


# --------------------------------------------------------------------------- binding
def _binding(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """:func:`release_binding`, or a one-line input error naming the manifest and the value that
    has no canonical form (NaN, infinity, a YAML type JSON lacks)."""
    try:
        return release_binding(doc)
    except NotCanonical as exc:
        raise InputError(f"a value has no canonical JSON form, so no signature can bind it: {exc}", file=name) from None


def _field_digest(value: Any) -> str:
    return "sha256:" + sha256_hex(canonical_json(escape_surrogates(value)))


def release_binding(doc: dict[str, Any]) -> dict[str, Any]:
    """What an approval or waiver of the release described by the parsed manifest ``doc``
    signs: ``{name, version, storageUris, manifestDigest, fields}`` (see the module docstring).

    ``fields`` maps each manifest field (``metadata.owner``, ``spec.datasets``,
    ``spec.evidence.dataValidation``, ``spec.provenance``...) to the sha256 of its canonical
    JSON; ``manifestDigest`` is the sha256 of the whole bound manifest."""
    bound = {k: v for k, v in doc.items()}
    spec = dict(doc.get("spec") or {})
    evidence = {k: v for k, v in (spec.get("evidence") or {}).items() if k not in _UNBOUND_EVIDENCE}
    spec["evidence"] = evidence
    bound["spec"] = spec
    fields: dict[str, str] = {}
    for key, value in bound.items():
        if key in ("metadata", "spec") and isinstance(value, dict):
            for sub, subvalue in value.items():
                if key == "spec" and sub in ("model", "evidence") and isinstance(subvalue, dict):
                    for leaf, leafvalue in subvalue.items():
                        fields[f"spec.{sub}.{leaf}"] = _field_digest(leafvalue)
                else:
                    fields[f"{key}.{sub}"] = _field_digest(subvalue)
        else:
            fields[key] = _field_digest(value)
    model = spec.get("model") or {}
    uri = model.get("storageUri")
    meta = doc.get("metadata") or {}
    return {
        "name": meta.get("name"),
        "version": meta.get("version"),
        "owner": meta.get("owner"),
        "storageUris": [uri] if isinstance(uri, str) else [],
        "manifestDigest": sha256_hex(canonical_json(escape_surrogates(bound))),
        "fields": dict(sorted(fields.items())),
    }


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def binding_changes(signed: Any, current: dict[str, Any], *, verb: str = "approved") -> list[str]:
    """What differs between the binding a statement signed and the release now, one line per
    field, identity first (``metadata.name: approved 'a', now 'b'``); empty when nothing did."""
    if not isinstance(signed, dict):
        return ["release: the statement binds no release identity"]
    changes: list[str] = []
    identity = (("name", "metadata.name"), ("version", "metadata.version"), ("owner", "metadata.owner"),
                ("storageUris", "spec.model.storageUri"))
    for key, label in identity:
        if signed.get(key) != current.get(key):
            changes.append(f"{label}: {verb} {_show(signed.get(key))}, now {_show(current.get(key))}")
    then, now = signed.get("fields"), current.get("fields") or {}
    if isinstance(then, dict):
        for field in sorted(set(then) | set(now)):
            if field in {label for _key, label in identity}:
                continue
            if field not in now:
                changes.append(f"{field}: removed since it was signed")
            elif field not in then:
                changes.append(f"{field}: added since it was signed")
            elif then[field] != now[field]:
                changes.append(f"{field}: changed since it was signed")
    if not changes and signed.get("manifestDigest") != current.get("manifestDigest"):
        changes.append(f"manifest: signed digest {str(signed.get('manifestDigest'))[:16]}..., now {str(current.get('manifestDigest'))[:16]}...")
    return changes


def binding_verdict(signed: Any, current: dict[str, Any], *, verb: str = "approved") -> tuple[str, list[str]]:
    """A verified statement's binding judged against the release now: ``("bound", [])``,
    ``("changed", [one line per field])`` or ``("legacy", [])`` (the statement signs no release,
    ``signed`` is None)."""
    if signed is None:
        return "legacy", []
    changes = binding_changes(signed, current, verb=verb)
    return ("changed" if changes else "bound"), changes
