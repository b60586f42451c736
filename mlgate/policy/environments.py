"""The environments a policy set defines: the keys of ``data.mlgate.environments``.

One list, read from the loaded policy's data (the bundled library's ``environments/<env>/data.json``,
plus any ``--data`` override), so a front door can refuse a mistyped environment in one line
instead of judging the release against no thresholds at all.
"""

from __future__ import annotations

from typing import Any

from mlgate.errors import PolicyError
from mlgate.safeio import display


class UnknownEnvironment(PolicyError):
    """The environment is not one the policy defines thresholds for."""


def known_environments(policy: Any) -> tuple[str, ...]:
    """The environments ``policy`` (a :class:`~mlgate.policy.PolicySet`) holds thresholds for, sorted."""
    root = (policy.data.get("mlgate") or {}).get("environments") if isinstance(policy.data, dict) else None
    if not isinstance(root, dict):
        return ()
    return tuple(sorted(env for env, value in root.items() if isinstance(value, dict)))


def require_environment(policy: Any, environment: str, *, field: str = "--env") -> None:
    """Raise :class:`UnknownEnvironment` (one line, naming the valid environments) unless
    ``policy`` defines ``environment``."""
    known = known_environments(policy)
    if environment not in known:
        raise UnknownEnvironment(
            f"unknown environment {environment!r}; the policy defines {', '.join(known) or 'no environment'} "
            f"(data.mlgate.environments in {display(policy.root)})", field=field)
