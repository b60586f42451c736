"""Provenance: where a release came from, collected from git, DVC and MLflow.

``mlgate evidence collect RELEASE`` calls :func:`collect_provenance` and writes the result into
the manifest's ``spec.provenance`` block (:func:`write_provenance`); ``mlgate check`` reads that
block back as the ``evidence.provenance`` facts (:func:`provenance_facts`), which the
provenance rules judge (policies/mlgate/rules/provenance.rego).

Each source is optional and records where its facts came from. An automatically found source
that is not there (no git repository, no DVC files) is recorded as absent with its reason; a
source the user asked for (MLflow) that fails is an error, and nothing is written. DVC files
that do not parse are recorded with their errors: the block is then not valid and the policy
denies. The block is spelled in snake_case, exactly as the facts the policy sees.

May import :mod:`mlgate.schemas` and the basics only (GitPython and the MLflow REST client are
imported where used).
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlgate import schemas
from mlgate.clock import epoch_ns, parse_time, rfc3339
from mlgate.errors import InputError

#: Dataset roles the provenance rules know; a dataset's role comes from its name.
ROLES = ("train", "eval", "test")
NOT_REQUESTED = {"present": False, "reason": "not requested"}


def dataset_role(name: str) -> str:
    n = name.lower()
    if n.startswith("train"):
        return "train"
    if n.startswith("test"):
        return "test"
    if n.startswith(("eval", "val", "holdout", "hold-out")):
        return "eval"
    return "other"


@dataclass(frozen=True)
class CollectOptions:
    repo: Path | None = None          # where git is looked for (default: the release directory)
    dvc_root: Path | None = None      # where dvc.lock / *.dvc are read (default: the git working tree)
    git: bool = True
    dvc: bool = True
    mlflow_model: str | None = None   # models:/NAME/VERSION or models:/NAME@ALIAS
    mlflow_run: str | None = None     # a run id (default: the model version's run)
    tracking_uri: str | None = None   # default: MLFLOW_TRACKING_URI
    training_commit: str | None = None


def _git_root(start: Path) -> Path | None:
    try:
        import git
    except ImportError:
        return None
    try:
        repo = git.Repo(start, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None
    try:
        return Path(repo.working_dir)
    finally:
        repo.close()


def collect_provenance(release: Any, options: CollectOptions, *, now: dt.datetime) -> dict[str, Any]:
    """The ``spec.provenance`` block for ``release`` (a :class:`mlgate.manifest.Release`)."""
    import mlgate
    from mlgate.provenance import dvcinfo, gitinfo

    root = Path(release.root)
    mlflow_block: dict[str, Any] = dict(NOT_REQUESTED)
    training: tuple[str, str] | None = None
    if options.training_commit:
        training = (options.training_commit.strip().lower(), "option")
    if options.mlflow_model or options.mlflow_run:
        mlflow_block = _mlflow(options)
        commit = (mlflow_block.get("run") or {}).get("git_commit")
        if training is None and isinstance(commit, str) and commit:
            training = (commit.lower(), "mlflow-run-tag")

    start = options.repo or root
    git_block = gitinfo.git_facts(start, exclude=root, training_commit=training) if options.git else dict(NOT_REQUESTED)
    if options.git and options.repo is not None and not git_block.get("present"):
        raise InputError(f"cannot read git facts: {git_block.get('reason')}", field="--repo")

    if options.dvc:
        dvc_root = options.dvc_root or (_git_root(start) if options.git else None) or start
        dvc_block = dvcinfo.dvc_facts(dvc_root)
        if options.dvc_root is not None and not dvc_block.get("present"):
            raise InputError(f"cannot read DVC facts: {dvc_block.get('reason')}", field="--dvc-root")
    else:
        dvc_root, dvc_block = None, dict(NOT_REQUESTED)

    datasets, model_stage = _link(release, dvc_root, dvc_block)
    return {
        "collected_at": rfc3339(now),
        "collector": f"mlgate {mlgate.__version__}",
        "git": git_block,
        "dvc": dvc_block,
        "mlflow": mlflow_block,
        "datasets": datasets,
        "model_stage": model_stage,
    }


def _mlflow(options: CollectOptions) -> dict[str, Any]:
    from mlgate.provenance import mlflow_rest

    client = mlflow_rest.MlflowClient(options.tracking_uri)
    model_version = None
    run_id = options.mlflow_run
    if options.mlflow_model:
        ref = mlflow_rest.parse_model_uri(options.mlflow_model)
        model_version = mlflow_rest.model_version_facts(client.get_model_version(ref))
        if run_id is None:
            run_id = model_version["run_id"]
        elif model_version["run_id"] and model_version["run_id"] != run_id:
            raise mlflow_rest.MlflowError(f"{ref.uri} was registered from run {model_version['run_id']}, not from --mlflow-run {run_id}")
    run = mlflow_rest.run_facts(client.get_run(run_id)) if run_id else None
    return {"present": True, "tracking_uri": client.shown, "run": run, "model_version": model_version}


def _same_path(a: str, b: str) -> bool:
    return a.strip("/").removeprefix("./") == b.strip("/").removeprefix("./")


def _link(release: Any, dvc_root: Path | None, dvc_block: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Map DVC-tracked files onto the manifest's datasets and the model onto its DVC stage.

    A DVC path names a manifest dataset when both resolve to the same file, or, when the release
    is not inside the DVC project, when the DVC path equals the dataset's uri.
    """
    if not dvc_block.get("present") or dvc_root is None:
        return [], None
    files = dvc_block.get("files", [])
    root = Path(dvc_root).resolve()

    def find(target: Path | None, uri: str) -> dict[str, Any] | None:
        for f in files:
            if target is not None and (root / f["path"]).resolve() == target.resolve():
                return f
        for f in files:
            if _same_path(f["path"], uri):
                return f
        return None

    datasets = []
    for ds in release.datasets:
        local = ds.local_path if ds.local_path is not None else (Path(release.root) / ds.uri if "://" not in ds.uri else None)
        f = find(local, ds.uri)
        if f is None:
            continue
        datasets.append({
            "name": ds.name, "role": dataset_role(ds.name), "path": f["path"], "md5": f["md5"],
            "sha256": f["sha256"], "source": f"dvc:{f['source']}",
        })

    model_stage = None
    model_target = Path(release.model_path)
    for stage in dvc_block.get("stages", []):
        for out in stage.get("outs", []):
            if (root / out).resolve() == model_target.resolve() or _same_path(out, release.model_rel):
                entry = next((f for f in files if f["path"] == out), {})
                model_stage = {"name": stage["name"], "cmd": stage.get("cmd"), "path": out, "md5": entry.get("md5")}
                break
        if model_stage:
            break
    return datasets, model_stage


