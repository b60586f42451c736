"""OPA bundles as OCI artifacts: push to and pull from a registry (``mlgate policy push|pull``,
``--policy oci://REGISTRY/REPO@sha256:...``).

The artifact is the one OPA's OCI downloader reads (``download/oci_download.go``): an image
manifest (``application/vnd.oci.image.manifest.v1+json``) whose config blob has the media type
``application/vnd.oci.image.config.v1+json`` and whose one layer is the bundle tarball
(``application/vnd.oci.image.layer.v1.tar+gzip``). The registry protocol is spoken by ``oras``
(imported only here, and only when an ``oci://`` policy is used, so ``mlgate check`` starts as
fast as before for local policies); nothing else in mlgate talks to a registry.

A registry is untrusted transport. Pulling checks the manifest against the digest asked for (or
records the digest a tag resolved to, once), takes exactly one bundle layer, bounds every read
(:data:`MAX_MANIFEST_BYTES`, the bundle's compressed-size cap) and checks the layer's sha256 and
size before a byte of it is parsed; the bundle signature is then verified as for a local bundle
(:func:`mlgate.policy.bundle.load_bundle_policy`: a signed bundle without a key is refused).

Bundles are cached by manifest digest (content-addressed) under :func:`cache_dir`
(``$MLGATE_OCI_CACHE``, else ``$XDG_CACHE_HOME/mlgate/oci``, else ``~/.cache/mlgate/oci``); a
cached entry is re-checked against its digest on every use and discarded when it does not match.
A registry that is down is an error, except for a digest reference already in the cache.

Registries on a loopback address (``localhost``, ``127.0.0.1``, ``[::1]``) are spoken to over plain
HTTP (as Docker allows); every other registry over HTTPS with certificate verification, or plain
HTTP when ``MLGATE_OCI_PLAIN_HTTP=1``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlgate.errors import MlgateError, PolicyError
from mlgate.policy.bundle import MAX_COMPRESSED_BYTES

SCHEME = "oci://"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
BUNDLE_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
MAX_MANIFEST_BYTES = 1024 * 1024
TIMEOUT_S = 15.0
CONFIG_BYTES = b"{}"

_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:]+\])(?::[0-9]{1,5})?$")
_REPO = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_LOOPBACK = ("localhost", "127.0.0.1", "[::1]")


@dataclass(frozen=True)
class OciRef:
    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        return SCHEME + self.registry + "/" + self.repository + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def at(self, digest: str) -> OciRef:
        return OciRef(self.registry, self.repository, self.tag, digest)

    @property
    def target(self) -> str:
        """What the registry's manifest endpoint takes: the digest when known, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def host(self) -> str:
        return self.registry.rsplit(":", 1)[0] if not self.registry.endswith("]") else self.registry


def is_oci(source: Any) -> bool:
    """True for ``oci://...`` (also as a :class:`~pathlib.Path`, which folds ``//`` into ``/``)."""
    return source is not None and str(source).startswith("oci:/")


def parse_ref(source: Any) -> OciRef:
    """``oci://REGISTRY/REPO[:TAG][@sha256:HEX]``; anything else is a one-line PolicyError."""
    text = str(source)
    if text.startswith(SCHEME):
        rest = text[len(SCHEME):]
    elif text.startswith("oci:/"):
        rest = text[len("oci:/"):]
    else:
        raise PolicyError(f"not an OCI reference (oci://REGISTRY/REPO:TAG or @sha256:...): {text!r}", field="policy")
    where = SCHEME + rest
    digest = None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.match(digest):
            raise PolicyError(f"{where}: the digest must be sha256: and 64 lowercase hex digits", field="policy")
    registry, _, path = rest.partition("/")
    if not path or not _HOST.match(registry):
        raise PolicyError(f"{where}: expected oci://REGISTRY[:PORT]/REPOSITORY[:TAG][@sha256:...]", field="policy")
    tag = None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, tag = path.rsplit(":", 1)
        if not _TAG.match(tag):
            raise PolicyError(f"{where}: invalid tag {tag!r}", field="policy")
    if not _REPO.match(path):
        raise PolicyError(f"{where}: invalid repository name {path!r} (lowercase letters, digits, separators . _ -)", field="policy")
    if tag is None and digest is None:
        raise PolicyError(f"{where}: give a tag (:TAG) or a digest (@sha256:...)", field="policy")
    return OciRef(registry, path, tag, digest)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- the registry client (oras) ---------------------------------------------------------------------


