"""MLflow front door: ``mlgate publish RELEASE --mlflow``, and the download behind
``mlgate check models:/NAME/VERSION`` (:func:`fetch_model_version`, which the gate runs inside
its recorded path, so an unreachable server or a version without a bundle is an error decision
written to the audit trail, like any release that cannot be read).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mlgate.errors import MlgateError


def fetch_model_version(uri: str, workdir: Path) -> Path:
    """Download the release bundle of ``models:/NAME/VERSION`` (or ``@ALIAS``) into ``workdir``
    and return its directory; every digest is recomputed by the gate afterwards."""
    from mlgate.store.mlflow import download_release

    dest = Path(workdir) / "release"
    dest.mkdir()
    resolved = download_release(uri, dest)
    click.echo(
        f"mlgate: {resolved.uri} -> model version {resolved.version} (run {resolved.run_id}): "
        f"{resolved.files} files, {resolved.bytes} bytes downloaded; every digest is recomputed",
        err=True,
    )
    return dest


@click.command("publish")
@click.argument("release", type=click.Path(path_type=Path))
@click.option("--mlflow", "to_mlflow", is_flag=True, required=True, help="Publish to the MLflow model registry (the only store so far).")
@click.option("--model", "model_uri", help="models:/NAME/VERSION (default: the model version the release's provenance names).")
@click.option("--tracking-uri", help="MLflow tracking server (default: MLFLOW_TRACKING_URI).")
def publish(release, to_mlflow, model_uri, tracking_uri):
    """Upload RELEASE (manifest, model, evidence) as the artifacts of its MLflow model version."""
    from mlgate.cli import EXIT_ERROR
    from mlgate.manifest import load_release
    from mlgate.store.mlflow import publish_release

    try:
        loaded = load_release(release)
        done = publish_release(loaded, model_uri=model_uri, tracking_uri=tracking_uri)
    except MlgateError as exc:
        click.echo(f"mlgate: error: {exc.diagnostics()}", err=True)
        sys.exit(EXIT_ERROR)
    click.echo(f"mlgate: published {done.files} files ({done.bytes} bytes) of {loaded.name} {loaded.version} to "
               f"models:/{done.name}/{done.version} (run {done.run_id}, artifacts {done.artifact_path}/)")
