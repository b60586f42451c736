from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

os.environ.pop("RUST_BACKTRACE", None)

REPO = Path(__file__).resolve().parent.parent
ASSETS = Path(__file__).resolve().parent / "assets"
EXAMPLES = REPO / "examples"
# The instant the acceptance tests evaluate at: examples are dated relative to it, so
# the suite does not rot as the calendar moves.
EXAMPLES_NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def asset():
    def _asset(name: str) -> Path:
        path = ASSETS / name
        assert path.exists(), f"missing test asset {name}"
        return path

    return _asset


# --- a scratch checkout (tests that run the README or the GitHub Action as a user would) --------

# Caches some tools leave in the working tree without a .gitignore entry: not part of a checkout.
_NOT_CHECKOUT = {".grimp_cache", ".benchmarks", ".ruff_cache", ".mypy_cache"}


def copy_checkout(dest: Path) -> Path:
    """Copy what a fresh checkout of this tree holds into ``dest``: the tracked files, and the
    untracked ones git does not ignore (so a file not yet committed is there too; in CI, a clone,
    the two lists are the same). Ignored outputs (.venv, .mlgate/, egg-info) are left behind."""
    import shutil
    import subprocess

    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for name in sorted(set(filter(None, listed))):
        parts = Path(name).parts
        source = REPO / name
        if parts[0] in _NOT_CHECKOUT or "__pycache__" in parts or not source.is_file():  # a deleted tracked file is gone
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return dest


# --- services a test needs ----------------------------------------------------------------------
#
# A test that needs a service this machine may lack (PostgreSQL, Chromium, real OPA) calls
# require_service(): outside CI it skips with a reason naming the service and how to get it;
# under CI (CI=true, as .ci/run runs the suite, having installed and started all of them) the
# same skip is a failure, so a missing service can never turn into a silently green run.
# Only those skips use the marker: a test that cannot run for another reason (running as root,
# a kernel that refuses a tmpfs) skips as usual, in CI too.

NEEDS_SERVICE = "needs service:"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def service_reason(name: str, reason: str) -> str:
    return f"{NEEDS_SERVICE} {name}: {reason}"


def require_service(name: str, reason: str) -> None:
    """Skip (outside CI) or fail (under CI) this test: ``name`` is missing, ``reason`` says how to get it."""
    if in_ci():
        pytest.fail(f"CI is set and a service the suite needs is missing: {name}: {reason}", pytrace=False)
    pytest.skip(service_reason(name, reason))


def needs_service(missing: bool, name: str, reason: str):
    """``pytest.mark.skipif`` for a missing service; the hook below makes it a failure under CI."""
    return pytest.mark.skipif(missing, reason=service_reason(name, reason))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and in_ci()):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3 else ""
    if str(reason).removeprefix("Skipped: ").startswith(NEEDS_SERVICE):
        report.outcome = "failed"
        report.longrepr = f"CI is set, so a missing service is a failure, not a skip ({reason})"