def _client(ref: OciRef) -> Any:
    """An oras Registry for ``ref``: no retry loop with sleeps (a registry that is down is an answer,
    not something to wait minutes for) and a timeout on every request."""
    try:
        import oras.provider
    except ImportError:
        raise PolicyError("oci:// policies need the oras package (pip install oras)", field="policy") from None

    base = oras.provider.Registry
    unwrapped = getattr(base.do_request, "__wrapped__", base.do_request)

    class _Registry(base):  # type: ignore[misc, valid-type]
        def do_request(self, url, method="GET", data=None, headers=None, json=None, stream=False):  # noqa: A002
            return unwrapped(self, url, method, data, headers, json, stream)

    plain = ref.host.lower() in _LOOPBACK or os.environ.get("MLGATE_OCI_PLAIN_HTTP") == "1"
    registry = _Registry(hostname=ref.registry, insecure=plain)
    registry.session.request = functools.partial(registry.session.request, timeout=TIMEOUT_S)
    return registry


def _request(ref: OciRef, registry: Any, url: str, method: str, **kw: Any) -> Any:
    import requests

    try:
        return registry.do_request(f"{registry.prefix}://{url}", method, **kw)
    except requests.RequestException as exc:
        raise PolicyError(f"registry {ref.registry} unreachable ({type(exc).__name__}); fails closed", file=str(ref)) from None
    except ValueError as exc:  # oras: authentication it cannot answer
        raise PolicyError(f"registry {ref.registry}: {' '.join(str(exc).split())[:200]}", file=str(ref)) from None


def _status(ref: OciRef, response: Any, what: str, ok: tuple[int, ...] = (200,)) -> None:
    if response.status_code not in ok:
        raise PolicyError(f"registry {ref.registry} answered HTTP {response.status_code} to {what}", file=str(ref))


def _read_limited(ref: OciRef, response: Any, limit: int, what: str) -> bytes:
    import requests

    chunks, total = [], 0
    try:
        for chunk in response.iter_content(65536):
            total += len(chunk)
            if total > limit:
                raise PolicyError(f"{what} is larger than {limit} bytes", file=str(ref))
            chunks.append(chunk)
    except requests.RequestException as exc:
        raise PolicyError(f"registry {ref.registry}: reading {what} failed: {type(exc).__name__}", file=str(ref)) from None
    finally:
        response.close()
    return b"".join(chunks)


# --- push -------------------------------------------------------------------------------------------


def _upload_blob(ref: OciRef, registry: Any, container: Any, data: bytes, media_type: str) -> dict[str, Any]:
    descriptor = {"mediaType": media_type, "digest": sha256(data), "size": len(data)}
    head = _request(ref, registry, container.get_blob_url(descriptor["digest"]), "HEAD")
    if head.status_code == 200:
        return descriptor
    start = _request(ref, registry, container.upload_blob_url(), "POST", headers={"Content-Type": "application/octet-stream"})
    _status(ref, start, "a blob upload", (201, 202))
    location = registry._get_location(start, container)  # oras: makes a relative Location absolute
    if not location:
        raise PolicyError(f"registry {ref.registry} gave no upload location", file=str(ref))
    import oras.utils

    url = oras.utils.append_url_params(location, {"digest": descriptor["digest"]})
    done = _request(ref, registry, url.split("://", 1)[1], "PUT", data=data,
                    headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))})
    _status(ref, done, f"the upload of {descriptor['digest']}", (201, 204))
    return descriptor


