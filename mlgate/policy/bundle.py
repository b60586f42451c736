"""OPA bundles of a policy directory: build, sign, verify, load (``mlgate policy bundle``).

The format is OPA's (docs/content/management-bundles.md): a gzipped tarball holding the
``.rego`` modules, the ``data.json``/``data.yaml`` documents at their data paths, and a
``.manifest`` with ``revision`` and ``roots``. mlgate also ships ``trust.yaml`` in it when the
policy directory has one (OPA loads only Rego and data files, and ignores it). The manifest's
revision is the policy's own revision (:attr:`mlgate.policy.PolicySet.bundle_revision`): the
remote OPA engine requires OPA to report it (``provenance=true``), and the revision mlgate
records with each decision digests it together with the overrides, the trust policy, the
settings file and the engine (:func:`mlgate.gate.prepare`).

Signing follows OPA's bundle signing: ``.signatures.json`` is ``{"signatures": [JWT]}``; the
JWT's header carries ``alg`` and ``kid`` (the mlgate key id of the public key), its payload
``{"files": [{"name", "hash", "algorithm": "SHA-256"}]}`` listing every other file of the bundle.
Hashes follow OPA's ``bundle/hash.go``: raw bytes for modules and other files; for structured
files (``data.json``, ``data.yaml``, ``.manifest``) the parsed document re-encoded with object
keys sorted, no whitespace, numbers as written and Go's JSON string escaping without HTML
escaping. The JWT is made and checked by PyJWT over ``cryptography`` (ES256 for P-256 keys,
ES384/ES512 for P-384/P-521, EdDSA for Ed25519); nothing cryptographic is written here.

Reading a bundle is hostile-input parsing: only regular files, relative paths without ``..``,
no duplicates, at most :data:`MAX_FILES` files, :data:`MAX_FILE_BYTES` per file and
:data:`MAX_TOTAL_BYTES` in all (checked while decompressing, so a gzip bomb stops early).
Verification (with a key) requires exactly one JWT, a signature by that key, the same set of
files as the JWT lists and every hash equal; a signed bundle loaded without a key is refused, as
OPA does. Every failure is a one-line :class:`~mlgate.errors.SignatureError` or
:class:`~mlgate.errors.PolicyError`.
"""

from __future__ import annotations

import atexit
import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from mlgate.errors import PolicyError, SignatureError
from mlgate.safeio import display

MANIFEST = ".manifest"
SIGNATURES = ".signatures.json"
STRUCTURED = {"data.json", "data.yaml", MANIFEST, SIGNATURES}
MAX_FILES = 10_000
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_TOTAL_BYTES = 64 * 1024 * 1024
MAX_COMPRESSED_BYTES = 32 * 1024 * 1024
_HASHES = {"MD5": "md5", "SHA-1": "sha1", "SHA-224": "sha224", "SHA-256": "sha256", "SHA-384": "sha384",
           "SHA-512": "sha512", "SHA-512-224": "sha512_224", "SHA-512-256": "sha512_256"}
_ALGORITHMS = {"ecdsa-p256": "ES256", "ecdsa-p384": "ES384", "ecdsa-p521": "ES512", "ed25519": "EdDSA"}


@dataclass(frozen=True)
class BundleInfo:
    path: str
    revision: str
    roots: tuple[str, ...]
    files: tuple[str, ...]  # every file but .signatures.json
    signed: bool
    key_id: str | None = None
    contents: dict[str, bytes] = field(default_factory=dict, repr=False, compare=False)


# --- OPA's file hash ------------------------------------------------------------------------------


class _Number(str):
    """A JSON number kept as written (OPA decodes numbers as json.Number and re-encodes the text)."""


def _go_string(value: str) -> str:
    """Go's json encoder with SetEscapeHTML(false): UTF-8 kept, control characters escaped."""
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif code < 0x20 or code in (0x2028, 0x2029):
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _walk(value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value)):
            if i:
                out.append(",")
            out.append(_go_string(key))
            out.append(":")
            _walk(value[key], out)
        out.append("}")
    elif isinstance(value, list):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _walk(item, out)
        out.append("]")
    elif isinstance(value, _Number):
        out.append(str.__str__(value))
    elif isinstance(value, bool):
        out.append("true" if value else "false")
    elif value is None:
        out.append("null")
    elif isinstance(value, str):
        out.append(_go_string(value))
    elif isinstance(value, (int, float)):  # from YAML
        out.append(json.dumps(value))
    else:
        raise PolicyError(f"cannot hash a {type(value).__name__} in a structured bundle file")


