"""MLflow as an evidence store: a release bundle stored as the artifacts of a model version's run.

``mlgate publish RELEASE --mlflow`` uploads every file of a release directory under the run's
``mlgate-release/`` artifact path and tags the model version with that path, the manifest's
sha256 and the model digest. ``mlgate check models:/NAME/VERSION`` (or ``models:/NAME@ALIAS``)
resolves the version, downloads the bundle into a fresh directory and evaluates it like any
directory release.

MLflow keeps no content hash of artifacts, and an alias can be moved to another version at any
time, so nothing MLflow says is trusted as a digest: the gate re-hashes every downloaded file
(the model digest, each evidence file) exactly as it does for a local directory, and the alias
is resolved once, to the version that is then downloaded and recorded. The manifest sha256
tag is only a consistency check: a bundle whose manifest differs from the one published is
refused.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from mlgate.errors import MlgateError
from mlgate.provenance.mlflow_rest import MlflowClient, MlflowError, ModelRef, parse_model_uri

RELEASE_PATH = "mlgate-release"
TAG_PATH = "mlgate.release.path"
TAG_MANIFEST = "mlgate.release.manifest_sha256"
TAG_MODEL = "mlgate.release.model_digest"
#: A release bundle is bounded: files and bytes.
MAX_FILES = 10_000
MAX_BYTES = 8 * 1024 * 1024 * 1024


@dataclass(frozen=True)
class Resolved:
    uri: str
    name: str
    version: str
    run_id: str
    artifact_path: str
    files: int
    bytes: int
    manifest_sha256: str | None


def _tags(mv: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t.get("value") for t in mv.get("tags") or [] if isinstance(t, dict) and isinstance(t.get("key"), str)}


def _safe_rel(path: str, prefix: str) -> PurePosixPath:
    rel = PurePosixPath(path)
    try:
        rel = rel.relative_to(prefix)
    except ValueError:
        raise MlflowError(f"artifact {path!r} is outside {prefix!r}") from None
    if rel.is_absolute() or ".." in rel.parts or "\\" in path or not rel.parts or "\x00" in path:
        raise MlflowError(f"artifact path {path!r} is not a safe relative path")
    return rel


def download_release(uri: str, dest: Path, *, tracking_uri: str | None = None, client: MlflowClient | None = None) -> Resolved:
    """Download the release bundle of the model version ``uri`` into the empty directory ``dest``."""
    ref = parse_model_uri(uri)
    client = client or MlflowClient(tracking_uri)
    mv = client.get_model_version(ref)
    version, run_id = mv["version"], mv.get("run_id")
    shown = f"{ref.uri}" + (f" (version {version})" if ref.alias else "")
    if not run_id:
        raise MlflowError(f"model version {shown} names no run; mlgate reads the release bundle from the run's artifacts")
    prefix = _tags(mv).get(TAG_PATH) or RELEASE_PATH
    entries = list(client.list_artifacts(run_id, prefix))
    if not entries:
        raise MlflowError(
            f"model version {shown} (run {run_id}) has no release bundle under artifacts {prefix!r}; "
            "expected one published with `mlgate publish RELEASE --mlflow`"
        )
    if len(entries) > MAX_FILES:
        raise MlflowError(f"model version {shown}: more than {MAX_FILES} files in the release bundle")
    dest = Path(dest)
    total = 0
    for entry in sorted(entries, key=lambda e: e["path"]):
        rel = _safe_rel(entry["path"], prefix)
        target = dest.joinpath(*rel.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as out:
            total += client.download_artifact(run_id, entry["path"], out)
        if total > MAX_BYTES:
            raise MlflowError(f"model version {shown}: the release bundle is larger than {MAX_BYTES >> 30} GiB")
    manifest = dest / "mlgate.yaml"
    if not manifest.is_file():
        raise MlflowError(f"model version {shown}: the release bundle under {prefix!r} has no mlgate.yaml")
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest()
    published = _tags(mv).get(TAG_MANIFEST)
    if published and published != digest:
        raise MlflowError(
            f"model version {shown}: the bundle's mlgate.yaml has sha256 {digest[:12]}, but it was published with "
            f"{published[:12]}; the artifacts changed after publishing"
        )
    return Resolved(ref.uri, ref.name, version, run_id, prefix, len(entries), total, digest)


def _bundle_files(root: Path) -> list[tuple[Path, str]]:
    out = []
    rroot = root.resolve()
    for dirpath, dirnames, filenames in os.walk(rroot):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            resolved = path.resolve()
            if rroot not in resolved.parents:
                raise MlgateError(f"{path}: resolves outside the release directory; not published")
            out.append((resolved, path.relative_to(rroot).as_posix()))
    return out


def publish_release(release: Any, *, model_uri: str | None = None, tracking_uri: str | None = None,
                    client: MlflowClient | None = None) -> Resolved:
    """Upload the release directory to its MLflow model version (``model_uri``, or the one its provenance names)."""
    from mlgate.evidence.model_digest import compute_model_digest

    if model_uri is None:
        mv_facts = ((release.provenance or {}).get("mlflow") or {}).get("model_version") or {}
        if not mv_facts.get("name") or not mv_facts.get("version"):
            raise MlflowError("no model version to publish to: pass --model models:/NAME/VERSION, or collect MLflow provenance first", field="--model")
        model_uri = f"models:/{mv_facts['name']}/{mv_facts['version']}"
    ref: ModelRef = parse_model_uri(model_uri)
    client = client or MlflowClient(tracking_uri)
    mv = client.get_model_version(ref)
    run_id = mv.get("run_id")
    if not run_id:
        raise MlflowError(f"model version {ref.uri} names no run to store the release bundle in")
    artifact_uri = client.get_run(run_id)["info"].get("artifact_uri") or ""
    files = _bundle_files(Path(release.root))
    if len(files) > MAX_FILES:
        raise MlgateError(f"{release.root}: more than {MAX_FILES} files; not published")
    total = 0
    for path, rel in files:
        with open(path, "rb") as fh:
            client.upload_artifact(artifact_uri, f"{RELEASE_PATH}/{rel}", fh)
        total += path.stat().st_size
    manifest_sha = hashlib.sha256(Path(release.manifest_path).read_bytes()).hexdigest()
    model_digest = compute_model_digest(release.model_path).root
    for key, value in ((TAG_PATH, RELEASE_PATH), (TAG_MANIFEST, manifest_sha), (TAG_MODEL, model_digest)):
        client.set_model_version_tag(ref.name, mv["version"], key, value)
    return Resolved(ref.uri, ref.name, mv["version"], run_id, RELEASE_PATH, len(files), total, manifest_sha)
