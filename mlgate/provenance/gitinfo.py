"""Git facts for the provenance block, read with GitPython.

Every expected failure (not a repository, an empty repository, no ``git`` binary) is a recorded
absence with a one-line reason, never a traceback: the policy decides what an absence means.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mlgate.clock import rfc3339

#: At most this many changed paths are recorded (the count is always complete).
MAX_PATHS = 20
HEX_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


def strip_credentials(url: str | None) -> str | None:
    """A remote URL without user name, password or token (``https://tok@host/x`` -> ``https://host/x``).

    scp-like remotes (``git@host:org/repo.git``) name an SSH login, not a secret; they are kept.
    """
    if not url:
        return None
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable remote url>"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def absent(reason: str) -> dict[str, Any]:
    return {"present": False, "reason": " ".join(reason.split())}


def git_facts(
    start: Path, *, exclude: Path | None = None, training_commit: tuple[str, str] | None = None
) -> dict[str, Any]:
    """Facts about the git repository that contains ``start``.

    ``exclude`` (the release directory, when it sits inside the repository) is left out of the
    dirty check: the release bundle is the product of the training, not its code.
    ``training_commit`` is (commit, source): the commit another source names (``mlflow-run-tag``
    or ``option``); without one, the HEAD commit is recorded as the training commit.
    """
    try:
        import git  # GitPython; imported here so `mlgate --help` never pays for it
    except ImportError as exc:  # GitPython raises ImportError when no git binary works
        return absent(f"GitPython cannot run git: {exc}")

    try:
        repo = git.Repo(start, search_parent_directories=True)
    except git.NoSuchPathError:
        return absent(f"{start}: no such directory")
    except git.InvalidGitRepositoryError:
        return absent(f"{start}: not inside a git repository")
    try:
        return _facts(git, repo, exclude, training_commit)
    except ValueError as exc:  # an empty repository has no HEAD commit
        return absent(f"{repo.working_dir}: no commit to record ({exc})")
    except git.GitCommandError as exc:
        return absent(f"{repo.working_dir}: git failed: {exc.stderr or exc}")
    finally:
        repo.close()


def _facts(git: Any, repo: Any, exclude: Path | None, training_commit: tuple[str, str] | None) -> dict[str, Any]:
    head = repo.head.commit  # ValueError on an empty repository
    try:
        branch = repo.active_branch.name
    except TypeError:  # detached HEAD
        branch = None
    remote = None
    if repo.remotes:
        names = [r.name for r in repo.remotes]
        chosen = repo.remotes["origin"] if "origin" in names else repo.remotes[0]
        try:
            remote = strip_credentials(next(iter(chosen.urls), None))
        except git.GitCommandError:
            remote = None

    root = Path(repo.working_dir).resolve()
    skip = None
    if exclude is not None:
        try:
            rel = exclude.resolve().relative_to(root).as_posix()
            skip = None if rel == "." else rel
        except ValueError:
            skip = None
    changed: list[str] = []
    untracked = 0
    # --porcelain v1: "XY path"; untracked files are "?? path"
    for line in repo.git.status("--porcelain", "--untracked-files=all").splitlines():
        if len(line) < 4:
            continue
        path = line[3:].split(" -> ")[-1].strip('"')
        if skip is not None and (path == skip or path.startswith(skip + "/")):
            continue
        if line.startswith("??"):
            untracked += 1
        changed.append(path)
    tracked_changes = len(changed) - untracked

    recorded_training, source = head.hexsha, "git-head"
    known: bool | None = True
    if training_commit:
        recorded_training, source = training_commit
        try:
            known = bool(HEX_SHA.match(recorded_training)) and repo.commit(recorded_training).hexsha == recorded_training
        except (ValueError, git.BadName, git.GitCommandError):
            known = False
    return {
        "present": True,
        "commit": head.hexsha,
        "branch": branch,
        "remote_url": remote,
        "dirty": tracked_changes > 0 or untracked > 0,
        "changed_count": tracked_changes,
        "untracked_count": untracked,
        "changed_paths": sorted(changed)[:MAX_PATHS],
        "excluded_path": skip,
        "committed_at": rfc3339(head.committed_datetime),
        "training_commit": recorded_training,
        "training_commit_source": source,
        "training_commit_in_repo": known,
    }