def _structured(name: str, data: bytes) -> Any:
    where = f"bundle file {name}"
    try:
        if name.endswith(".yaml"):
            from mlgate.safeio import decode_text, parse_yaml

            return parse_yaml(decode_text(data, where), where)
        return json.loads(data.decode("utf-8-sig"), parse_float=_Number, parse_int=_Number)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{where} is not valid JSON: {' '.join(str(exc).split())}") from None


def file_hash(name: str, data: bytes, algorithm: str = "SHA-256") -> str:
    """The hex digest OPA computes for bundle file ``name`` (bundle/hash.go, bundle/verify.go)."""
    if algorithm not in _HASHES:
        raise SignatureError(f"{name}: unsupported hash algorithm {algorithm!r} (OPA knows {', '.join(_HASHES)})")
    h = hashlib.new(_HASHES[algorithm])
    if PurePosixPath(name).name in STRUCTURED:
        out: list[str] = []
        _walk(_structured(name, data), out)
        h.update("".join(out).encode("utf-8"))
    else:
        h.update(data)
    return h.hexdigest()


# --- build ----------------------------------------------------------------------------------------


def _roots(policy: Any) -> list[str]:
    import re

    roots = set(policy.data)
    for module in policy.modules:
        match = re.search(r"^\s*package\s+([A-Za-z_][A-Za-z0-9_]*)", module.text, re.MULTILINE)
        if match:
            roots.add(match.group(1))
    return sorted(roots)


def _signing_algorithm(key: Any) -> str:
    from mlgate.signing.keys import key_kind

    kind = key_kind(key)
    if kind not in _ALGORITHMS:  # pragma: no cover - keys.py accepts only these
        raise SignatureError(f"no JWT algorithm for a {kind} key")
    return _ALGORITHMS[kind]


def sign_files(contents: dict[str, bytes], signing_key: Path) -> bytes:
    """The ``.signatures.json`` for ``contents`` (every bundle file but the signatures)."""
    import jwt

    from mlgate.signing.keys import key_id, load_private_key

    private = load_private_key(signing_key)
    files = [{"name": name, "hash": file_hash(name, data), "algorithm": "SHA-256"} for name, data in sorted(contents.items())]
    token = jwt.encode({"files": files}, private, algorithm=_signing_algorithm(private), headers={"kid": key_id(private.public_key())})
    return (json.dumps({"signatures": [token]}, indent=2) + "\n").encode("utf-8")


