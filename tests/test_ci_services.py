"""Issue 19 part 8: a test that needs a missing service skips with a reason naming it, except
under CI (CI=true, as .ci/run runs the suite), where that skip is a failure. Each case runs a
real pytest session on one of the suite's own tests with the service made unreachable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO


def _pytest(test_id: str, ci: bool, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "CI"}
    environ.update(env)
    if ci:
        environ["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rsf", "-p", "no:cacheprovider", test_id],
                          cwd=REPO, env=environ, capture_output=True, text=True, timeout=300)


CASES = [
    # (test, environment that takes the service away, the service the reason names)
    ("tests/test_audit_pg.py::test_append_and_verify", {"MLGATE_TEST_PG": "postgresql://postgres@127.0.0.1:1/test"}, "PostgreSQL"),
    ("tests/test_audit_report.py::test_chromium_renders_the_report_dom", {"MLGATE_CHROMIUM": "/nonexistent/chromium"}, "Chromium"),
]


@pytest.mark.parametrize("test_id, env, service", CASES, ids=[c[2] for c in CASES])
def test_missing_service_skips_with_its_name_outside_ci(test_id, env, service):
    proc = _pytest(test_id, ci=False, **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 skipped" in proc.stdout and f"needs service: {service}: " in proc.stdout


@pytest.mark.parametrize("test_id, env, service", CASES, ids=[c[2] for c in CASES])
def test_missing_service_fails_under_ci(test_id, env, service):
    proc = _pytest(test_id, ci=True, **env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "skipped" not in proc.stdout and service in proc.stdout


def test_other_skips_stay_skips_under_ci(tmp_path):
    # A skip that is not about a service (here: a platform fact) is still a skip in CI.
    (tmp_path / "conftest.py").write_text((REPO / "tests" / "conftest.py").read_text())
    (tmp_path / "test_x.py").write_text(
        "import pytest\nfrom conftest import needs_service, require_service\n"
        "@pytest.mark.skipif(True, reason='root reads unreadable files')\ndef test_root(): pass\n"
        "def test_runtime_skip(): pytest.skip('not on this platform')\n"
        "@needs_service(False, 'X', 'present')\ndef test_present(): pass\n"
        "@needs_service(True, 'Y', 'absent')\ndef test_absent(): pass\n"
        "def test_required(): require_service('Z', 'absent')\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    run = lambda ci: subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],  # noqa: E731
                                    cwd=tmp_path, env={**env, **({"CI": "true"} if ci else {})}, capture_output=True, text=True, timeout=120)
    outside, inside = run(False), run(True)
    assert "1 passed, 4 skipped" in outside.stdout, outside.stdout
    # a skip mark turns into a setup error, a skip call inside the test into a failure: both fail the run
    assert "1 failed, 1 passed, 2 skipped, 1 error" in inside.stdout and inside.returncode == 1, inside.stdout
