"""The composite GitHub Action (`action.yml`, issue 19 part 6), run as a script: each `run:` step
with its inputs substituted the way the runner does (`${{ inputs.X }}` and the other expressions
it uses, `GITHUB_OUTPUT`, `GITHUB_ACTION_PATH`), in bash, in a scratch checkout. The `uses:`
steps cannot run here; they are checked to name the expected actions. setup-python's part, a
Python on PATH, is a virtual environment over this one's packages, so the install step really
builds and installs mlgate from the action's directory without downloading its dependencies."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, copy_checkout

ACTION = yaml.safe_load((REPO / "action.yml").read_text())
STEPS = ACTION["runs"]["steps"]
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def _step(name: str) -> dict:
    return next(s for s in STEPS if s.get("name") == name)


def test_action_shape():
    assert ACTION["runs"]["using"] == "composite"
    assert set(ACTION["inputs"]) >= {"release", "environment", "policy", "trust", "sarif-file"}
    assert ACTION["inputs"]["release"]["required"] and ACTION["inputs"]["environment"]["required"]
    uses = [s["uses"] for s in STEPS if "uses" in s]
    assert [u.split("@")[0] for u in uses] == ["actions/setup-python", "github/codeql-action/upload-sarif"]
    assert all(re.fullmatch(r"[\w./-]+@v\d+", u) for u in uses)  # pinned to a major version
    upload = _step("Upload SARIF to code scanning")
    assert upload["with"]["sarif_file"] == "${{ inputs.sarif-file }}" and "always()" in upload["if"]
    assert STEPS[-1]["name"] == "Fail unless allowed"  # after the upload: findings reach code scanning first
    for step in STEPS:
        if "run" in step:
            assert step["shell"] == "bash"
            # No expression inside a script (script injection): inputs arrive as environment variables.
            assert not EXPRESSION.search(step["run"]), step["name"]


def _substitute(text: str, inputs: dict, outputs: dict) -> str:
    def value(m: re.Match) -> str:
        expr = m.group(1)
        if expr.startswith("inputs."):
            return inputs[expr.removeprefix("inputs.")]
        if m := re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+)", expr):
            return outputs.get(m.group(1), {}).get(m.group(2), "")
        raise AssertionError(f"an expression this test does not know: {expr}")

    return EXPRESSION.sub(value, text)


def _read_outputs(path: Path) -> dict:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def _run_step(step: dict, inputs: dict, outputs: dict, ctx: dict) -> subprocess.CompletedProcess:
    output_file = ctx["tmp"] / f"output-{len(ctx['ran'])}"
    output_file.write_text("")
    env = {**ctx["env"], "GITHUB_OUTPUT": str(output_file), "GITHUB_ACTION_PATH": str(ctx["action_path"])}
    env.update({k: _substitute(str(v), inputs, outputs) for k, v in (step.get("env") or {}).items()})
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],  # the runner's `shell: bash`
                          cwd=ctx["workspace"], env=env, capture_output=True, text=True, timeout=600)
    ctx["ran"].append(step["name"])
    if "id" in step:
        outputs[step["id"]] = _read_outputs(output_file)
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The action's directory and a workspace (both a scratch checkout of this tree), and a Python
    on PATH with mlgate installed by the action's own install step."""
    tmp = tmp_path_factory.mktemp("action")
    checkout = copy_checkout(tmp / "checkout")
    venv = tmp / "python"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "MLGATE_", "PYTHON"))}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    ctx = {"tmp": tmp, "env": env, "action_path": checkout, "workspace": checkout, "ran": []}
    proc = _run_step(_step("Install mlgate"), {}, {}, ctx)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    where = subprocess.run(["mlgate", "--version"], env=env, capture_output=True, text=True)
    located = subprocess.run(["python", "-c", "import mlgate; print(mlgate.__file__)"], cwd=tmp, env=env, capture_output=True, text=True)
    assert where.returncode == 0 and Path(located.stdout.strip()).is_relative_to(venv), located.stdout + located.stderr
    return ctx


def _run_action(ctx: dict, **given: str) -> tuple[dict, list[subprocess.CompletedProcess]]:
    inputs = {name: str(spec.get("default", "")) for name, spec in ACTION["inputs"].items()}
    inputs.update({k.replace("_", "-"): v for k, v in given.items()})
    outputs: dict = {}
    procs = []
    for step in STEPS:
        if "uses" in step or step["name"] == "Install mlgate":  # installed once, by the fixture
            continue
        procs.append(_run_step(step, inputs, outputs, ctx))
        if procs[-1].returncode != 0:
            break
    return {**outputs, "inputs": inputs}, procs