def push(bundle: bytes, ref: OciRef, *, revision: str) -> str:
    """Push ``bundle`` (a .tar.gz OPA bundle) as ``ref`` (a tag); return the manifest digest."""
    registry = _client(ref)
    container = registry.get_container(f"{ref.registry}/{ref.repository}:{ref.target}")
    config = _upload_blob(ref, registry, container, CONFIG_BYTES, CONFIG_MEDIA_TYPE)
    layer = _upload_blob(ref, registry, container, bundle, BUNDLE_MEDIA_TYPE)
    layer["annotations"] = {"org.opencontainers.image.title": "bundle.tar.gz"}
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE, "config": config, "layers": [layer],
                "annotations": {"dev.mlgate.policy.revision": revision}}
    body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    digest = sha256(body)
    put = _request(ref, registry, container.manifest_url(ref.target), "PUT", data=body, headers={"Content-Type": MANIFEST_MEDIA_TYPE})
    _status(ref, put, "the manifest upload", (201,))
    answered = put.headers.get("Docker-Content-Digest")
    if answered and answered != digest:
        raise PolicyError(f"registry stored the manifest as {answered}, expected {digest}", file=str(ref))
    return digest


# --- pull -------------------------------------------------------------------------------------------


def _bundle_layer(ref: OciRef, manifest_bytes: bytes) -> dict[str, Any]:
    where = str(ref)
    try:
        manifest = json.loads(manifest_bytes.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise PolicyError("the registry's manifest is not JSON", file=where) from None
    if not isinstance(manifest, dict) or manifest.get("schemaVersion") != 2:
        raise PolicyError("the registry's answer is not an OCI image manifest (schemaVersion 2)", file=where)
    if manifest.get("mediaType", MANIFEST_MEDIA_TYPE) != MANIFEST_MEDIA_TYPE:
        raise PolicyError(f"manifest media type {str(manifest.get('mediaType'))[:80]!r} is not {MANIFEST_MEDIA_TYPE}", file=where)
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        raise PolicyError("the manifest has no layers list", file=where)
    bundles = [la for la in layers if isinstance(la, dict) and la.get("mediaType") == BUNDLE_MEDIA_TYPE]
    if len(bundles) != 1:
        raise PolicyError(f"the manifest must have exactly one {BUNDLE_MEDIA_TYPE} layer (the OPA bundle), has {len(bundles)}", file=where)
    layer = bundles[0]
    digest, size = layer.get("digest"), layer.get("size")
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise PolicyError("the bundle layer's digest is not sha256:<64 hex>", file=where)
    if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= MAX_COMPRESSED_BYTES:
        raise PolicyError(f"the bundle layer's size must be 1 to {MAX_COMPRESSED_BYTES} bytes", file=where)
    return layer


@dataclass(frozen=True)
class Pulled:
    ref: OciRef  # with the manifest digest
    manifest: bytes
    bundle: bytes
    cached: bool = False


def _get_manifest(ref: OciRef, registry: Any, container: Any) -> bytes:
    response = _request(ref, registry, container.manifest_url(ref.target), "GET", stream=True,
                        headers={"Accept": MANIFEST_MEDIA_TYPE})
    _status(ref, response, f"the manifest request for {ref.target}")
    return _read_limited(ref, response, MAX_MANIFEST_BYTES, "the manifest")


def _fetch(ref: OciRef) -> Pulled:
    registry = _client(ref)
    container = registry.get_container(f"{ref.registry}/{ref.repository}:latest")
    manifest = _get_manifest(ref, registry, container)
    digest = sha256(manifest)
    if ref.digest is not None and digest != ref.digest:
        raise PolicyError(f"manifest digest mismatch: asked for {ref.digest}, the registry sent {digest}", file=str(ref))
    layer = _bundle_layer(ref, manifest)
    response = _request(ref, registry, container.get_blob_url(layer["digest"]), "GET", stream=True)
    _status(ref, response, f"the bundle blob request {layer['digest']}")
    bundle = _read_limited(ref, response, layer["size"], "the bundle layer")
    if len(bundle) != layer["size"] or sha256(bundle) != layer["digest"]:
        raise PolicyError(f"bundle layer digest mismatch: the manifest says {layer['digest']} ({layer['size']} bytes), "
                          f"the registry sent {sha256(bundle)} ({len(bundle)} bytes)", file=str(ref))
    return Pulled(ref.at(digest), manifest, bundle)


def resolve(ref: OciRef) -> str:
    """The manifest digest ``ref`` names now: its digest, or what its tag points at (the manifest is
    fetched, bounded and hashed here; the registry's ``Docker-Content-Digest`` header is not trusted),
    checked to be a bundle artifact. Only the manifest is read: a webhook asks this every refresh
    interval and pulls the bundle (:func:`pull`) only when the digest changed."""
    if ref.digest is not None:
        return ref.digest
    registry = _client(ref)
    manifest = _get_manifest(ref, registry, registry.get_container(f"{ref.registry}/{ref.repository}:latest"))
    _bundle_layer(ref, manifest)
    return sha256(manifest)


def cache_dir() -> Path:
    explicit = os.environ.get("MLGATE_OCI_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mlgate" / "oci"


def _entry(cache: Path, digest: str) -> Path:
    return cache / "sha256" / digest.split(":", 1)[1]


def _from_cache(ref: OciRef, cache: Path) -> Pulled | None:
    """The cached artifact of ``ref.digest``, re-checked against that digest; None if absent or bad."""
    entry = _entry(cache, ref.digest or "")
    try:
        manifest = (entry / "manifest.json").read_bytes()
        bundle = (entry / "bundle.tar.gz").read_bytes()
    except OSError:
        return None
    if sha256(manifest) != ref.digest:
        return None
    try:
        layer = _bundle_layer(ref, manifest)
    except PolicyError:
        return None
    if sha256(bundle) != layer["digest"]:
        return None
    return Pulled(ref, manifest, bundle, cached=True)


def _store(cache: Path, pulled: Pulled) -> Path:
    entry = _entry(cache, pulled.ref.digest or "")
    entry.mkdir(parents=True, exist_ok=True)
    for name, data in (("bundle.tar.gz", pulled.bundle), ("manifest.json", pulled.manifest)):
        fd, tmp = tempfile.mkstemp(dir=entry, prefix=f".{name}.")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, entry / name)
    return entry / "bundle.tar.gz"


def pull(ref: OciRef, *, cache: Path | None = None) -> Pulled:
    """The artifact of ``ref``, digest-checked: from the cache when ``ref`` names a digest that is
    cached (and still matches), else from the registry (stored in the cache when one is given)."""
    if cache is not None and ref.digest is not None:
        hit = _from_cache(ref, cache)
        if hit is not None:
            return hit
    pulled = _fetch(ref)
    if cache is not None:
        try:
            _store(cache, pulled)
        except OSError as exc:
            raise PolicyError(f"cannot write the OCI cache {cache}: {exc.strerror or exc}", file=str(ref)) from None
    return pulled


#: tag reference -> the digest it resolved to in this process: a tag is resolved once per run (the
#: decision and its --explain, or a webhook's gate threads, see the same bundle).
_RESOLVED: dict[str, str] = {}


def load_oci_policy(source: Any, *, key: Path | None = None, data_overrides: list[Path] | None = None, resolve_again: bool = False,
                    require_finding_ids: bool = True, require_rules: bool = True) -> Any:
    """The PolicySet of an ``oci://`` reference: pulled (or taken from the digest cache), digests
    checked, bundle signature verified with ``key`` (a signed bundle needs one), with
    ``origin = {"reference", "digest"}`` for the record. A tag is resolved to a digest once per
    process unless ``resolve_again`` (a refresh)."""
    import dataclasses

    from mlgate.policy.bundle import load_bundle_policy

    ref = parse_ref(source)
    cache = cache_dir()
    pinned = ref if ref.digest is not None or resolve_again else ref.at(_RESOLVED[str(ref)]) if str(ref) in _RESOLVED else ref
    pulled = pull(pinned, cache=cache)
    if ref.digest is None:
        _RESOLVED[str(ref)] = pulled.ref.digest or ""
    with tempfile.TemporaryDirectory(prefix="mlgate-oci-") as tmp:
        path = Path(tmp) / "bundle.tar.gz"
        path.write_bytes(pulled.bundle)
        try:
            policy = load_bundle_policy(path, key=key, data_overrides=data_overrides, require_finding_ids=require_finding_ids,
                                        require_rules=require_rules)
        except MlgateError as exc:  # a bad signature or bundle: named by the reference it came from
            raise type(exc)(exc.message, file=str(pulled.ref), field=exc.field) from None
    return dataclasses.replace(policy, origin={"reference": str(ref), "digest": pulled.ref.digest})