def _tar_bytes(contents: dict[str, bytes]) -> bytes:
    """A reproducible .tar.gz: sorted names, zero times, root ownership, mode 0644."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(contents):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = len(contents[name]), 0, 0o644, 0, 0, "", ""
            tar.addfile(info, io.BytesIO(contents[name]))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def build_bundle(policy_dir: Path | None, out: Path, *, signing_key: Path | None = None) -> BundleInfo:
    """Write the OPA bundle of ``policy_dir`` (default: the bundled library) to ``out``."""
    from mlgate.policy.compose import GENERATED_PATH
    from mlgate.policy.policyset import load_policy_dir
    from mlgate.safeio import read_bytes

    policy = load_policy_dir(policy_dir, require_rules=False)  # a layer of data alone (thresholds) ships too
    contents = {rel: read_bytes(policy.root / rel) for rel in sorted(policy.files)}
    # The findings composition mlgate generates at load, so that a plain OPA serving the bundle decides
    # the same (mlgate itself generates it again from the packages present and ignores this copy).
    contents[GENERATED_PATH] = next(m.text for m in policy.modules if m.path == GENERATED_PATH).encode("utf-8")
    roots = _roots(policy)
    manifest = {"revision": policy.bundle_revision, "roots": roots}
    contents[MANIFEST] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
    if signing_key is not None:
        contents[SIGNATURES] = sign_files({k: v for k, v in contents.items() if k != SIGNATURES}, signing_key)
    data = _tar_bytes(contents)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, out)
    except OSError as exc:
        raise PolicyError(f"cannot write the bundle: {exc.strerror or exc}", file=display(out)) from None
    info = read_bundle(out)
    return BundleInfo(display(out), policy.bundle_revision, tuple(roots), info.files, signing_key is not None, info.key_id)


# --- read and verify ------------------------------------------------------------------------------


def _safe_name(name: str, where: str) -> str:
    clean = name[2:] if name.startswith("./") else name.lstrip("/")  # OPA's own tarballs name files /a/b.rego
    parts = clean.split("/")
    if not clean or "\\" in clean or "\x00" in clean or any(p in ("", ".", "..") for p in parts) or PurePosixPath(clean).is_absolute():
        raise PolicyError(f"bundle entry {name!r} is not a plain relative path; refused", file=where)
    return "/".join(parts)


def read_bundle(path: Path) -> BundleInfo:
    """Read a bundle into memory with every cap enforced; no verification of signatures."""
    where = display(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise PolicyError(f"cannot read the bundle: {exc.strerror or exc}", file=where) from None
    if size > MAX_COMPRESSED_BYTES:
        raise PolicyError(f"bundle is {size / 1e6:.1f} MB, larger than the {MAX_COMPRESSED_BYTES // (1024 * 1024)} MiB limit", file=where)
    contents: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(path, mode="r|gz") as tar:  # a stream: members are read in order, once
            for member in tar:
                if member.isdir():
                    continue
                if not member.isfile():
                    raise PolicyError(f"bundle entry {member.name!r} is not a regular file (links and devices are refused)", file=where)
                name = _safe_name(member.name, where)
                if name in contents:
                    raise PolicyError(f"bundle entry {name!r} appears twice", file=where)
                if len(contents) >= MAX_FILES:
                    raise PolicyError(f"bundle has more than {MAX_FILES} files", file=where)
                if member.size > MAX_FILE_BYTES:
                    raise PolicyError(f"bundle entry {name!r} is {member.size} bytes, over the {MAX_FILE_BYTES} byte limit", file=where)
                total += member.size
                if total > MAX_TOTAL_BYTES:
                    raise PolicyError(f"bundle unpacks to more than {MAX_TOTAL_BYTES // (1024 * 1024)} MiB", file=where)
                fh = tar.extractfile(member)
                data = fh.read(member.size + 1) if fh is not None else b""
                if len(data) != member.size:
                    raise PolicyError(f"bundle entry {name!r} is truncated", file=where)
                contents[name] = data
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, OSError, zlib_error()) as exc:
        raise PolicyError(f"not a readable .tar.gz bundle: {' '.join(str(exc).split()) or type(exc).__name__}", file=where) from None
    if MANIFEST not in contents:
        raise PolicyError("bundle has no .manifest (mlgate needs its revision)", file=where)
    manifest = _structured(MANIFEST, contents[MANIFEST])
    if not isinstance(manifest, dict) or not isinstance(manifest.get("revision"), str):
        raise PolicyError(".manifest has no string revision", file=where)
    roots = manifest.get("roots", [""])
    if not isinstance(roots, list) or not all(isinstance(r, str) for r in roots):
        raise PolicyError(".manifest roots must be a list of strings", file=where)
    key_id = None
    if SIGNATURES in contents:
        key_id = _token_header(_single_token(contents[SIGNATURES], where), where).get("kid")
    return BundleInfo(where, str(manifest["revision"]), tuple(str(r) for r in roots),
                      tuple(sorted(n for n in contents if n != SIGNATURES)), SIGNATURES in contents,
                      key_id if isinstance(key_id, str) else None, contents)


def zlib_error() -> type[BaseException]:
    import zlib

    return zlib.error


def _single_token(raw: bytes, where: str) -> str:
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise SignatureError(".signatures.json is not JSON", file=where) from None
    tokens = doc.get("signatures") if isinstance(doc, dict) else None
    if not isinstance(tokens, list) or len(tokens) != 1 or not isinstance(tokens[0], str):
        raise SignatureError(".signatures.json must hold exactly one JWT in `signatures` (as OPA requires)", file=where)
    return tokens[0]


def _token_header(token: str, where: str) -> dict[str, Any]:
    import jwt

    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise SignatureError(f".signatures.json: malformed JWT: {exc}", file=where) from None


def verify_bundle(path: Path, key: Path) -> BundleInfo:
    """Verify a signed bundle with the PEM public key ``key``; return it, or raise SignatureError."""
    import jwt

    from mlgate.signing.keys import key_id, load_public_key

    info = read_bundle(path)
    where = info.path
    if not info.signed:
        raise SignatureError("bundle is not signed (no .signatures.json) but a verification key was given", file=where)
    public = load_public_key(key)
    expected_kid = key_id(public)
    token = _single_token(info.contents[SIGNATURES], where)
    header = _token_header(token, where)
    algorithm = _signing_algorithm(public)
    if header.get("alg") != algorithm:
        raise SignatureError(f"bundle JWT uses alg {header.get('alg')!r}, expected {algorithm} for the key {display(key)}", file=where)
    if "kid" in header and header["kid"] != expected_kid:
        raise SignatureError(f"bundle was signed by key id {str(header['kid'])[:16]}…, expected {expected_kid[:16]}… ({display(key)})", file=where)
    try:
        payload = jwt.decode(token, public, algorithms=[algorithm], options={"verify_aud": False, "require": []})
    except jwt.InvalidSignatureError:
        raise SignatureError(f"bundle signature does not verify with {display(key)}", file=where) from None
    except jwt.PyJWTError as exc:
        raise SignatureError(f"bundle JWT rejected: {' '.join(str(exc).split())}", file=where) from None
    if payload.get("scope") not in (None, ""):
        raise SignatureError(f"bundle JWT has scope {payload['scope']!r}; mlgate verifies unscoped bundles only", file=where)
    listed = payload.get("files")
    if not isinstance(listed, list) or not all(isinstance(f, dict) and isinstance(f.get("name"), str) for f in listed):
        raise SignatureError("bundle JWT payload has no valid `files` list", file=where)
    signed = {f["name"].lstrip("/"): f for f in listed}
    present = set(info.files)
    missing, extra = sorted(set(signed) - present), sorted(present - set(signed))
    if missing or extra:
        parts = ([f"signed but absent: {', '.join(missing[:5])}"] if missing else []) + ([f"present but not signed: {', '.join(extra[:5])}"] if extra else [])
        raise SignatureError(f"bundle files differ from the signed list ({'; '.join(parts)})", file=where)
    for name in sorted(present):
        entry = signed[name]
        got = file_hash(name, info.contents[name], str(entry.get("algorithm", "")))
        if got != str(entry.get("hash", "")).lower():
            raise SignatureError(f"{name}: digest mismatch (signed {str(entry.get('hash'))[:16]}…, got {got[:16]}…)", file=where)
    return info


# --- load as a policy -----------------------------------------------------------------------------

_EXTRACTED: list[str] = []


def _cleanup() -> None:
    for d in _EXTRACTED:
        shutil.rmtree(d, ignore_errors=True)


def is_bundle_path(path: Path) -> bool:
    return path.is_file() and (path.name.endswith(".tar.gz") or path.name.endswith(".tgz"))


def load_bundle_policy(path: Path, *, key: Path | None = None, data_overrides: list[Path] | None = None,
                       require_finding_ids: bool = True, require_rules: bool = True) -> Any:
    """The PolicySet of a bundle: verified with ``key`` when given (a signed bundle needs one),
    unpacked into a private temporary directory, its revision checked against the manifest."""
    from mlgate.policy.policyset import load_policy_dir

    info = verify_bundle(path, key) if key is not None else read_bundle(path)
    if key is None and info.signed:
        raise SignatureError("bundle is signed; pass its public key (--bundle-key) to verify it, as OPA requires", file=info.path)
    root = Path(tempfile.mkdtemp(prefix="mlgate-bundle-"))
    if not _EXTRACTED:
        atexit.register(_cleanup)
    _EXTRACTED.append(str(root))
    for name, data in info.contents.items():
        if name in (MANIFEST, SIGNATURES):
            continue
        target = root.joinpath(*name.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    policy = load_policy_dir(root, data_overrides=data_overrides, require_finding_ids=require_finding_ids, require_rules=require_rules)
    own = policy.bundle_revision  # the bundle's own files; overrides join policy.revision, not this
    if own != info.revision:
        raise PolicyError(f".manifest revision {info.revision[:16]}… does not match the bundle's files (revision {own[:16]}…)", file=info.path)
    return policy