def test_denied_release_uploads_findings_and_fails(installed):
    out, procs = _run_action(installed, release="examples/triage-acuity", environment="production", sarif_file="reports/mlgate.sarif")
    check, fail = procs
    assert check.returncode == 0, check.stderr  # the check step keeps going: the SARIF must be uploaded first
    assert out["check"]["exit-code"] == "1"
    sarif = json.loads((installed["workspace"] / "reports" / "mlgate.sarif").read_text())
    assert {r["ruleId"] for r in sarif["runs"][0]["results"]} == {"MLG-BIAS-002", "MLG-BIAS-006"}
    assert fail.returncode == 1 and "::error title=mlgate::the release is denied" in fail.stdout


def test_allowed_release_passes_with_explicit_trust_and_policy(installed):
    out, procs = _run_action(installed, release="examples/readmission-risk", environment="production",
                             trust="examples/trust.yaml", policy="policies")
    assert [p.returncode for p in procs] == [0, 0], [p.stderr for p in procs]
    assert out["check"]["exit-code"] == "0"
    sarif = json.loads((installed["workspace"] / "mlgate.sarif").read_text())
    assert sarif["runs"][0]["invocations"][0]["properties"]["result"] == "allow"


def test_error_fails_the_job(installed):
    out, procs = _run_action(installed, release="examples/readmission-risk", environment="prod", sarif_file="err.sarif")
    assert out["check"]["exit-code"] == "2"
    assert procs[-1].returncode == 2 and "could not judge" in procs[-1].stdout
    assert json.loads((installed["workspace"] / "err.sarif").read_text())["runs"][0]["invocations"][0]["executionSuccessful"] is False


def test_hostile_input_stays_an_argument(installed):
    # An input is data: a release name with shell syntax reaches mlgate as one argument.
    marker = installed["tmp"] / "pwned"
    out, procs = _run_action(installed, release=f"x; touch {marker}; $(touch {marker})", environment="production")
    assert out["check"]["exit-code"] == "2" and not marker.exists()


# --- pre-commit hooks ---------------------------------------------------------------------------

HOOKS = {h["id"]: h for h in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())}


def _hook(hook_id: str, policy_dir: Path) -> subprocess.CompletedProcess:
    import shlex

    hook = HOOKS[hook_id]
    return subprocess.run([*shlex.split(hook["entry"]), *hook.get("args", []), str(policy_dir)],
                          cwd=policy_dir.parent, capture_output=True, text=True, timeout=300)


def test_pre_commit_hooks_shape():
    assert set(HOOKS) == {"mlgate-policy-test", "mlgate-policy-lint"}
    for hook in HOOKS.values():
        assert hook["language"] == "python" and hook["pass_filenames"] is False
        assert re.search(hook["files"], "policies/mlgate/rules/bias.rego")
        assert re.search(hook["files"], "policies/mlgate/environments/production/data.json")
        assert not re.search(hook["files"], "README.md")
    assert HOOKS["mlgate-policy-test"]["entry"].startswith("mlgate policy test")
    assert HOOKS["mlgate-policy-lint"]["entry"].startswith("mlgate policy lint")


def test_pre_commit_hooks_pass_and_catch(tmp_path):
    import shutil

    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies, ignore=shutil.ignore_patterns("__pycache__"))
    for hook_id in HOOKS:
        proc = _hook(hook_id, policies)
        assert proc.returncode == 0, (hook_id, proc.stdout, proc.stderr)
    # A failing Rego unit test fails the policy-test hook.
    test_file = policies / "mlgate" / "rules" / "privacy_test.rego"
    test_file.write_text(test_file.read_text() + "\ntest_broken_on_purpose if {\n\tcount(violations(td.good_input)) == 1\n}\n")
    proc = _hook("mlgate-policy-test", policies)
    assert proc.returncode == 1 and "test_broken_on_purpose" in proc.stdout, proc.stdout + proc.stderr
    # A finding rule without METADATA fails the lint hook.
    rule = policies / "mlgate" / "rules" / "privacy.rego"
    rule.write_text(rule.read_text() + '\nviolation contains v if {\n\tinput.nope\n\tv := {"id": "MLG-PRIV-999", "message": "x"}\n}\n')
    proc = _hook("mlgate-policy-lint", policies)
    assert proc.returncode == 1 and "MLG-PRIV-999" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
