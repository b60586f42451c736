"""``mlgate evidence collect``: fill the manifest's provenance block from git, DVC and MLflow.

Registered on the ``evidence`` group in cli/__init__.py. Heavy imports (GitPython, requests)
stay inside the command.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mlgate.errors import MlgateError


@click.command("collect")
@click.argument("release", type=click.Path(path_type=Path))
@click.option("--repo", type=click.Path(path_type=Path), help="Git repository of the training code (default: the one containing RELEASE).")
@click.option("--dvc-root", type=click.Path(path_type=Path), help="DVC project with dvc.lock / *.dvc (default: the git working tree).")
@click.option("--no-git", is_flag=True, help="Do not read git.")
@click.option("--no-dvc", is_flag=True, help="Do not read DVC files.")
@click.option("--mlflow-model", help="Registered model version: models:/NAME/VERSION or models:/NAME@ALIAS.")
@click.option("--mlflow-run", help="MLflow run id (default: the model version's run).")
@click.option("--tracking-uri", help="MLflow tracking server (default: MLFLOW_TRACKING_URI).")
@click.option("--training-commit", help="Commit of the training code, when no MLflow run records it (default: git HEAD).")
@click.option("--dry-run", is_flag=True, help="Print the block as JSON instead of writing it into the manifest.")
@click.pass_context
def collect(ctx, release, repo, dvc_root, no_git, no_dvc, mlflow_model, mlflow_run, tracking_uri, training_commit, dry_run):
    """Record where RELEASE came from (git, DVC, MLflow) in its manifest's spec.provenance."""
    import json

    from mlgate.cli import EXIT_ERROR, _clock
    from mlgate.manifest import load_release
    from mlgate.provenance import CollectOptions, collect_provenance, write_provenance

    try:
        loaded = load_release(release)
        block = collect_provenance(loaded, CollectOptions(
            repo=repo, dvc_root=dvc_root, git=not no_git, dvc=not no_dvc, mlflow_model=mlflow_model,
            mlflow_run=mlflow_run, tracking_uri=tracking_uri, training_commit=training_commit,
        ), now=_clock(ctx).now())
        if dry_run:
            click.echo(json.dumps(block, indent=2, sort_keys=True))
            return
        write_provenance(loaded.manifest_path, block)
    except MlgateError as exc:
        click.echo(f"mlgate: error: {exc.diagnostics()}", err=True)
        sys.exit(EXIT_ERROR)
    for source in ("git", "dvc", "mlflow"):
        facts = block[source]
        if not facts.get("present"):
            if facts.get("reason") != "not requested":
                click.echo(f"mlgate: warning: {source}: recorded as absent: {facts.get('reason')}", err=True)
            continue
        for err in facts.get("errors", []):
            click.echo(f"mlgate: warning: {source}: {err}", err=True)
    if block["dvc"].get("present"):
        click.echo(f"mlgate: note: {block['dvc']['warning']}", err=True)
    git = block["git"]
    summary = [f"git {git['commit'][:12]}{' (dirty)' if git['dirty'] else ''}" if git.get("present") else "git absent",
               f"dvc {len(block['dvc'].get('files', []))} file(s)" if block["dvc"].get("present") else "dvc absent",
               f"mlflow run {(block['mlflow'].get('run') or {}).get('id')}" if block["mlflow"].get("present") else "mlflow absent",
               f"{len(block['datasets'])} dataset digest(s)"]
    click.echo(f"mlgate: provenance written to {loaded.manifest_path}: {', '.join(summary)}")