# --------------------------------------------------------------------------- writing the manifest

def write_provenance(manifest_path: Path, block: dict[str, Any]) -> None:
    """Put ``block`` at ``spec.provenance`` of the manifest, replacing an existing one.

    The rest of the file is kept byte for byte (comments and layout included): the block is
    spliced in by the line positions of the YAML nodes. The result is parsed and checked against
    the manifest schema before it replaces the file (atomically).
    """
    import yaml

    from mlgate.safeio import _NoAliasLoader, decode_text, display, parse_yaml, read_bytes

    name = display(manifest_path)
    text = decode_text(read_bytes(manifest_path), name)
    before = parse_yaml(text, name)
    try:
        node = yaml.compose(text, Loader=_NoAliasLoader)
    except yaml.YAMLError as exc:
        raise InputError(f"invalid YAML: {exc}", file=name) from None
    if not isinstance(node, yaml.MappingNode):
        raise InputError("expected a mapping at the top of the manifest", file=name)
    top_keys = [k.value for k, _ in node.value]
    spec = next((v for k, v in node.value if k.value == "spec"), None)
    if not isinstance(spec, yaml.MappingNode) or spec.flow_style or not spec.value:
        raise InputError("spec must be a block mapping to receive the provenance block", file=name, field="spec")
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    indent = spec.value[0][0].start_mark.column
    rendered = yaml.safe_dump({"provenance": block}, sort_keys=False, default_flow_style=False, allow_unicode=True, width=100)
    new = [(" " * indent + line if line.strip() else line) for line in rendered.splitlines(keepends=True)]

    spec_index = top_keys.index("spec")
    spec_end = node.value[spec_index + 1][0].start_mark.line if spec_index + 1 < len(node.value) else len(lines)
    keys = [k for k, _ in spec.value]
    existing = next((i for i, k in enumerate(keys) if k.value == "provenance"), None)
    if existing is not None:
        start = keys[existing].start_mark.line
        end = keys[existing + 1].start_mark.line if existing + 1 < len(keys) else spec_end
    else:
        start = end = spec_end
    # keep the blank lines and comments (at the keys' indentation or less) that precede the next key
    def _trailing(line: str) -> bool:
        stripped = line.lstrip()
        return not stripped or (stripped.startswith("#") and len(line) - len(stripped) <= indent)

    while existing is not None and end > start + 1 and _trailing(lines[end - 1]):
        end -= 1
    while existing is None and start > 0 and not lines[start - 1].strip():
        start -= 1
        end = start
    out = "".join(lines[:start] + new + lines[end:])

    after = parse_yaml(out, name)
    expected = dict(before)
    expected["spec"] = {**before["spec"], "provenance": block}
    if after != expected:
        raise InputError("could not splice the provenance block into the manifest without changing other fields", file=name)
    problems = schemas.errors("manifest.schema.json", after)
    if problems:
        where, message = problems[0]
        raise InputError(f"the collected provenance does not conform to the manifest schema: {message}", file=name, field=where)
    fd, tmp = tempfile.mkstemp(prefix=".mlgate.yaml.", dir=str(Path(manifest_path).parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(out)
        os.replace(tmp, manifest_path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise InputError(f"cannot write: {exc.strerror or exc}", file=name) from None


# --------------------------------------------------------------------------- facts

ABSENT = {"present": False, "valid": False, "authenticated": False, "errors": []}


def provenance_facts(release: Any) -> dict[str, Any]:
    """The ``evidence.provenance`` block of the input document (docs/input-document.md)."""
    block = getattr(release, "provenance", None)
    if block is None:
        return dict(ABSENT)
    errors: list[str] = []
    name = "mlgate.yaml: spec.provenance"
    try:
        collected = parse_time(block["collected_at"])
        collected_at, collected_ns = rfc3339(collected), epoch_ns(collected)
    except (ValueError, OverflowError):
        errors.append(f"{name}.collected_at: not an RFC 3339 time with a timezone")
        collected_at = collected_ns = None

    git = dict(block["git"])
    dvc = block["dvc"]
    dvc_facts = {"present": bool(dvc.get("present")), "reason": dvc.get("reason")}
    if dvc.get("present"):
        errors.extend(f"{name}.dvc: {e}" for e in dvc.get("errors", []))
        dvc_facts.update({
            "lock_file": dvc.get("lock_file"), "stages": [s.get("name") for s in dvc.get("stages", [])],
            "file_count": len(dvc.get("files", [])), "warning": dvc.get("warning"),
            "md5_mismatches": sorted(f["path"] for f in dvc.get("files", []) if f.get("md5_matches") is False),
        })
        for f in dvc.get("files", []):
            if f.get("md5_matches") is False:
                errors.append(f"{name}.dvc: {f['path']}: the local file's md5 differs from {f.get('source')} (the file changed after `dvc add`/`dvc repro`)")
    declared = {ds.name for ds in release.datasets}
    datasets = []
    for i, d in enumerate(block.get("datasets", [])):
        if d["name"] not in declared:
            errors.append(f"{name}.datasets[{i}].name: {d['name']!r} is not a dataset of the manifest (declared: {', '.join(sorted(declared)) or 'none'})")
        datasets.append({k: d.get(k) for k in ("name", "role", "path", "md5", "sha256", "source")})
    mlflow = block["mlflow"]
    mlflow_facts: dict[str, Any] = {"present": bool(mlflow.get("present")), "reason": mlflow.get("reason")}
    if mlflow.get("present"):
        run, mv = mlflow.get("run") or {}, mlflow.get("model_version") or {}
        mlflow_facts.update({
            "tracking_uri": mlflow.get("tracking_uri"), "run_id": run.get("id"), "run_status": run.get("status"),
            "git_commit": run.get("git_commit"), "params": run.get("params", {}), "metrics": run.get("metrics", {}),
            "run_user": run.get("user"),
            "model_name": mv.get("name"), "model_version": mv.get("version"), "model_aliases": mv.get("aliases", []),
            "model_run_id": mv.get("run_id"), "model_source": mv.get("source"), "model_status": mv.get("status"),
        })
    return {
        "present": True,
        "valid": not errors,
        "authenticated": False,
        "errors": errors,
        "collected_at": collected_at,
        "collected_at_ns": collected_ns,
        "collector": block.get("collector"),
        "git": git,
        "dvc": dvc_facts,
        "mlflow": mlflow_facts,
        "datasets": datasets,
        "model_stage": block.get("model_stage"),
    }


__all__ = ["CollectOptions", "collect_provenance", "dataset_role", "provenance_facts", "write_provenance"]
